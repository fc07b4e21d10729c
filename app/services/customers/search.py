"""Finding customers: by number prefix, and the paged search of the customers page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.ids import is_digits
from app.errors import ValidationError
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import TariffPlan

if TYPE_CHECKING:
    pass
from app.services.customers.archive import CustomerView
from app.services.customers.archive import _view

# --------------------------------------------------------------------------- find

DEFAULT_LIMIT = 50


def _prefix_clause(column: Any, prefix: str, dialect: str) -> Any:
    if dialect == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped + "%", escape="\\")
    # SQLite compares TEXT with BINARY collation (code point order), so a prefix is a range
    # that the B-tree index answers directly.
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def _search_text(text: str, limit: int) -> str:
    """The text a search looks for (stripped); an empty text or a limit out of range is
    refused."""
    text = (text or "").strip()
    if not text:
        raise ValidationError(N_("type a customer number, meter number, name or phone"))
    if limit < 1 or limit > 10_000:
        raise ValidationError(N_("limit must be from 1 to 10000"))
    return text


def find_customers(
    db: Database, text: str, *, limit: int = DEFAULT_LIMIT, use_index: bool = True
) -> list[CustomerView]:
    """Find by customer_no or meter_no (12 digits, exact), phone suffix (4 to 11 digits) or
    name prefix (anything else).  ``use_index=False`` runs the same query without its index
    (for the benchmark's comparison; SQLite only)."""
    text = _search_text(text, limit)
    with db.read() as session:
        dialect = db.dialect
        query = select(Customer, TariffPlan.code).join(
            TariffPlan, TariffPlan.id == Customer.tariff_plan_id
        )
        if _number(text) and len(text) == 12:
            where = or_(Customer.customer_no == text, Customer.meter_no == text)
            order = (Customer.customer_no, Customer.id)
            if use_index:
                # two indexed lookups rather than an OR the planner may scan
                found: list[CustomerView] = []
                for col in (Customer.customer_no, Customer.meter_no):
                    for c, code in session.execute(query.where(col == text)):
                        if all(v.customer_no != c.customer_no for v in found):
                            found.append(_view(c, code))
                return found[:limit]
        elif _number(text) and 4 <= len(text) <= 11:
            where = _prefix_clause(Customer.phone_rev, text[::-1], dialect)
            order = (Customer.phone_rev, Customer.id)
        else:
            where = _prefix_clause(Customer.name, text, dialect)
            order = (Customer.name, Customer.id)
        # in the index's own order, so a common surname reads `limit` rows, not all of them
        query = query.where(where).order_by(*order).limit(limit)
        if not use_index:
            if dialect != "sqlite":
                raise ValidationError(N_("an unindexed search is only available on SQLite"))
            query = query.with_hint(Customer, "NOT INDEXED", "sqlite")
        return [_view(c, code) for c, code in session.execute(query)]


# --------------------------------------------------------------------------- paged search
# (issue 8: the counter window's customer search loads page after page, by a keyset cursor)

SEARCH_PAGE = 50
# characters of a Chinese address that a name does not usually hold
_ADDRESS_MARKS = frozenset("省市区县镇乡村路街道巷弄号栋幢楼单元室组")

SearchCursor = tuple[str, str, int]  # (stage, last key of that stage, last customer id)


@dataclass(frozen=True)
class SearchHit:
    customer: CustomerView
    arrears_fen: int  # unsettled arrears that must be collected before credit
    fees_fen: int  # unsettled fees

    @property
    def owed_fen(self) -> int:
        return self.arrears_fen + self.fees_fen


@dataclass(frozen=True)
class SearchPage:
    hits: tuple[SearchHit, ...]
    next: SearchCursor | None  # give it back as ``after`` for the next page; None: no more


def looks_like_address(text: str) -> bool:
    """A text worth searching in addresses too: it holds an address word (路, 号, 小区...) or
    mixes digits with other characters (人民路12)."""
    text = text.strip()
    if any(ch in _ADDRESS_MARKS for ch in text):
        return True
    # free text: a digit of any form makes it look like an address (人民路１２号)
    return any(ch.isdigit() for ch in text) and not text.isdigit()


def _number(text: str) -> bool:
    """Whether a search text is a number (customer, meter, phone): ASCII digits.  Digits of
    another form (full-width ３０００, Arabic-Indic, superscripts) are refused: no number is
    stored with them, and a teller typing them needs to switch the input method, not an empty
    list."""
    if is_digits(text):
        return True
    if text.isdigit():
        raise ValidationError(
            N_(
                "{text!r} is typed with full-width or other digits: type numbers with the digits "
                "0-9 (switch the input method to half-width)."
            ),
            text=text,
        )
    return False


def _stages(text: str) -> tuple[str, ...]:
    if _number(text):
        if len(text) == 12:
            return ("number",)
        if 4 <= len(text) <= 11:
            return ("phone",)
        raise ValidationError(
            N_(
                "Type at least 4 digits of a phone number, or the whole 12-digit customer or "
                "meter number."
            )
        )
    return ("name", "address") if looks_like_address(text) else ("name",)


def _stage_query(
    stage: str, text: str, dialect: str, after: tuple[str, int] | None, limit: int
) -> Any:
    query = select(Customer, TariffPlan.code).join(
        TariffPlan, TariffPlan.id == Customer.tariff_plan_id
    )
    if stage == "number":
        return query.where(or_(Customer.customer_no == text, Customer.meter_no == text)).order_by(
            Customer.customer_no, Customer.id
        )
    if stage == "address":
        # no index on addresses (it would cost the import a third more time and disk): a scan
        # in id order that stops at the first page of hits; a substring, since a teller types
        # the street or the building rather than the province the address starts with
        query = query.where(
            Customer.address.contains(text, autoescape=True),
            not_(_prefix_clause(Customer.name, text, dialect)),  # already found by name
        )
        if after is not None:
            query = query.where(Customer.id > after[1])
        return query.order_by(Customer.id).limit(limit)
    column = Customer.phone_rev if stage == "phone" else Customer.name
    key = text[::-1] if stage == "phone" else text
    query = query.where(_prefix_clause(column, key, dialect))
    if after is not None:
        last, last_id = after
        query = query.where(or_(column > last, and_(column == last, Customer.id > last_id)))
    # in the index's own order, so a page reads `limit` index entries
    return query.order_by(column, Customer.id).limit(limit)


def _stage_key(stage: str, c: Customer) -> str:
    if stage == "phone":
        return c.phone_rev
    if stage == "name":
        return c.name
    return ""


def _dues_of(session: Session, ids: list[int]) -> dict[int, tuple[int, int]]:
    """Unsettled arrears to collect and fees per customer id, in one query (as ledger.dues)."""
    if not ids:
        return {}
    rows = session.execute(
        select(ArrearsItem.customer_id, ArrearsItem.kind, func.sum(ArrearsItem.amount))
        .where(
            ArrearsItem.customer_id.in_(ids),
            ArrearsItem.settled_by_sale_id.is_(None),
            or_(ArrearsItem.kind == "fee", ArrearsItem.must_collect.is_(True)),
        )
        .group_by(ArrearsItem.customer_id, ArrearsItem.kind)
    )
    dues: dict[int, tuple[int, int]] = {}
    for customer_id, kind, amount in rows:
        arrears, fees = dues.get(customer_id, (0, 0))
        if kind == "fee":
            fees += int(amount or 0)
        else:
            arrears += int(amount or 0)
        dues[customer_id] = (arrears, fees)
    return dues


def search_customers(
    db: Database, text: str, *, after: SearchCursor | None = None, limit: int = SEARCH_PAGE
) -> SearchPage:
    """One page of the customers :func:`find_customers` finds, with what each owes, and the
    cursor of the next page.  12 digits: the customer or meter number; 4 to 11 digits: the
    phone's last digits; other text: the name's beginning and, when the text looks like an
    address (:func:`looks_like_address`), then addresses holding it."""
    text = _search_text(text, limit)
    stages = _stages(text)
    if after is not None and after[0] not in stages:
        raise ValidationError(N_("This page of results belongs to another search; search again."))
    start = stages.index(after[0]) if after is not None else 0
    found: list[tuple[str, Customer, str]] = []
    with db.read() as session:
        for stage in stages[start:]:
            resume = (after[1], after[2]) if after is not None and after[0] == stage else None
            query = _stage_query(stage, text, db.dialect, resume, limit + 1 - len(found))
            found += [(stage, c, code or "") for c, code in session.execute(query)]
            if len(found) > limit:
                break
        more = len(found) > limit
        found = found[:limit]
        dues = _dues_of(session, [c.id for _, c, _ in found])
        hits = tuple(SearchHit(_view(c, code), *dues.get(c.id, (0, 0))) for _, c, code in found)
        cursor: SearchCursor | None = None
        if more and found:
            stage, last, _ = found[-1]
            cursor = (stage, _stage_key(stage, last), last.id)
    return SearchPage(hits, cursor)
