"""Str enums whose members have a name for a person: the states and roles the ledger, the
approvals and the interfaces show.  A member is declared with its value and its label,
``PENDING = "pending", N_("pending")``; the member's :attr:`~Labelled.label` is that gettext msgid
and :meth:`~Labelled.text` translates it."""

from __future__ import annotations

import enum
from typing import Self

from app.i18n import translate


class Labelled(enum.StrEnum):
    """A str enum with a label per member, given next to the member's value."""

    _value_: str
    _label: str

    def __new__(cls, *declared: str) -> Self:
        # runs once per member, on its declaration (value, label); a lookup ``Role("teller")``
        # finds the member by its value and does not come here
        value, label = declared
        member = str.__new__(cls, value)
        member._value_ = value
        member._label = label
        return member

    @property
    def label(self) -> str:
        """The member's name for a person, untranslated (a msgid)."""
        return self._label

    def text(self, language: str | None = None) -> str:
        """The member's name for a person, in ``language`` (default: the current one)."""
        return translate(self.label, language)

    @classmethod
    def text_of(cls, value: str, language: str | None = None) -> str:
        """The translated label of a stored value; an unknown value as it is."""
        try:
            return cls(value).text(language)
        except ValueError:
            return value
