"""The customer archive: import from CSV, find, read one customer.

CSV import (``cardvend customers import FILE.csv --operator ADMIN``): an administrator's set-up
action, audited (who, the file, rows imported and bad).  UTF-8 (a BOM is fine) with a header row
``customer_no,name,address,phone,meter_no,meter_kind,tariff_plan,office,ct_ratio,pt_ratio``
(order free, extra columns ignored).  Every bad row is reported with its line number and reason;
**the good rows are imported together in one transaction** (all of them or, on a database
failure, none).  With ``all_or_nothing=True`` a single bad row imports nothing.  A file that
cannot be read as CSV at all, or lacks a required column, imports nothing.  A customer_no or
meter_no that already exists (in the file or the database) is a bad row: an import never
overwrites the archive.  Unknown offices are created; an unknown tariff plan is a bad row.

Memory stays flat whatever the file holds: lines are read at most ``MAX_ROW_CHARS`` characters
at a time, and a row longer than that (a line, or lines inside quotes) is a bad row whose rest
is read and dropped; a first line that long is not a CSV header, and nothing is imported.
"""

from app.services.customers.archive import CustomerView
from app.services.customers.archive import add_customer
from app.services.customers.archive import count_customers
from app.services.customers.archive import customer_or_none
from app.services.customers.archive import customer_view
from app.services.customers.archive import get_customer
from app.services.customers.archive import view_in_session
from app.services.customers.importing import BATCH
from app.services.customers.importing import COLUMNS
from app.services.customers.importing import IMPORT_CACHE_KIB
from app.services.customers.importing import MAX_ROW_CHARS
from app.services.customers.importing import REQUIRED
from app.services.customers.importing import ImportReport
from app.services.customers.importing import RowError
from app.services.customers.importing import import_csv
from app.services.customers.search import DEFAULT_LIMIT
from app.services.customers.search import SEARCH_PAGE
from app.services.customers.search import SearchCursor
from app.services.customers.search import SearchHit
from app.services.customers.search import SearchPage
from app.services.customers.search import find_customers
from app.services.customers.search import looks_like_address
from app.services.customers.search import search_customers

__all__ = [
    "BATCH",
    "COLUMNS",
    "DEFAULT_LIMIT",
    "IMPORT_CACHE_KIB",
    "MAX_ROW_CHARS",
    "REQUIRED",
    "SEARCH_PAGE",
    "CustomerView",
    "ImportReport",
    "RowError",
    "SearchCursor",
    "SearchHit",
    "SearchPage",
    "add_customer",
    "count_customers",
    "customer_or_none",
    "customer_view",
    "find_customers",
    "get_customer",
    "import_csv",
    "looks_like_address",
    "search_customers",
    "view_in_session",
]
