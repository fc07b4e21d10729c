"""Where CardVend keeps its configuration, data and logs.

``CARDVEND_HOME`` (or ``--home DIR``) puts everything under one folder: ``config/``, ``data/`` and
``logs/``.  Otherwise the platform's user directories are used (platformdirs).  The three folders
are private (0700 on POSIX): :meth:`Paths.ensure` creates them so and takes group and other access
away from ones an older version left open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app.fileio import private_dir

APP = "cardvend"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def default_db_file(self) -> Path:
        return self.data_dir / "cardvend.db"

    def ensure(self) -> Paths:
        """Create the folders (0700), and make existing ones of ours 0700 too."""
        for d in (self.config_dir, self.data_dir, self.log_dir):
            private_dir(d, tighten=True)
        return self


def resolve_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    home = home or os.environ.get("CARDVEND_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(root / "config", root / "data", root / "logs")
    return Paths(
        Path(platformdirs.user_config_dir(APP, appauthor=False)),
        Path(platformdirs.user_data_dir(APP, appauthor=False)),
        Path(platformdirs.user_log_dir(APP, appauthor=False)),
    )
