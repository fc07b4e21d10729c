"""User-card parameters for customer 100000000002 / meter 200000000002, and an issued user card with a
purchase, parameters and a tariff written through a terminal over the demo keystore."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import ParameterRecord
from app.domain.card import PurchaseRecord
from app.domain.card import TariffRecord
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from tests.rigs.cli import terminal_for

CST = dt.timezone(dt.timedelta(hours=8))
USER_PARAMS = ParameterRecord(
    card_kind=CardKind.USER,
    utility_code="100001",
    user_card_type=UserCardType.OPEN,
    customer_no="100000000002",
    meter_no="200000000002",
    alarm1=2000,
    alarm2=1000,
    overdraft_limit=0,
    credit_ceiling=99999999,
    ct_ratio=1,
    pt_ratio=1,
    update_flags=UpdateFlags.PARAMETERS,
    param_version=1,
)


def user_params(**changes: Any) -> ParameterRecord:
    """The test user card's parameters (alarm 20.00/10.00 yuan, no overdraft), with ``changes``."""
    return dataclasses.replace(USER_PARAMS, **changes)


def write_user_card(home: Path, image: Path) -> Any:
    """An issued user card for meter 200000000002 with a purchase of 100.00 yuan, parameters
    (alarm 20.00/10.00 yuan, no overdraft) and a flat tariff; the terminal's write result."""
    terminal = terminal_for(home, image)
    params = user_params(update_flags=UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TARIFF)
    tariff = TariffRecord(
        1,
        dt.datetime(2026, 1, 1, tzinfo=CST),
        {
            "kind": "flat",
            "flat_rate": 5000,
            "periods": [],
            "schedule": [],
            "tiers": [],
            "reset_month": 1,
            "reset_day": 1,
        },
    )
    purchase = PurchaseRecord(10000, 1, b"\x01" * 8, dt.datetime(2026, 3, 1, 9, tzinfo=CST))
    return terminal.write(CardWrite(parameters=params, purchase=purchase, current_tariff=tariff))
