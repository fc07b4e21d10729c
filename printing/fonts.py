"""The CJK font embedded in every receipt and report.

WenQuanYi Micro Hei (``resources/fonts/wqy-microhei.ttc``, Apache-2.0 or GPL-3+ with the font
exception, see ``resources/fonts/LICENSE-wqy-microhei.txt``) covers Simplified Chinese and Latin.
reportlab embeds TrueType outlines only; the collection's first face (``subfontIndex=0``,
"WenQuanYi Micro Hei") is a TrueType font, so it is embedded as a subset and the text comes back
out of ``pdftotext``.

The font is read once per process, lazily, on the first receipt (about 0.1 s), and registered
with reportlab under :data:`FONT_NAME`; :func:`font_name` is safe to call from several threads.
Saving a document that uses the font must hold :data:`SAVE_LOCK`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError
from reportlab.pdfbase.ttfonts import TTFont

from app.errors import CardVendError
from app.i18n import N_
from app.resources import resource_dir

log = logging.getLogger(__name__)

# the checkout, the installed wheel or the bundle (app/resources.py), like resources/locale
FONT_DIR = resource_dir("fonts")
FONT_FILE = FONT_DIR / "wqy-microhei.ttc"
FONT_NAME = "CardVendCJK"
SUBFONT_INDEX = 0  # the proportional face; index 1 is WenQuanYi Micro Hei Mono

_lock = threading.Lock()
_registered: str | None = None

# reportlab subsets a TrueType font when a document is saved (``Canvas.save``, platypus
# ``build``) by reading the one shared, parsed font file object, which is not thread-safe (two
# documents saved at once corrupt each other's subsets: KeyError in makeSubset).  Hold this lock
# around saving any document that uses the font; everything before the save may run in parallel.
SAVE_LOCK = threading.Lock()


class FontError(CardVendError):
    """The receipt font cannot be loaded; nothing can be printed until it is restored."""

    code = "font_missing"
    template = N_(
        "The receipt font {path} cannot be loaded: {detail}. "
        "Restore the resources/fonts folder of CardVend (or reinstall it) and print again."
    )


def font_name(path: Path | None = None) -> str:
    """Register the CJK font with reportlab (first call only) and return its reportlab name.

    ``path`` overrides the shipped font file (tests); it only matters on the first call.
    Raises :class:`FontError` if the file is missing or is not a usable TrueType font."""
    global _registered
    name = _registered
    if name is not None:
        return name
    with _lock:
        if _registered is None:
            _registered = _register(path or FONT_FILE, FONT_NAME)
        return _registered


def _register(path: Path, name: str) -> str:
    if not path.is_file():
        raise FontError(path=str(path), detail=N_("the file is missing"))
    try:
        font = TTFont(name, str(path), subfontIndex=SUBFONT_INDEX)
    except (TTFError, OSError, ValueError) as exc:
        log.error("cannot load the receipt font %s: %s", path, exc)
        raise FontError(path=str(path), detail=str(exc)) from exc
    pdfmetrics.registerFont(font)
    log.debug("registered receipt font %s from %s", name, path)
    return name


def load_font(path: Path, name: str) -> str:
    """Register another TrueType font file under ``name`` (no caching); for checks and tests."""
    return _register(path, name)
