"""Translations for every string a person reads.

Message ids are English source strings with ``{named}`` placeholders. Catalogs are gettext ``.po``
files under ``resources/locale/<lang>/LC_MESSAGES/cardvend.po`` (``zh_CN`` and ``en``); they are
parsed directly, so no compile step is needed.  ``_()`` marks and translates a string now;
``N_()`` only marks it (for strings translated later, e.g. error templates) and gives a
:class:`Msg`: the one kind of text that an error translates when it is a parameter.
"""

from __future__ import annotations

import ast
import logging
import os
import threading

from app.resources import resource_dir

log = logging.getLogger(__name__)

LANGUAGES = ("zh_CN", "en")
DEFAULT_LANGUAGE = "zh_CN"
DOMAIN = "cardvend"
LOCALE_DIR = resource_dir("locale")

_lock = threading.Lock()
_catalogs: dict[str, dict[str, str]] = {}
_current = DEFAULT_LANGUAGE


def parse_po(text: str) -> dict[str, str]:
    """Parse the msgid/msgstr pairs of a .po file (no plural forms are used by CardVend)."""
    catalog: dict[str, str] = {}
    msgid: list[str] | None = None
    msgstr: list[str] | None = None
    target: list[str] | None = None

    def flush() -> None:
        if msgid is not None and msgstr is not None:
            key = "".join(msgid)
            value = "".join(msgstr)
            if key and value:
                catalog[key] = value

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("msgid "):
            flush()
            msgid, msgstr = [ast.literal_eval(line[6:])], None
            target = msgid
        elif line.startswith("msgstr "):
            msgstr = [ast.literal_eval(line[7:])]
            target = msgstr
        elif line.startswith('"') and target is not None:
            target.append(ast.literal_eval(line))
    flush()
    return catalog


def normalize_language(value: str | None) -> str:
    """Map a locale name (``zh_CN.UTF-8``, ``zh``, ``en_US``, ``English``) to a supported language."""
    if not value:
        return DEFAULT_LANGUAGE
    v = value.strip().lower().replace("-", "_").split(".")[0].split("@")[0]
    if v.startswith("zh") or v in ("chinese", "简体中文"):
        return "zh_CN"
    if v.startswith("en") or v in ("c", "posix", "english"):
        return "en"
    return DEFAULT_LANGUAGE


def language_from_environment() -> str:
    """CARDVEND_LANG wins, then the usual locale variables; Chinese when nothing says otherwise."""
    for var in ("CARDVEND_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return normalize_language(value)
    return DEFAULT_LANGUAGE


def catalog(language: str) -> dict[str, str]:
    with _lock:
        if language not in _catalogs:
            path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
            try:
                _catalogs[language] = parse_po(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                log.warning("no catalog for %s at %s", language, path)
                _catalogs[language] = {}
        return _catalogs[language]


def set_language(language: str) -> None:
    global _current
    _current = normalize_language(language)


def get_language() -> str:
    return _current


def translate(message: str, language: str | None = None) -> str:
    lang = language or _current
    return catalog(lang).get(message, message)


def _(msgid: str, /, **params: object) -> str:
    """Translate ``msgid`` into the current language and fill its placeholders."""
    text = translate(msgid)
    return text.format(**params) if params else text


class Msg(str):
    """A message id that is translated where it is shown.  An error's parameter is translated
    only when it is a ``Msg`` (``N_()`` gives one; a label of a :class:`~app.domain.labels.Labelled`
    member is one); any other text, a name or a number someone typed, is shown as it is, even
    when it happens to equal a message id."""

    __slots__ = ()


def N_(msgid: str, /) -> Msg:
    """Mark ``msgid`` for translation without translating it now."""
    return Msg(msgid)
