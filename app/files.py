"""Files a person names on the command line (``--out``, ``--receipt``, ``--image``,
``--meter-state``): one clear, translated line for every problem, never a traceback.

:func:`check_output` is called before any work (before a sale, an approval, a render), so a
mistyped folder is reported before anything happens; :func:`save_output` writes the file
durably (app.fileio's way: a temporary file beside it, fsync, rename) as 0600 and refuses to
replace an existing file unless asked to, also when the file appears in between.  Every
``OSError`` becomes :class:`OutputFileError` with :func:`file_problem`'s reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from app.errors import CardVendError
from app.fileio import fsync_directory
from app.i18n import N_

_REASONS = {
    errno.ENOENT: N_("the folder or file does not exist"),
    errno.EISDIR: N_("it is a folder, not a file"),
    errno.ENOTDIR: N_("a part of the path is not a folder"),
    errno.EACCES: N_("permission denied"),
    errno.EPERM: N_("permission denied"),
    errno.ENOSPC: N_("the disk is full"),
    errno.EROFS: N_("the file system is read-only"),
    errno.ENAMETOOLONG: N_("the name is too long"),
    errno.EEXIST: N_("it already exists"),
}


def file_problem(exc: OSError) -> str:
    """What went wrong, as a marked message a person reads (the system's words otherwise)."""
    return _REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)


class OutputFileError(CardVendError):
    code = "output_file"
    template = N_("Cannot write {path}: {reason}. Choose another file or folder and try again.")


class OutputExists(OutputFileError):
    code = "output_exists"
    template = N_("{path} already exists. Add --force to replace it, or choose another file name.")


def check_output(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot be written: a folder that does not
    exist, a path that is a folder, a folder we may not write into, an existing file without
    ``force``."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise OutputFileError(path=str(target), reason=N_("it is a folder, not a file"))
    if not folder.is_dir():
        reason = (
            N_("a part of the path is not a folder")
            if folder.exists()
            else N_("the folder {folder} does not exist")
        )
        raise OutputFileError(path=str(target), reason=reason, folder=str(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFileError(path=str(target), reason=N_("permission denied"))
    if target.exists() and not force:
        raise OutputExists(path=str(target))
    return target


def save_output(
    path: str | os.PathLike[str], data: bytes, *, force: bool = False, mode: int = 0o600
) -> Path:
    """Write ``data`` to ``path`` durably and privately.  Without ``force`` an existing file,
    also one that appeared after :func:`check_output`, is never replaced."""
    target = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, target)
        else:
            _place_new(tmp, target)
        tmp = None
    except FileExistsError:
        raise OutputExists(path=str(target)) from None
    except OSError as exc:
        raise OutputFileError(path=str(target), reason=file_problem(exc)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_directory(target.parent)
    return target


def _place_new(tmp: str, target: Path) -> None:
    """Rename ``tmp`` to ``target`` only if ``target`` does not exist (a hard link fails on an
    existing name; where links are not supported, check and rename)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:
        if target.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def output_errors(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[None]:
    """A block that writes ``path`` in its own way: its ``OSError`` becomes
    :class:`OutputFileError`."""
    return _translate(path, OutputFileError)


@contextlib.contextmanager
def _translate(path: str | os.PathLike[str], error: type[CardVendError]):  # type: ignore[no-untyped-def]
    try:
        yield
    except OSError as exc:
        raise error(path=str(path), reason=file_problem(exc)) from None
