"""A receipt with everything on it."""

from __future__ import annotations

import datetime as dt

from app.domain.receipt import ReceiptData

NAME = "张三丰"


def make_receipt(copy_no: int = 0) -> ReceiptData:
    return ReceiptData(
        sale_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        kind="card",
        state="completed",
        office_code="BJ01",
        office_name="海淀营业厅",
        counter_id="C01",
        operator_id="op7",
        operator_name="李四",
        created_at=dt.datetime(2026, 3, 1, 9, 0, 5, tzinfo=dt.UTC),
        time_zone="Asia/Shanghai",
        customer_no="000000000042",
        customer_name=NAME,
        address="北京市海淀区中关村大街1号",
        meter_no="000000123456",
        purchase_count=3,
        amount=10_000,
        arrears=500,
        fees=0,
        credit=9_500,
        tariff_plan="RES",
        tariff_name="居民阶梯",
        tariff_version_no=2,
        energy_wh=19_000_000,
        meter_balance=1_234,
        cash_received=10_000,
        change=0,
        verification_code="7F3A9C21",
        copy_no=copy_no,
    )
