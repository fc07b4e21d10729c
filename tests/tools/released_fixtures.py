"""Regenerate ``tests/data/released/<rev>.sql.gz``: the demo database as each released counter
schema revision made it, from the git history.

For each Alembic revision R of the counter, the last first-parent commit whose newest migration
is R is the release of R.  Its tree is exported (``git archive``) to a temporary folder and its
own ``cardvend demo`` runs there (with this checkout's ``.venv``) into a SQLite file, which is
dumped with ``sqlite3``'s ``iterdump`` and gzipped.  The dump is deterministic except for the
times and random salts the old code chose; the tests read it, they never regenerate it.

    .venv/bin/python -m tests.tools.released_fixtures            # all revisions
    .venv/bin/python -m tests.tools.released_fixtures 0003 0005  # only these
"""

from __future__ import annotations

import ast
import gzip
import io
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = "app/persistence/migrations/versions"
OUT = ROOT / "tests" / "data" / "released"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def _assignments(source: str) -> dict[str, object]:
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if isinstance(node.value, ast.Constant):
                found[node.targets[0].id] = node.value.value
    return found


def head_at(commit: str) -> str | None:
    """The newest counter revision in ``commit``'s tree (None before there were migrations)."""
    names = [n for n in _git("ls-tree", "--name-only", f"{commit}:{VERSIONS}").split() if n]
    downs: dict[str, object] = {}
    for name in names:
        if not name.endswith(".py"):
            continue
        values = _assignments(_git("show", f"{commit}:{VERSIONS}/{name}"))
        if "revision" in values:
            downs[str(values["revision"])] = values.get("down_revision")
    heads = set(downs) - {str(d) for d in downs.values() if d}
    return heads.pop() if len(heads) == 1 else None


def releases() -> dict[str, str]:
    """Each revision -> the last first-parent commit where it was the head."""
    found: dict[str, str] = {}
    for commit in _git("rev-list", "--first-parent", "HEAD").split():
        try:
            rev = head_at(commit)
        except subprocess.CalledProcessError:
            continue  # no migrations folder yet
        if rev is not None and rev not in found:
            found[rev] = commit  # rev-list walks newest first: the first seen is the last
    return found


def demo_database(commit: str, work: Path) -> Path:
    tree = work / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    home = work / "home"
    env = {**os.environ, "PYTHONPATH": str(tree), "CARDVEND_HOME": str(home), "LANG": "C"}
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(tree / "main.py"), "--home", str(home), "demo"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    found = sorted(home.rglob("*.db"))
    assert len(found) == 1, found
    return found[0]


def dump(db: Path) -> bytes:
    conn = sqlite3.connect(db)
    try:
        text = "\n".join(conn.iterdump()) + "\n"
    finally:
        conn.close()
    return gzip.compress(text.encode(), mtime=0)


def main(argv: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for rev, commit in sorted(releases().items()):
        if argv and rev not in argv:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            data = dump(demo_database(commit, Path(tmp)))
        (OUT / f"{rev}.sql.gz").write_bytes(data)
        print(f"{rev}: {commit[:10]} {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
