"""The presenters both front ends render (app/presenters/): the lines they word, in both languages."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from app import i18n
from app.domain.ledger import SaleKind
from app.presenters import cardwork


@pytest.fixture
def english() -> Iterator[None]:
    before = i18n.get_language()
    i18n.set_language("en")
    yield
    i18n.set_language(before)


def _sale(**changes: Any) -> Any:
    sale = {
        "sale_id": "S1",
        "kind": SaleKind.CARD.value,
        "customer_no": "C001",
        "purchase_count": 3,
        "amount_fen": 10000,
        "credit_fen": 9000,
        "arrears_fen": 0,
        "fees_fen": 0,
    }
    return SimpleNamespace(**{**sale, **changes})


def test_sale_lines(english: None) -> None:
    assert cardwork.purchase_line(_sale()) == (
        "Customer C001, purchase 3: 100.00 yuan paid, 90.00 yuan credit."
    )
    assert cardwork.purchase_line(_sale(kind=SaleKind.REMOTE.value)) == (
        "Customer C001, remote payment: 100.00 yuan paid, 90.00 yuan credit."
    )
    assert cardwork.collected_lines(_sale()) == []
    assert cardwork.collected_lines(_sale(arrears_fen=500)) == [
        "Collected first: 5.00 yuan arrears, 0.00 yuan fees."
    ]
    assert cardwork.change_lines(None) == []
    assert cardwork.change_lines(250) == ["Change: 2.50 yuan."]


def test_approval_lines(english: None) -> None:
    assert cardwork.reversed_lines(_sale(), "sup1") == [
        "Sale S1 reversed, approved by sup1; the card holds purchase 2 again.",
        "Hand back 100.00 yuan to the customer.",
    ]
    customer = SimpleNamespace(customer_no="C001", card_serial="0011223344556677")
    assert cardwork.replaced_lines(customer, 2000, "sup1") == [
        "Replacement card 0011223344556677 issued to customer C001, approved by sup1; the old "
        "card is blacklisted.",
        "Replacement fee: 20.00 yuan.",
    ]
    # the last signer, as the approval's own view names it (ApprovalView.approver)
    assert cardwork.approver_of(SimpleNamespace(approver=None)) == "?"  # type: ignore[arg-type]
    assert cardwork.approver_of(SimpleNamespace(approver="a")) == "a"  # type: ignore[arg-type]


def test_lines_are_translated() -> None:
    before = i18n.get_language()
    try:
        i18n.set_language("en")
        english = cardwork.rewritten_line(_sale())
        i18n.set_language("zh_CN")
        chinese = cardwork.rewritten_line(_sale())
    finally:
        i18n.set_language(before)
    assert "C001" in chinese and "S1" in chinese
    assert chinese != english
