"""Close, pause and resume an account as both front ends run them (``app/cli_accounts.py`` and
the customers page, ``ui/pages/customers.py`` with ``ui/dialogs/accounts.py``): the service
calls bound to one database, clock and settings, and the lines that tell their results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain import settlement as st
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.ports import CardTerminal
from app.presenters import Bound
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.lifecycle import account
from app.services.lifecycle.account import CloseRequest
from app.settings import RECEIPT_LANGUAGE

__all__ = [
    "AccountWork",
    "CloseRequest",
    "closed_line",
    "paused_line",
    "resumed_line",
    "settlement_lines",
]


@dataclass(frozen=True)
class AccountWork(Bound):
    """The account lifecycle use cases on one database with the context's clock and settings."""

    def preview_close(
        self, terminal: CardTerminal | None, actor: Principal, request: CloseRequest
    ) -> st.Settlement:
        return self.call(account.preview_close, terminal, request, actor=actor)

    def close_account(
        self,
        terminal: CardTerminal | None,
        actor: Principal,
        request: CloseRequest,
        request_id: str,
        *,
        reason: str = "",
    ) -> st.Settlement:
        """The close of ``request`` (the one previewed), approved by ``request_id``."""
        return self.call(
            account.close_account,
            terminal,
            actor=actor,
            customer_no=request.customer_no,
            approval_request=request_id,
            card_outcome=request.card_outcome,
            reason=reason,
            meter_read=request.meter_read,
        )

    def pause(
        self, actor: Principal, customer_no: str, reason: str, request_id: str | None = None
    ) -> CustomerView:
        return self._status(account.pause_account, actor, customer_no, reason, request_id)

    def resume(
        self, actor: Principal, customer_no: str, reason: str = "", request_id: str | None = None
    ) -> CustomerView:
        return self._status(account.resume_account, actor, customer_no, reason, request_id)

    def _status(
        self,
        change: Callable[..., CustomerView],
        actor: Principal,
        customer_no: str,
        reason: str,
        request_id: str | None,
    ) -> CustomerView:
        """Pause or resume, with the approval a ``pause_account`` rule may ask for."""
        return self.call(
            change, actor=actor, customer_no=customer_no, reason=reason, approval_request=request_id
        )

    def statement_language(self) -> str:
        return str(self.settings.value(RECEIPT_LANGUAGE))


# --------------------------------------------------------------------------- result lines


def settlement_lines(s: st.Settlement) -> list[str]:
    """The figures of a close (or of its preview) and what to hand back."""
    lines = [
        _(
            "Credit left: {unloaded} yuan on the card not loaded by the meter + {remaining} yuan "
            "meter balance = {total} yuan.",
            unloaded=format_yuan(s.unloaded),
            remaining=format_yuan(s.meter_remaining),
            total=format_yuan(s.unloaded + s.meter_remaining),
        ),
        _(
            "Paid from it first: {arrears} yuan arrears, {fees} yuan fees; balance {balance} yuan.",
            arrears=format_yuan(s.arrears),
            fees=format_yuan(s.fees),
            balance=format_yuan(s.balance),
        ),
    ]
    if s.mode == st.REFUND:
        lines.append(_("Hand back {amount} yuan to the customer.", amount=format_yuan(s.refund)))
    else:
        lines.append(
            _("{amount} yuan is kept as a credit note.", amount=format_yuan(s.credit_note))
        )
    lines.append(_("Card: {card}.", card=translate(st.CARD_TEXT[s.card])))
    return lines


def closed_line(s: st.Settlement) -> str:
    return _(
        "Account of customer {customer_no} closed, approved by {approver}.",
        customer_no=s.customer_no,
        approver=s.approver_id or "?",
    )


def paused_line(view: CustomerView) -> str:
    return _(
        "Account of customer {customer_no} paused: {reason}. No sales until it is resumed.",
        customer_no=view.customer_no,
        reason=view.status_reason,
    )


def resumed_line(view: CustomerView) -> str:
    return _("Account of customer {customer_no} resumed.", customer_no=view.customer_no)
