"""Sales written straight into the counter's database: the row of a sale, for a bulk
``insert(Sale)`` (reports, sealed sales, the benches' big ledgers)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def sale_row(
    sale_id: str,
    customer_id: int,
    amount: int,
    *,
    purchase_count: int | None,
    tariff_version_id: int | None,
    shift_id: str | None,
    at: dt.datetime,
    kind: str = "card",
    state: str = "completed",
    arrears: int = 0,
    cash_received: int | None = None,
    operator_id: str = "t01",
    counter_id: str = "C01",
    wh_per_fen: int = 2,
    **columns: Any,
) -> dict[str, Any]:
    """A sale of ``amount`` fen of which ``arrears`` settle arrears, no fees, and the rest is
    credit, ``wh_per_fen`` Wh per fen of it; created and last changed ``at``, never rewritten,
    not a training sale; ``columns`` are more columns (e.g. ``remote_status``)."""
    credit = amount - arrears
    return {
        "id": sale_id,
        "kind": kind,
        "customer_id": customer_id,
        "purchase_count": purchase_count,
        "amount": amount,
        "arrears": arrears,
        "fees": 0,
        "credit": credit,
        "energy_wh": credit * wh_per_fen,
        "tariff_version_id": tariff_version_id,
        "cash_received": cash_received,
        "operator_id": operator_id,
        "counter_id": counter_id,
        "shift_id": shift_id,
        "created_at": at,
        "updated_at": at,
        "training": False,
        "state": state,
        "note": "",
        "rewrites": 0,
        **columns,
    }
