"""Simulated remote fee-control meters behind one concentrator (``cardvend fleet simulate``):
the terminal layer that the charge-control station reads and commands over DL/T 645-2007.
:mod:`.model` is one meter and simulated time, :mod:`.fleet` the meters and their saved state."""

from cardio.fleet.fleet import Fleet
from cardio.fleet.fleet import FleetError
from cardio.fleet.fleet import FleetStateError
from cardio.fleet.fleet import MetersFileError
from cardio.fleet.fleet import demo_meters
from cardio.fleet.fleet import read_meters_file
from cardio.fleet.model import LOAD_PROFILE
from cardio.fleet.model import RATE_OF_HOUR
from cardio.fleet.model import FleetMeter
from cardio.fleet.model import SimClock
from cardio.fleet.model import consumption

__all__ = [
    "LOAD_PROFILE",
    "RATE_OF_HOUR",
    "Fleet",
    "FleetError",
    "FleetMeter",
    "FleetStateError",
    "MetersFileError",
    "SimClock",
    "consumption",
    "demo_meters",
    "read_meters_file",
]
