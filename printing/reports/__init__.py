"""The reports as A4 PDFs and as CSV: the shift Z-report, the daily office report and the
charge-control statistics (app/services/reports.py builds them; this module only renders).

PDF: reportlab platypus tables in the embedded CJK font (:func:`printing.fonts.font_name`), so
Chinese comes back out of ``pdftotext``; every label is an English message id translated into
``language`` (``"zh_CN"`` or ``"en"``).  Tables are drawn by a small flowable of fixed-height
rows (:class:`_Ledger`) that repeats its header on every page, so 5,000 sales lay out quickly.  The statistics
report draws a bar chart of the amounts sold per day and one of the balance buckets.

CSV: UTF-8 with a byte order mark (Excel then shows Chinese), like the audit export.  A report is
a series of sections: a row ``[name]``, a header row of stable English column names, the rows,
and an empty row.  Money appears twice: ``<field>_yuan`` as exact decimal text
(:func:`app.money.format_yuan`) and ``<field>_fen`` as the integer.  Times are local, ISO 8601
with their offset.  Cells that a spreadsheet would run as a formula are escaped with a
leading ``'`` (:mod:`app.csvsafe`; plain numbers such as a variance of ``-5.00`` stay numbers).
"""

from printing.reports.csvout import daily_report_csv
from printing.reports.csvout import shift_report_csv
from printing.reports.csvout import stats_report_csv
from printing.reports.pdf import daily_report_pdf
from printing.reports.pdf import shift_report_pdf
from printing.reports.pdf import stats_report_pdf
from printing.reports.settlement import settlement_pdf

__all__ = [
    "daily_report_csv",
    "daily_report_pdf",
    "settlement_pdf",
    "shift_report_csv",
    "shift_report_pdf",
    "stats_report_csv",
    "stats_report_pdf",
]
