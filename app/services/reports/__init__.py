"""Reports: the shift Z-report, the office's daily report and the charge-control statistics.

Read-only; each report is one read unit of work (one snapshot: PostgreSQL runs it REPEATABLE
READ, SQLite's WAL read transaction is one already), aggregated in SQL, and comes back as frozen
dataclasses with ``to_json()``.  Rendering (PDF, CSV) is ``printing/reports.py``.  Reading any of
them needs :attr:`Action.VIEW_REPORTS`.

What the figures mean (money in fen, never a float):

* A sale *took money* when it is ``completed`` or ``reversed`` (the cash was taken then; a
  reversal hands it back later, as its own line).  ``failed`` sales never took money; ``pending``
  and ``in_doubt`` ones are shown but count for nothing until resolved.
* ``sales_count`` / ``sales_fen``: the sales that took money (gross of reversals).
* ``credit_fen`` / ``arrears_fen`` / ``fees_fen``: of the sales that stand (``completed``): credit
  loaded, arrears and fees collected.  A reversed sale's credit was taken back from the card.
* ``reversals``: completed reversals, i.e. cash handed back (a shift: those made in the shift; a
  day: those completed that day).  ``fee_payments``: fees paid outside a sale (replacement cards).
* ``net_cash_fen`` = sales_fen + fee_payments_fen - reversals_fen (- refunds_fen of account
  closes on a shift report): what the drawer gained.  For a
  shift, expected cash = float + net cash (as app/services/shifts.py counts it at the close).
* The business day is local midnight to local midnight in the office's time zone (setting
  ``time_zone``), so 23 or 25 hours on a daylight-saving change.  A sale belongs to the day of
  its ``created_at``, a reversal to the day it completed, a fee payment to the day it was paid.
* The daily report covers every counter writing to this database: the database is the office's
  (one SQLite per counter, or one PostgreSQL per office), and a counter's cash belongs to its
  office whoever the customer is.  The statistics are about the office's customers
  (``Customer.office_code``) and the sales to them.
"""

from app.localtime import zone
from app.services.reports.common import current_shift_id
from app.services.reports.common import day_bounds
from app.services.reports.daily import daily_report
from app.services.reports.figures import BUCKET_LABELS
from app.services.reports.figures import BUCKETS
from app.services.reports.figures import DEFAULT_TZ
from app.services.reports.figures import KIND_LABELS
from app.services.reports.figures import KIND_ORDER
from app.services.reports.figures import STATE_LABELS
from app.services.reports.figures import STATE_ORDER
from app.services.reports.figures import STATS_DAYS
from app.services.reports.figures import STATUS_LABELS
from app.services.reports.figures import STATUS_ORDER
from app.services.reports.figures import TAKEN
from app.services.reports.figures import BalanceBucket
from app.services.reports.figures import CustomerCount
from app.services.reports.figures import DailyReport
from app.services.reports.figures import DailyRow
from app.services.reports.figures import DailyShift
from app.services.reports.figures import DayAmount
from app.services.reports.figures import FeePaymentLine
from app.services.reports.figures import PlanAmount
from app.services.reports.figures import ReversalLine
from app.services.reports.figures import ShiftReport
from app.services.reports.figures import ShiftSaleLine
from app.services.reports.figures import StateTotal
from app.services.reports.figures import StatsReport
from app.services.reports.shift import shift_report
from app.services.reports.stats import stats_report

__all__ = [
    "BUCKETS",
    "BUCKET_LABELS",
    "DEFAULT_TZ",
    "KIND_LABELS",
    "KIND_ORDER",
    "STATE_LABELS",
    "STATE_ORDER",
    "STATS_DAYS",
    "STATUS_LABELS",
    "STATUS_ORDER",
    "TAKEN",
    "BalanceBucket",
    "CustomerCount",
    "DailyReport",
    "DailyRow",
    "DailyShift",
    "DayAmount",
    "FeePaymentLine",
    "PlanAmount",
    "ReversalLine",
    "ShiftReport",
    "ShiftSaleLine",
    "StateTotal",
    "StatsReport",
    "current_shift_id",
    "daily_report",
    "day_bounds",
    "shift_report",
    "stats_report",
    "zone",
]
