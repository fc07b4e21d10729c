"""A test rig that makes a simulated meter claim what it should not: more credit than was ever
sold to its card, and illegal inserts it never saw.  It edits the meter simulator's state file
between inserts (the meter's own memory), never product code; the meter then writes the false
figures, under its genuine write-back MAC, onto the next card inserted."""

from __future__ import annotations

import json
from pathlib import Path


def tamper_meter(state_file: Path, *, add_fen: int = 0, illegal_inserts: int | None = None) -> None:
    """Raise the credit the meter in ``state_file`` holds by ``add_fen`` and, when given, set
    its illegal-insert count."""
    state = json.loads(state_file.read_text(encoding="utf-8"))
    state["remaining"] = int(state["remaining"]) + add_fen
    if illegal_inserts is not None:
        state["illegal_insert_count"] = illegal_inserts
    state_file.write_text(json.dumps(state), encoding="utf-8")
