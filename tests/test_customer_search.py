"""The paged customer search of the counter window (app.services.customers.search_customers),
on the demo data, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from app.errors import ValidationError
from app.persistence.db import Database
from app.services.customers import SearchCursor
from app.services.customers import SearchHit
from app.services.customers import find_customers
from app.services.customers import looks_like_address
from app.services.customers import search_customers
from app.services.demo import demo_customer


def all_pages(db: Database, text: str, limit: int) -> tuple[list[SearchHit], int]:
    hits: list[SearchHit] = []
    after: SearchCursor | None = None
    pages = 0
    while True:
        page = search_customers(db, text, after=after, limit=limit)
        pages += 1
        hits += page.hits
        if page.next is None:
            return hits, pages
        assert len(page.hits) == limit
        after = page.next


def test_pages_follow_each_other_without_gaps_or_repeats(demo_db: Database) -> None:
    hits, pages = all_pages(demo_db, "王", 7)
    numbers = [h.customer.customer_no for h in hits]
    assert len(numbers) == len(set(numbers)) == 50 and pages == 8
    assert all(h.customer.name.startswith("王") for h in hits)
    # the same customers, in the same order, as one large page of find_customers
    assert numbers == [c.customer_no for c in find_customers(demo_db, "王", limit=100)]
    exact, _ = all_pages(demo_db, "王", 50)  # exactly one full page: no empty page after it
    assert len(exact) == 50


def test_numbers_phones_and_dues(demo_db: Database) -> None:
    page = search_customers(demo_db, "100000000001")
    assert [h.customer.customer_no for h in page.hits] == ["100000000001"] and page.next is None
    assert (page.hits[0].arrears_fen, page.hits[0].fees_fen, page.hits[0].owed_fen) == (
        3000,
        500,
        3500,
    )
    meter = demo_customer(41)["meter_no"]
    assert [h.customer.customer_no for h in search_customers(demo_db, meter).hits] == [
        "100000000042"
    ]
    suffix = demo_customer(41)["phone"][-6:]
    found = search_customers(demo_db, suffix).hits
    assert "100000000042" in [h.customer.customer_no for h in found]
    assert all(h.customer.phone.endswith(suffix) for h in found)
    with pytest.raises(ValidationError, match="4 digits"):
        search_customers(demo_db, "123")
    with pytest.raises(ValidationError):
        search_customers(demo_db, "  ")


def test_address_search_after_names(demo_db: Database) -> None:
    assert looks_like_address("人民路12号") and looks_like_address("建设路")
    assert looks_like_address("Room 12") and not looks_like_address("王丽")
    assert not looks_like_address("13800001234")
    hits, _ = all_pages(demo_db, "人民路", 20)
    expected = [demo_customer(i)["customer_no"] for i in range(1000) if i % 8 == 0]
    assert sorted(h.customer.customer_no for h in hits) == sorted(expected)
    house = search_customers(demo_db, "人民路3号").hits  # customers 16..23 -> house 3
    assert [h.customer.customer_no for h in house] == ["100000000017"]
    # a text that is not an address-like one searches names only
    assert all(h.customer.name.startswith("王丽") for h in search_customers(demo_db, "王丽").hits)


def test_wildcards_are_plain_text(demo_db: Database) -> None:
    assert search_customers(demo_db, "%路").hits == ()
    assert search_customers(demo_db, "_民路").hits == ()
