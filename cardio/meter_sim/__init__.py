"""A simulated prepaid card meter: its card slot and its energy use, with persisted state.

The meter follows ``cardio/PROFILE.md``: it reads a card inserted into its slot, binds itself
to the account's first card (a new meter, never bound, loads the purchase of the OPEN or REPLACEMENT card that
binds it whatever its number, so after a meter change the account's purchase count continues), applies new parameters and tariffs by the card's update flags,
applies the purchase rule and writes the write-back file (with the meter's write-back MAC).

A purchase is loaded only when its record carries the purchase MAC of the card (checked with the
meter's own security module); a card whose purchase record does not is refused as an illegal
card.  A purchase is credited only once the write-back announcing it is on the card: the meter
first records it as *pending* (not credited), writes the write-back that announces it, and then
credits it.  A card pulled in between leaves the purchase pending; at the next insert of the
account's card the meter credits it if the write-back reached the card (or the card already
holds a later purchase, which the counter sells only after seeing that write-back), and
otherwise forgets it and applies the purchase rule to what the card holds now.
Management cards (tariff adjustment, purchase parameters, reading day, check) are applied when
they name this meter or every meter (all 9s); a management card of another meter is refused
(an illegal insert) and, when it holds no write-back yet, gets this meter's write-back with the
mismatch bit, so the technician's counter sees the job card went to the wrong meter.

Consumption is simulated minute by minute on the meter's own clock (Beijing time, UTC+8):

* energy per minute is ``load_w * ct_ratio * pt_ratio / 60`` Wh; the remainder below one Wh is
  carried to the next minute (``energy_carry``, in Wh/60), so nothing is lost;
* every Wh is priced at the TOU period rate of its minute (or the flat rate) plus the surcharge
  of the tier that Wh falls in (the tier rule of ``app.domain.pricing``: the Wh that takes the
  tier-year consumption from ``w`` to ``w + 1`` belongs to the tier ``w`` is in), so a minute
  that crosses a tier bound is split exactly at the bound;
* the cost is exact (``E * r / 100000`` fen): whole fen are deducted from ``remaining`` and the
  rest is kept in ``cost_carry`` (fen x 100000), so no money is lost to rounding;
* the tier-year consumption is reset at 00:00 Beijing time on the current tariff's reset date;
* the backup tariff replaces the current one at the first minute at or after its switch-over
  time;
* ALARM1 / ALARM2 are set while ``remaining <= alarm1`` / ``<= alarm2``, OVERDRAFT while
  ``remaining < 0``; the relay trips when ``remaining`` reaches the trip point (0, or
  ``-overdraft_limit`` when an overdraft is allowed) and stays tripped -- no energy is used --
  until a purchase leaves ``remaining`` above the trip point again.

Minutes of equal rate are priced in one batch (the trip minute is found by bisection), so a
month of simulated use takes a few hundred steps.  No floating point is used anywhere.

The state is one JSON file, written atomically (temporary file, fsync, ``os.replace``).  The
injected clock only gives the meter clock its start on first use; from then on the meter clock
moves only with :meth:`MeterSimulator.consume` (use ``load_w=0`` to let time pass idly).
"""

from __future__ import annotations

from cardio.meter_sim.simulator import MeterSimulator
from cardio.meter_sim.state import REASON_CREDIT_CEILING
from cardio.meter_sim.state import REASON_METER_NO
from cardio.meter_sim.state import REASON_NO_JOB
from cardio.meter_sim.state import REASON_NOT_OPENED
from cardio.meter_sim.state import REASON_PURCHASE_COUNT
from cardio.meter_sim.state import REASON_PURCHASE_MAC
from cardio.meter_sim.state import REASON_SERIAL
from cardio.meter_sim.state import RELAY_CLOSED
from cardio.meter_sim.state import RELAY_TRIPPED
from cardio.meter_sim.state import ConsumeResult
from cardio.meter_sim.state import InsertResult
from cardio.meter_sim.state import MeterState
from cardio.meter_sim.state import MeterStateError
from cardio.meter_sim.state import load_state
from cardio.meter_sim.state import save_state
from cardio.profile import BEIJING

__all__ = [
    "BEIJING",
    "REASON_CREDIT_CEILING",
    "REASON_METER_NO",
    "REASON_NOT_OPENED",
    "REASON_NO_JOB",
    "REASON_PURCHASE_COUNT",
    "REASON_PURCHASE_MAC",
    "REASON_SERIAL",
    "RELAY_CLOSED",
    "RELAY_TRIPPED",
    "ConsumeResult",
    "InsertResult",
    "MeterSimulator",
    "MeterState",
    "MeterStateError",
    "load_state",
    "save_state",
]
