"""Str enums whose members have a name for a person: the states and roles the ledger, the
approvals and the interfaces show.  A member's :attr:`~Labelled.label` is a gettext msgid
(marked with ``N_`` where the enum is defined); :meth:`~Labelled.text` translates it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from app.i18n import translate


class Labelled(enum.StrEnum):
    """A str enum with a label per member; subclasses give the labels in ``_labels``."""

    @classmethod
    def _labels(cls) -> Mapping[Any, str]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The member's name for a person, untranslated (a msgid)."""
        return self._labels()[self]

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
