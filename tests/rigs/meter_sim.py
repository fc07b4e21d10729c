"""The simulated meter's test rig for tests/test_meter_sim.py and
tests/test_meter_sim_consumption.py: the test meter, customer and tariffs, emulated cards, the
test meter's user-card parameters and purchases, and ``Env`` (a meter and its cards in a folder)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from app.clock import FixedClock
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import ParameterRecord
from app.domain.card import PurchaseRecord
from app.domain.card import TariffRecord
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.domain.card import WriteBackStatus
from app.domain.pricing import TariffSpec
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider
from cardio.meter_sim import BEIJING
from cardio.meter_sim import MeterSimulator
from cardio.terminal import ApduTerminal
from tests.rigs.user_card import user_params as card_params

UTILITY = "110000"
METER = "000000123456"
CUSTOMER = "000000000042"
S = WriteBackStatus
FLAT = {"kind": "flat", "flat_rate": 5000, "periods": [], "schedule": [], "tiers": []}
TOU = {
    "kind": "tou",
    "flat_rate": None,
    "periods": [{"name": "peak", "rate": 8000}, {"name": "valley", "rate": 3000}],
    "schedule": [
        {"start_minute": 0, "period": "valley"},
        {"start_minute": 480, "period": "peak"},  # 08:00
        {"start_minute": 1320, "period": "valley"},  # 22:00
    ],
    "tiers": [],
}


def spec(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return TariffSpec.from_dict({"reset_month": 1, "reset_day": 1, **base, **changes}).to_dict()


def tariff(
    base: dict[str, Any], version: int = 1, effective: dt.datetime | None = None, **changes: Any
) -> TariffRecord:
    return TariffRecord(version_no=version, effective_from=effective, spec=spec(base, **changes))


def bj(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BEIJING)  # type: ignore[misc]


class Card:
    """An emulated card: each :meth:`slot` is a fresh insertion (a new channel)."""

    _next = 1

    def __init__(self, master: MasterKeys, keys: SoftwareKeyProvider, kind: CardKind | None):
        serial = bytes.fromhex(f"C0FFEE{Card._next:010X}")
        Card._next += 1
        self.keys = keys
        self.os = UserCardOS(CardImage.blank(serial, master.diversified_card_keys(serial)))
        self.serial = serial
        if kind is not None:
            ApduTerminal(EmulatedChannel(self.os), keys).issue(kind)

    def slot(self) -> ApduTerminal:
        return ApduTerminal(EmulatedChannel(self.os), self.keys)

    def write(self, **files: Any) -> None:
        self.slot().write(CardWrite(**files))

    def read(self) -> CardContents:
        return self.slot().read()


def user_params(
    meter_no: str = METER,
    card_type: UserCardType = UserCardType.OPEN,
    version: int = 1,
    flags: UpdateFlags = UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TARIFF,
    **thresholds: int,
) -> ParameterRecord:
    """The test meter's user-card parameters (alarm 10.00/5.00 yuan, no ceiling), with
    ``thresholds`` changed."""
    return card_params(
        utility_code=UTILITY,
        user_card_type=card_type,
        customer_no=CUSTOMER,
        meter_no=meter_no,
        update_flags=flags,
        param_version=version,
        **({"alarm1": 1000, "alarm2": 500, "credit_ceiling": 0} | thresholds),
    )


def purchase(count: int, amount: int) -> PurchaseRecord:
    return PurchaseRecord(
        amount=amount, purchase_count=count, sale_tag=bytes(8), time=bj(2026, 3, 1, 8, 0, 0)
    )


class Env:
    def __init__(self, master: MasterKeys, keys: SoftwareKeyProvider, tmp: Path) -> None:
        self.master, self.keys, self.tmp = master, keys, tmp
        self.clock = FixedClock(bj(2026, 3, 1, 0, 0))

    def meter(
        self, name: str = "meter", meter_no: str | None = None, start: dt.datetime | None = None
    ) -> MeterSimulator:
        clock = FixedClock(start) if start is not None else self.clock
        return MeterSimulator(self.tmp / f"{name}.json", self.keys, meter_no=meter_no, clock=clock)

    def card(self, kind: CardKind | None = CardKind.USER) -> Card:
        return Card(self.master, self.keys, kind)

    def opened(
        self,
        meter: MeterSimulator,
        amount: int = 10_000,
        current: TariffRecord | None = None,
        **params: Any,
    ) -> Card:
        card = self.card()
        card.write(
            parameters=user_params(**params),
            current_tariff=current or tariff(FLAT),
            purchase=purchase(1, amount),
        )
        result = meter.insert(card.slot())
        assert result.accepted, result
        return card


# --------------------------------------------------------------------------- fixtures
# (registered for every module by conftest's pytest_plugins; a module's own fixture of the same
# name wins)


@pytest.fixture(scope="module")
def master() -> MasterKeys:
    return MasterKeys.generate()


@pytest.fixture(scope="module")
def keys(master: MasterKeys) -> SoftwareKeyProvider:
    return SoftwareKeyProvider(master)


@pytest.fixture
def env(master: MasterKeys, keys: SoftwareKeyProvider, tmp_path: Path) -> Env:
    return Env(master, keys, tmp_path)
