"""Charge-control statistics as a person reads them (``cardvend stats`` and the counter's
statistics page): the figures with their labels and units, from the station's answer as a
plain mapping (``sync.contract.Stats`` dumped; ``app`` does not import ``sync``)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from typing import Any
from typing import Final

from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.presenters.control import STATE_TEXT

# (key, label, unit): "n" a count, "fen" money, "wh" energy
FIGURES: Final = (
    ("controlled", N_("Customers under fee control"), "n"),
    ("normal", N_("Normal"), "n"),
    ("alarm1", N_("First alarm"), "n"),
    ("alarm2", N_("Second alarm"), "n"),
    ("tripped", N_("Tripped"), "n"),
    ("close_permits_pending", N_("Close permits pending"), "n"),
    ("balance_fen", N_("Total balance"), "fen"),
    ("sales", N_("Sales in the period"), "n"),
    ("sold_fen", N_("Sold in the period"), "fen"),
    ("consumption_wh", N_("Consumption in the period"), "wh"),
    ("cost_fen", N_("Cost of the consumption"), "fen"),
    ("relay_closed", N_("Relay closed"), "n"),
    ("relay_open", N_("Relay open"), "n"),
    ("relay_unknown", N_("Relay unknown"), "n"),
    ("reading_missing", N_("Meters with a missing reading"), "n"),
    ("not_read_recently", N_("Meters not read recently"), "n"),
)
KIND_TEXT: Final = {"card": N_("card"), "remote": N_("remote")}
LEVEL_TEXT: Final = {
    "all": N_("all offices"),
    "province": N_("province"),
    "city": N_("city"),
    "office": N_("office"),
}


CONTROL_STATES: Final = ("normal", "alarm1", "alarm2", "tripped")


def date_arg(text: str) -> dt.date:
    """An argparse ``type``: a calendar date YYYY-MM-DD (an office day)."""
    try:
        if len(text) != 10 or not text.isascii():
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            _("{text} is not a date; write it as YYYY-MM-DD, e.g. 2026-03-01", text=text)
        ) from None


def format_kwh(wh: int) -> str:
    """Energy in kWh with two decimals, from integer Wh (no float)."""
    sign = "-" if wh < 0 else ""
    hundredths = (abs(wh) + 5) // 10
    return f"{sign}{hundredths // 100:,}.{hundredths % 100:02d}"


def figure_text(value: int, unit: str) -> str:
    if unit == "fen":
        return _("{amount} yuan", amount=format_yuan(value))
    if unit == "wh":
        return _("{kwh} kWh", kwh=format_kwh(value))
    return f"{value:,}"


def figures(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value text) of every figure, in the order shown."""
    rows = [(translate(label), figure_text(int(stats[key]), unit)) for key, label, unit in FIGURES]
    for kind, fen in sorted(stats.get("sold_by_kind", {}).items()):
        label = _("Sold, {kind}", kind=translate(KIND_TEXT.get(kind, kind)))
        rows.insert(9, (label, figure_text(int(fen), "fen")))
    return rows


def heading(stats: Mapping[str, Any]) -> str:
    """What the figures are of: region, period and filters."""
    level = translate(LEVEL_TEXT.get(str(stats["level"]), str(stats["level"])))
    text = _(
        "Region {region} ({level}), {date_from} to {date_to}",
        region=stats["region"],
        level=level,
        date_from=stats["date_from"],
        date_to=stats["date_to"],
    )
    if stats.get("plan"):
        text += _(", tariff plan {plan}", plan=stats["plan"])
    if stats.get("state"):
        text += _(", state {state}", state=translate(STATE_TEXT[str(stats["state"])]))
    return text


def stats_lines(stats: Mapping[str, Any]) -> list[str]:
    """The statistics as lines of text: heading, figures, then the breakdown by area."""
    lines = [heading(stats)]
    width = max(len(label) for label, _v in figures(stats))
    lines += [f"  {label:<{width}}  {value}" for label, value in figures(stats)]
    if stats.get("by_area"):
        lines.append(_("By area:"))
        for a in stats["by_area"]:
            lines.append(
                _(
                    "  {name}: {controlled} controlled, {alarm} in alarm, {tripped} tripped, "
                    "balance {balance} yuan, sold {sold} yuan, {kwh} kWh",
                    name=a["name"],
                    controlled=a["controlled"],
                    alarm=a["alarm"],
                    tripped=a["tripped"],
                    balance=format_yuan(int(a["balance_fen"])),
                    sold=format_yuan(int(a["sold_fen"])),
                    kwh=format_kwh(int(a["consumption_wh"])),
                )
            )
    return lines
