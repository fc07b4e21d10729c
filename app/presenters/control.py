"""A remote customer's charge control as a person reads it (the station's and the counter's
``control status``)."""

from __future__ import annotations

import datetime as dt

from app.i18n import N_
from app.i18n import _
from app.i18n import translate
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
        "{customer_no}: {state}, remaining {remaining} yuan, {relay}, last reading {read_at}, "
        "close permit sent {permit_at}",
        customer_no=customer_no,
        state=translate(STATE_TEXT.get(state, state)),
        remaining=format_yuan(remaining_fen) if remaining_fen is not None else "—",
        relay=relay_text(relay),
        read_at=when(read_at),
        permit_at=when(permit_at),
    )


RELAY_TEXT = {  # whole phrases: "closed" alone is an account's state in Chinese
    "closed": N_("relay closed"),
    "open": N_("relay open"),
}


def relay_text(relay: str | None) -> str:
    """A meter's relay as a person reads it: "relay closed" (power on), "relay open"."""
    return translate(RELAY_TEXT.get(relay or "", N_("relay —")))


def kwh(wh: int | None) -> str:
    """An energy register in Wh as kWh with three decimals."""
    return "—" if wh is None else f"{wh // 1000}.{wh % 1000:03d}"


def _meter_answer(relay: str | None, clock: str | None, energy_wh: int | None) -> dict[str, str]:
    """The relay, clock and energy a called meter gave, as the meter texts show them."""
    return {"relay": relay_text(relay), "clock": clock or "—", "energy": kwh(energy_wh)}


def condition_text(
    customer_no: str,
    meter_no: str,
    relay: str | None,
    words: list[int | None],
    clock: str | None,
    energy_wh: int | None,
    read_at: str | None,
    fetched_at: str,
) -> str:
    """What a called meter said in full (``cardvend control condition``): relay, clock, energy,
    status words, the station's last reading and when it was called."""
    return _(
        "{customer_no} (meter {meter_no}): {relay}, meter clock {clock}, energy {energy} "
        "kWh, status words {words}; last reading by the station {read_at}; called {fetched_at}",
        customer_no=customer_no,
        meter_no=meter_no,
        **_meter_answer(relay, clock, energy_wh),
        words=" ".join(f"{w:04X}" if w is not None else "----" for w in words) or "—",
        read_at=read_at or "—",
        fetched_at=fetched_at,
    )


def meter_line(
    meter_no: str, relay: str | None, clock: str | None, energy_wh: int | None, fetched_at: str
) -> str:
    """What a called meter said, short (the sale page, beside the station's view)."""
    return _(
        "Meter {meter_no} called at {fetched_at}: {relay}, meter clock {clock}, energy {energy} "
        "kWh",
        meter_no=meter_no,
        fetched_at=fetched_at,
        **_meter_answer(relay, clock, energy_wh),
    )
