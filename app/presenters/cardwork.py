"""The card operations as both front ends run them (``app/cli_sales.py`` and
``ui/dialogs/cardops.py``, ``ui/pages/sale.py``, ``ui/dialogs/approval.py``): the service
calls bound to one database, clock and settings, and the lines that tell their results."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.card import CardAuthError
from app.domain.card import CardCommandError
from app.domain.card import CardContents
from app.domain.card import CorruptCardFile
from app.domain.card import UnsupportedProfile
from app.domain.ledger import SaleKind
from app.domain.permissions import Action
from app.i18n import _
from app.money import format_yuan
from app.ports import CardTerminal
from app.presenters import Bound
from app.services import approvals
from app.services import ledger
from app.services import selling
from app.services.auth import Principal
from app.services.customers import CustomerView


@dataclass(frozen=True)
class CardWork(Bound):
    """The sale, card and approval use cases on one database with the context's clock and
    settings. Build it on the calling thread (``CardWork.of``); its calls may run anywhere."""

    def sell(
        self,
        terminal: CardTerminal,
        actor: Principal,
        amount: int,
        cash: int | None,
        customer_no: str,
        request_id: str | None = None,
    ) -> selling.SaleOutcome:
        """Sell ``amount`` onto the card of ``customer_no`` (another customer's card is refused)."""
        return self.call(
            selling.sell,
            terminal,
            actor=actor,
            amount=amount,
            cash_received=cash,
            expect_customer=customer_no,
            override_request=request_id,
        )

    def open_account(
        self,
        terminal: CardTerminal,
        actor: Principal,
        customer_no: str,
        amount: int | None,
        cash: int | None,
    ) -> tuple[CustomerView, selling.SaleOutcome | None]:
        return self.call(
            selling.open_account,
            terminal,
            actor=actor,
            customer_no=customer_no,
            amount=amount,
            cash_received=cash,
        )

    def remote_payment(
        self,
        actor: Principal,
        customer_no: str,
        amount: int,
        cash: int | None,
        request_id: str | None = None,
    ) -> ledger.SaleView:
        return self.call(
            selling.remote_payment,
            actor=actor,
            customer_no=customer_no,
            amount=amount,
            cash_received=cash,
            override_request=request_id,
        )

    def rewrite(
        self, terminal: CardTerminal, actor: Principal, customer_no: str | None = None
    ) -> selling.SaleOutcome:
        return self.call(selling.rewrite, terminal, actor=actor, expect_customer=customer_no)

    def replace_card(
        self, terminal: CardTerminal, actor: Principal, customer_no: str, request_id: str
    ) -> tuple[CustomerView, int]:
        return self.call(
            selling.replace_card,
            terminal,
            actor=actor,
            customer_no=customer_no,
            approval_request=request_id,
        )

    def exchange_card(
        self,
        terminal: CardTerminal,
        actor: Principal,
        customer_no: str,
        old_card: CardContents | None,
        request_id: str | None = None,
    ) -> selling.ExchangeOutcome:
        """The blank card in ``terminal`` replaces the damaged card ``old_card`` (as read from
        it before; None: it could not be read)."""
        return self.call(
            selling.exchange_card,
            terminal,
            actor=actor,
            customer_no=customer_no,
            old_card=old_card,
            approval_request=request_id,
        )

    def erase_old_card(self, terminal: CardTerminal, actor: Principal, customer_no: str) -> str:
        """Erase the exchanged card in ``terminal`` (its blacklisting is lifted); its serial."""
        return selling.erase_exchanged_card(
            self.db, terminal, actor=actor, customer_no=customer_no, clock=self.clock
        )

    def reverse_sale(
        self, terminal: CardTerminal, actor: Principal, sale_id: str, request_id: str
    ) -> ledger.SaleView:
        return self.call(
            selling.reverse_sale,
            terminal,
            actor=actor,
            sale_id=sale_id,
            approval_request=request_id,
        )

    def approve_on_the_spot(
        self,
        approver_id: str,
        password: str,
        actor: Principal,
        action: Action,
        target: str,
        *,
        payload: Mapping[str, Any] | None = None,
        distinct_from: Iterable[str] = (),
    ) -> approvals.ApprovalView:
        """The approver signs in (under the lockout policy) and signs ``action`` on ``target``."""
        return self.call(
            approvals.sign_in_and_approve,
            approver_id=approver_id,
            password=password,
            actor=actor,
            action=action,
            target=target,
            payload=payload,
            distinct_from=distinct_from,
        )


# --------------------------------------------------------------------------- result lines


def purchase_line(sale: ledger.SaleView) -> str:
    """What the customer paid and got: a card purchase or a remote payment."""
    if sale.kind == SaleKind.REMOTE.value:
        return _(
            "Customer {customer_no}, remote payment: {amount} yuan paid, {credit} yuan credit.",
            customer_no=sale.customer_no,
            amount=format_yuan(sale.amount_fen),
            credit=format_yuan(sale.credit_fen),
        )
    return _(
        "Customer {customer_no}, purchase {count}: {amount} yuan paid, {credit} yuan credit.",
        customer_no=sale.customer_no,
        count=sale.purchase_count,
        amount=format_yuan(sale.amount_fen),
        credit=format_yuan(sale.credit_fen),
    )


def collected_lines(sale: ledger.SaleView) -> list[str]:
    """The arrears and fees the sale settled first, if any."""
    if not (sale.arrears_fen or sale.fees_fen):
        return []
    return [
        _(
            "Collected first: {arrears} yuan arrears, {fees} yuan fees.",
            arrears=format_yuan(sale.arrears_fen),
            fees=format_yuan(sale.fees_fen),
        )
    ]


def change_lines(change: int | None) -> list[str]:
    """The change to hand back, when the cash received was given."""
    return [] if change is None else [_("Change: {change} yuan.", change=format_yuan(change))]


def opened_line(customer: CustomerView) -> str:
    return _(
        "Account of customer {customer_no} opened on card {serial}.",
        customer_no=customer.customer_no,
        serial=customer.card_serial,
    )


def rewritten_line(sale: ledger.SaleView) -> str:
    return _(
        "Card of customer {customer_no} rewritten with purchase {count} (sale {sale_id}); "
        "no money taken.",
        customer_no=sale.customer_no,
        count=sale.purchase_count,
        sale_id=sale.sale_id,
    )


def fee_line(fee: int) -> str:
    return _("Replacement fee: {fee} yuan.", fee=format_yuan(fee))


def replaced_lines(customer: CustomerView, fee: int, approver: str) -> list[str]:
    """A replacement card issued: who approved, and the fee taken."""
    return [
        _(
            "Replacement card {serial} issued to customer {customer_no}, approved by "
            "{approver}; the old card is blacklisted.",
            serial=customer.card_serial,
            customer_no=customer.customer_no,
            approver=approver,
        ),
        fee_line(fee),
    ]


# a damaged card that answers with one of these is read as "cannot be read"; any other card
# error (no card, a blank, another utility's or kind of card) stops the exchange instead
UNREADABLE = (CorruptCardFile, CardCommandError, CardAuthError, UnsupportedProfile)


def read_old_card(terminal: CardTerminal) -> CardContents | None:
    """The damaged card in ``terminal`` as it reads, or None when it cannot be read."""
    try:
        return terminal.read()
    except UNREADABLE:
        return None


def exchanged_lines(outcome: selling.ExchangeOutcome, approver: str | None) -> list[str]:
    """A damaged card exchanged: what the new card carries over, who approved, the fee."""
    customer = outcome.customer
    if outcome.old_serial is None:
        return [
            _(
                "The card {serial} of an interrupted exchange is finished; no fee is taken again.",
                serial=customer.card_serial,
            )
        ]
    lines = [
        _(
            "Card {old} of customer {customer_no} exchanged for card {serial}; the new card "
            "carries the last purchase.",
            old=outcome.old_serial,
            customer_no=customer.customer_no,
            serial=customer.card_serial,
        ),
        _("The old card was read: what the meter wrote back on it is kept.")
        if outcome.old_read
        else _("The old card could not be read: the purchase comes from the ledger."),
    ]
    if approver:
        lines.append(_("Approved by {approver}.", approver=approver))
    return [*lines, _("Exchange fee: {fee} yuan.", fee=format_yuan(outcome.fee))]


def erased_line(serial: str | None) -> str:
    """What became of the old card of an exchange (None: it could not be erased)."""
    if serial is None:
        return _("The old card could not be erased; it stays blacklisted.")
    return _("The old card {serial} is erased and can be used as a blank card.", serial=serial)


def reversed_lines(sale: ledger.SaleView, approver: str) -> list[str]:
    """A sale reversed: who approved, what the card holds again, the money to hand back."""
    return [
        _(
            "Sale {sale_id} reversed, approved by {approver}; the card holds purchase {count} "
            "again.",
            sale_id=sale.sale_id,
            approver=approver,
            count=(sale.purchase_count or 1) - 1,
        ),
        _("Hand back {amount} yuan to the customer.", amount=format_yuan(sale.amount_fen)),
    ]


def approver_of(view: approvals.ApprovalView) -> str:
    """The supervisor who gave the last approval of ``view``."""
    return view.approver or "?"
