"""What a command left behind: its one line of refusal, its audit rows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.persistence.db import Database
from app.persistence.models import AuditEntry


def one_line(r: subprocess.CompletedProcess[str], *texts: str) -> str:
    """A refusal: exit 1 and one line on stderr that says what (no traceback, no 'Unexpected')."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardvend: "), r.stderr
    assert "Unexpected error" not in lines[0], lines[0]
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def audit_rows(home: Path, action: str) -> list[dict[str, Any]]:
    db = Database(str(home / "data" / "cardvend.db"))
    try:
        with db.read() as session:
            rows = session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            ).all()
            return [
                {
                    "operator": r.operator_id,
                    "result": r.result,
                    "target": r.target,
                    "detail": json.loads(r.detail),
                }
                for r in rows
            ]
    finally:
        db.dispose()
