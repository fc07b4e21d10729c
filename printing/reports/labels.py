"""Labels (English message ids), sizes, colours and the small formatters the report PDFs and CSVs share."""

from __future__ import annotations

import datetime as dt

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm

from app.i18n import N_
from app.i18n import translate
from app.money import format_yuan

# --------------------------------------------------------------------------- labels

SHIFT_TITLE = N_("Shift report (Z-report)")
DAILY_TITLE = N_("Daily office report")
STATS_TITLE = N_("Charge-control statistics")
PAGE = N_("Page {page}")
GENERATED = N_("Generated {time}")
PROVISIONAL = N_("The shift is still open: the figures are provisional.")

OFFICE = N_("Office")
COUNTER = N_("Counter")
OPERATOR = N_("Operator")
SHIFT = N_("Shift")
OPENED = N_("Opened")
CLOSED = N_("Closed")
CLOSED_BY = N_("Closed by")
STILL_OPEN = N_("still open")
DAY = N_("Business day")
PERIOD = N_("Period")
TIME_ZONE = N_("Time zone")
PERIOD_VALUE = N_("{first} to {last}")

CASH = N_("Cash")
FLOAT = N_("Float")
SALES_TAKEN = N_("Money taken by sales ({count})")
FEE_PAYMENTS_TAKEN = N_("Fees paid at the counter ({count})")
REVERSALS_BACK = N_("Handed back by reversals ({count})")
REFUNDS_BACK = N_("Refunded on account closes ({count})")
NET_CASH = N_("Net cash")
EXPECTED = N_("Expected cash")
COUNTED = N_("Counted cash")
VARIANCE = N_("Variance")
COLLECTED = N_("Collected by the sales that stand (reversed sales left out)")
CREDIT_LOADED = N_("Credit loaded")
ARREARS_COLLECTED = N_("Arrears collected")
FEES_COLLECTED = N_("Fees collected")
BY_STATE = N_("Sales by state")
SALES = N_("Sales")
REVERSALS = N_("Reversals")
FEE_PAYMENTS = N_("Fee payments")
REFUNDS = N_("Account close refunds")
NONE = N_("None.")
SIGN_TELLER = N_("Teller's signature")
SIGN_SUPERVISOR = N_("Supervisor's signature")

COL_ITEM = N_("Item")
COL_AMOUNT = N_("Amount")
COL_COUNT = N_("Count")
COL_STATE = N_("State")
COL_TIME = N_("Time")
COL_SALE = N_("Sale no.")
COL_CUSTOMER = N_("Customer no.")
COL_KIND = N_("Kind")
COL_ARREARS = N_("Arrears")
COL_FEES = N_("Fees")
COL_CREDIT = N_("Credit")
COL_CASH = N_("Cash")
COL_APPROVER = N_("Approver")
COL_SALES = N_("Sales")
COL_REVERSALS = N_("Reversals")
COL_REVERSED = N_("Reversed")
COL_FEE_PAYMENTS = N_("Fee payments")
COL_REFUNDS = N_("Refunds")
COL_NET = N_("Net cash")
COL_FLOAT = N_("Float")
COL_EXPECTED = N_("Expected")
COL_COUNTED = N_("Counted")
COL_VARIANCE = N_("Variance")
COL_OPENED = N_("Opened")
COL_CLOSED = N_("Closed")
COL_OPERATOR = N_("Operator")
COL_COUNTER = N_("Counter")
COL_PLAN = N_("Tariff plan")
COL_CUSTOMERS = N_("Number of customers")
COL_ENERGY = N_("Energy (kWh)")
COL_METER_KIND = N_("Meter kind")
COL_TOTAL = N_("Total")
TOTAL_WITH_REVERSED = N_("Total, reversed sales included")
COL_BUCKET = N_("Balance")
COL_REMAINING = N_("Remaining")
TOTAL = N_("Total")

BY_OPERATOR = N_("By operator")
BY_COUNTER = N_("By counter")
SHIFTS = N_("Shifts")
UNRESOLVED = N_("Unfinished sales (not counted): {count}")
FAILED = N_("Failed sales (took no money): {count}")
CUSTOMERS = N_("Customers by meter kind and status")
SOLD_PER_DAY = N_("Amount sold per day (yuan)")
SOLD_TOTAL = N_("Sold in the period: {count} sales, {amount} yuan")
PER_PLAN = N_("By tariff plan")
BALANCES = N_("Meter balances from card write-backs (card meters, not closed)")
BALANCES_TOTAL = N_("Customers: {count}; remaining credit with a write-back: {amount} yuan")

FEE_KIND_LABELS = {"replacement": N_("replacement card"), "exchange": N_("damaged card exchange")}

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SHORT_TIME = "%H:%M:%S"
DAY_TIME = "%Y-%m-%d %H:%M"
MARGIN = 15 * mm
WIDTH = A4[0] - 2 * MARGIN - 12  # the frame's own padding is 6 points a side
BODY_SIZE = 9
TABLE_SIZE = 7.5
ROW_HEIGHT = 11
GRID = colors.HexColor("#9e9e9e")
HEAD_BG = colors.HexColor("#e8eef6")
TOTAL_BG = colors.HexColor("#f3f3f3")
BAR = colors.HexColor("#2f6db5")
BUCKET_COLORS = {
    "normal": colors.HexColor("#3c9a4a"),
    "alarm1": colors.HexColor("#e0a526"),
    "alarm2": colors.HexColor("#e06b26"),
    "tripped": colors.HexColor("#c62828"),
    "no_write_back": colors.HexColor("#7e57c2"),
}


def _t(msgid: str, language: str, /, **params: object) -> str:
    text = translate(msgid, language)
    return text.format(**params) if params else text


def _yuan(fen: int | None) -> str:
    return "" if fen is None else format_yuan(fen)


def _kwh(wh: int) -> str:
    """Wh as kWh with two decimals, rounded half away from zero, by integer arithmetic."""
    sign = "-" if wh < 0 else ""
    whole, part = divmod((abs(wh) + 5) // 10, 100)
    return f"{sign}{whole}.{part:02d}"


def _when(value: dt.datetime | None, fmt: str = TIME_FORMAT) -> str:
    return "" if value is None else value.strftime(fmt)


def _name(name: str, code: str) -> str:
    return code if not name or name == code else f"{name} ({code})"
