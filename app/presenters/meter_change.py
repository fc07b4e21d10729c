"""A meter change as both front ends tell it (``app/cli_meter_change.py`` and
``ui/dialogs/meter_change.py``): the service call bound to one database, clock and settings,
the lines that tell its result, and its slip."""

from __future__ import annotations

from dataclasses import dataclass

from app.context import AppContext
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import _
from app.money import format_yuan
from app.persistence.db import Database
from app.ports import CardTerminal
from app.ports import SlipRenderer
from app.presenters import Bound
from app.services.auth import Principal
from app.services.lifecycle.meter_change import MeterChange
from app.services.lifecycle.meter_change import MeterChangeRequest
from app.services.lifecycle.meter_change import change_meter
from app.settings import RECEIPT_LANGUAGE
from app.settings import TIME_ZONE


class NoSlipRenderer(CardVendError):
    code = "no_renderer"
    template = N_("No slip printing is set up here; the meter change itself is done.")


@dataclass(frozen=True)
class MeterChangeWork(Bound):
    """The meter change on one database with the context's clock and settings."""

    slips: SlipRenderer | None = None

    @classmethod
    def of(cls, ctx: AppContext, db: Database | None = None) -> MeterChangeWork:
        return cls(ctx.db if db is None else db, ctx.clock, ctx.settings, ctx.slip_renderer)

    def change(
        self,
        terminal: CardTerminal | None,
        actor: Principal,
        request: MeterChangeRequest,
        approval_request: str | None = None,
    ) -> MeterChange:
        return self.call(
            change_meter,
            terminal,
            actor=actor,
            approval_request=approval_request,
            **request.arguments(),
        )

    def slip_pdf(self, change: MeterChange, language: str | None = None) -> bytes:
        """The slip in ``language`` (default: the receipt language setting)."""
        if self.slips is None:
            raise NoSlipRenderer()
        lang = language or self.settings.value(RECEIPT_LANGUAGE)
        return self.slips.meter_change_pdf(change, language=lang, tz=self.settings.value(TIME_ZONE))


def meter_change_lines(change: MeterChange) -> list[str]:
    """What a meter change did, line by line, in the current language."""
    lines = [
        _(
            "Customer {customer_no} moved from meter {old} to meter {new}.",
            customer_no=change.customer.customer_no,
            old=change.old_meter_no,
            new=change.new_meter_no,
        ),
        _(
            "Carried to the new meter: {amount} yuan as purchase {count}; put the card into "
            "the new meter.",
            amount=format_yuan(change.carried_fen),
            count=change.purchase_count,
        ),
    ]
    if change.unloaded_fen:
        lines.append(
            _(
                "It includes {amount} yuan the old meter had not loaded.",
                amount=format_yuan(change.unloaded_fen),
            )
        )
    if change.arrears_fen:
        lines.append(
            _(
                "The old meter's overdraft of {amount} yuan is now arrears to collect.",
                amount=format_yuan(change.arrears_fen),
            )
        )
    if change.resumed:
        lines.append(_("The card write of this meter change was finished now."))
    return lines
