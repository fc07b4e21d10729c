"""A remote customer's charge control as a person reads it (the station's and the counter's
``control status``)."""

from __future__ import annotations

import datetime as dt

from app.i18n import N_, _, translate
from app.money import format_yuan

STATE_TEXT = {
    "normal": N_("normal"),
    "alarm1": N_("first alarm"),
    "alarm2": N_("second alarm"),
    "tripped": N_("tripped"),
    "closed": N_("closed"),
    "unknown": N_("unknown"),
}


def status_line(
    customer_no: str,
    state: str,
    remaining_fen: int | None,
    relay: str | None,
    read_at: dt.datetime | str | None,
    permit_at: dt.datetime | str | None,
) -> str:
    """One line: state, remaining balance, relay, last reading, last close permit."""

    def when(value: dt.datetime | str | None) -> str:
        if value is None:
            return "—"
        return value.isoformat() if isinstance(value, dt.datetime) else value

    return _(
        "{customer_no}: {state}, remaining {remaining} yuan, relay {relay}, last reading "
        "{read_at}, close permit sent {permit_at}",
        customer_no=customer_no,
        state=translate(STATE_TEXT.get(state, state)),
        remaining=format_yuan(remaining_fen) if remaining_fen is not None else "—",
        relay=relay or "—",
        read_at=when(read_at),
        permit_at=when(permit_at),
    )
