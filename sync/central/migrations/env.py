"""Alembic environment of the station's database: runs on the connection handed over by
:mod:`sync.central.schema`.  Its own version table (``central_alembic_version``) and only the
``central_`` tables: a counter's tables may share the database."""

from __future__ import annotations

from typing import Any

from alembic import context

from sync.central.models import metadata

VERSION_TABLE = "central_alembic_version"
config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table":
        return bool(name and name.startswith("central_"))
    return True


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
