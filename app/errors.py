"""Typed errors that a person can read.

Every error that may reach a teller, technician or IT person derives from :class:`CardVendError`.
Its ``template`` is an English message id (translated through the gettext catalogs) that says what
happened and what to do; ``params`` fill the template's placeholders.  A parameter is translated
too only when it is a :class:`~app.i18n.Msg` (``N_("Customer")``, a reason, a label), and an
error that is a parameter of another (the card fault inside "the sale is in doubt") is rendered
in the same language; any other text is shown as it is.  ``str(err)`` is English (for logs);
:meth:`CardVendError.localized` gives the text in the current (or given) language.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from app.i18n import N_
from app.i18n import Msg
from app.i18n import translate


class CardVendError(Exception):
    template: ClassVar[str] = N_("Something went wrong: {detail}")
    code: ClassVar[str] = "error"

    def __init__(self, template: str | None = None, /, **params: object) -> None:
        self.message_template = template or self.template
        self.params = params
        super().__init__(self._render("en"))

    def _render(self, language: str) -> str:
        text = translate(self.message_template, language)
        # parameters that are marked messages (N_("Customer"), reasons, labels) translate too;
        # any other text (a name, a number) is shown as it is
        params = {k: self._param(v, language) for k, v in self.params.items()}
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError):
            return f"{text} {self.params!r}"

    def _param(self, value: object, language: str) -> object:
        if isinstance(value, CardVendError):  # an error's own words, in the same language
            return value._render(language)
        if not isinstance(value, Msg):
            return value
        text = translate(value, language)
        if ("{" in text and text != value) or "{" in value:
            try:  # a marked detail may carry placeholders of its own, filled from the same params
                return text.format(**{k: v for k, v in self.params.items() if v is not value})
            except (KeyError, IndexError, ValueError):
                return text
        return text

    def localized(self, language: str | None = None) -> str:
        from app.i18n import get_language

        return self._render(language or get_language())


class KindError(CardVendError):
    """An error whose ``kind`` (a key of ``reasons``) picks the ``{reason}`` a person reads;
    an unknown kind reads as ``default_kind``.  ``detail`` keeps the system's own words for
    the log."""

    reasons: ClassVar[Mapping[str, str]] = {}
    default_kind: ClassVar[str] = ""

    def __init__(self, kind: str, detail: str = "", **params: object) -> None:
        self.kind = kind
        self.detail = detail
        reason = self.reasons.get(kind, self.reasons[self.default_kind])
        super().__init__(reason=reason, **params)


class ValidationError(CardVendError, ValueError):
    code = "invalid"
    template = N_("Invalid input: {detail}")


class AmountError(ValidationError):
    code = "bad_amount"
    template = N_("The amount {value} is not valid: {reason}")


class NotFound(CardVendError, LookupError):
    code = "not_found"
    template = N_("{what} {key} was not found. Check the number and try again.")


class Conflict(CardVendError):
    code = "conflict"
    template = N_("{detail}")


class SaleInProgress(Conflict):
    code = "sale_in_progress"
    template = N_(
        "Customer {customer_no} has an unfinished sale {sale_id} (purchase {purchase_count}). "
        "Finish or recover it before selling again."
    )


class InvalidTransition(Conflict):
    code = "invalid_transition"
    template = N_("Sale {sale_id} is {state} and cannot become {target}.")


class ShiftError(Conflict):
    code = "shift"
    template = N_("{detail}")


class DatabaseError(CardVendError):
    code = "database"
    template = N_(
        "The database cannot be used: {detail}. Check the database setting and try again."
    )


class SchemaTooNew(CardVendError):
    """The database's schema revision is unknown to this code: a newer CardVend made it.  It is
    refused, never downgraded (a downgrade drops what the newer version recorded)."""

    code = "schema_too_new"
    template = N_(
        "This database was made by a newer CardVend (schema {found}); this version knows up to "
        "{known}. Install the newer version or restore a backup."
    )


class StationSchemaTooNew(SchemaTooNew):
    template = N_(
        "This station database was made by a newer CardVend station (schema {found}); this "
        "version knows up to {known}. Install the newer version or restore a backup."
    )


class ImportFileError(CardVendError):
    code = "import_file"
    template = N_("The file {path} cannot be imported: {detail}. Nothing was imported.")


class PrinterError(CardVendError):
    """The printer could not print; the sale is not affected and the receipt can be reprinted."""

    code = "printer"
    template = N_("The printer {printer} did not print: {reason}. {hint}")
