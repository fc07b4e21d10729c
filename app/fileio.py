"""Durable, private file writes: a crash at any point leaves the old or the new content, never
half; what we write is readable by the user running CardVend only.

The files we write hold customers, password hashes, money or keys (database, logs, receipts,
exports, keystore, token): on POSIX they are created 0600 (:data:`PRIVATE_FILE`) and the folders
we create 0700 (:data:`PRIVATE_DIR`).  ``main.py`` also sets the umask to 0o077, so whatever a
library creates on our behalf is private too; the explicit modes here hold without it (tests,
other entry points).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from typing import Any

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
POSIX = os.name == "posix"


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (not every system can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(
    path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_FILE
) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path`` and
    fsync the folder.  ``mode`` (0600 unless asked otherwise) is set before any byte is written;
    the folder is not created and its mode is left alone (it may be the user's choice)."""
    with replacing(path, mode=mode) as f:
        f.write(data)


@contextlib.contextmanager
def replacing(
    path: str | os.PathLike[str],
    *,
    mode: int = PRIVATE_FILE,
    open_mode: str = "wb",
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """A new file that replaces ``path`` once the block ends without an error: written beside
    it (``mode`` set before any byte), fsynced, renamed over it, the folder fsynced; an error
    removes it, so a crash leaves the old file or the new one, never half of one."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, open_mode, encoding=encoding, newline=newline) as f:
            os.chmod(tmp, mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(target.parent)


def _owned(st: os.stat_result) -> bool:
    return not POSIX or st.st_uid == os.geteuid()


def private_dir(path: str | os.PathLike[str], *, tighten: bool = False) -> Path:
    """Make sure the folder ``path`` exists.  Every folder created here (missing parents too) is
    0700.  An existing one is left as it is, unless ``tighten`` and it is ours (our user owns it):
    then group and others lose their access.  Only our own folders (data, config, logs) are
    tightened, never one the user chose for an output file."""
    target = Path(path)
    missing: list[Path] = []
    p = target
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            d.mkdir(mode=PRIVATE_DIR)
            if POSIX:  # mkdir's mode is masked by the umask; never wider than 0700 though
                os.chmod(d, PRIVATE_DIR)
    if tighten and POSIX and not missing:
        st = target.stat()
        if stat.S_ISDIR(st.st_mode) and _owned(st) and st.st_mode & 0o077:
            os.chmod(target, stat.S_IMODE(st.st_mode) & ~0o077)
    return target


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True when it was created.  (SQLite
    gives its -wal, -shm and -journal files the mode of the database file: creating the database
    file 0600 first makes them private too.)"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        if POSIX:
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def open_private_append(
    path: str | os.PathLike[str], *, encoding: str = "utf-8", errors: str | None = None
) -> IO[str]:
    """Open a text file for appending (a log), creating it 0600.  An existing file that is ours
    and readable by others is made 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    try:
        if POSIX:
            st = os.fstat(fd)
            if _owned(st) and st.st_mode & 0o077:
                os.fchmod(fd, PRIVATE_FILE)
        return open(fd, "a", encoding=encoding, errors=errors)
    except BaseException:
        os.close(fd)
        raise
