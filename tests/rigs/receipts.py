"""A receipt with everything on it (arrears, a fee, change; a long name and address), for the
receipt, printer and file tests and the receipt bench."""

from __future__ import annotations

import dataclasses
import datetime as dt

from app.domain.receipt import ReceiptData

SALE_ID = "3f2b8c1e-9a4d-4e6b-8c2f-1a2b3c4d5e6f"
NAME = "欧阳娜娜"
ADDRESS = "浙江省杭州市滨江区长江路88号锦绣小区12栋3单元1502室"

RECEIPT = ReceiptData(
    sale_id=SALE_ID,
    kind="card",
    state="completed",
    office_code="HZ01",
    office_name="杭州城东营业厅",
    counter_id="C02",
    operator_id="t07",
    operator_name="李秀英",
    created_at=dt.datetime(2026, 3, 1, 1, 30, 5, tzinfo=dt.UTC),
    time_zone="Asia/Shanghai",
    customer_no="500000000123",
    customer_name=NAME,
    address=ADDRESS,
    meter_no="600000000123",
    purchase_count=17,
    amount=20000,
    arrears=1250,
    fees=500,
    credit=18250,
    tariff_plan="RES-TIER",
    tariff_name="居民阶梯电价",
    tariff_version_no=3,
    energy_wh=33182,
    meter_balance=4567,
    cash_received=25000,
    change=5000,
    verification_code="7K3QX9PA",
)


def make_receipt(copy_no: int = 0) -> ReceiptData:
    """:data:`RECEIPT` as sale 1a2b3c4d-... sold at 17:00:05 on 1 March 2026 in Shanghai (its
    file is ``20260301-170005-1A2B3C4D.pdf``), as copy ``copy_no``."""
    return dataclasses.replace(
        RECEIPT,
        sale_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        created_at=dt.datetime(2026, 3, 1, 9, 0, 5, tzinfo=dt.UTC),
        copy_no=copy_no,
    )
