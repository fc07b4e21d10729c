"""Where the files CardVend ships beside its code are: ``resources/`` (translations, fonts).

One answer for the three ways CardVend runs: from a checkout (``resources/`` beside ``app/``), from
an installed wheel (the ``resources`` package is installed beside ``app`` in site-packages) and from
the PyInstaller bundle (``sys._MEIPASS``, where packaging/cardvend.spec puts ``resources/``).
Package data next to its code (Alembic migrations, ``sync/openapi.json``) is found from
``__file__``, which is right in all three too.
"""

from __future__ import annotations

import sys
from pathlib import Path


def resource_dir(*parts: str) -> Path:
    """The folder ``resources/<parts...>`` of this installation (it may not exist)."""
    bundle = getattr(sys, "_MEIPASS", None)  # set by the PyInstaller bootloader
    root = Path(bundle) if bundle else Path(__file__).resolve().parent.parent
    return root.joinpath("resources", *parts)
