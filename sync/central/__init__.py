"""The charge-control station: a FastAPI service under uvicorn implementing ``sync.contract``
with its own database (PostgreSQL in production; SQLite for demos and tests).  It also stands in
for the utility's marketing system in tests, benchmarks and demos.

- :mod:`sync.central.models` — the tables (SQLAlchemy Core, own ``MetaData``);
- :mod:`sync.central.store` — :class:`CentralStore`, everything a counter may ask, usable without
  HTTP; its parts: :mod:`~sync.central.base` (database, transactions),
  :mod:`~sync.central.rules` (the trust rules and refusal codes), :mod:`~sync.central.apply`
  (posted records), :mod:`~sync.central.enrol` (registration, enrolment codes),
  :mod:`~sync.central.changes` (the central administrator's own changes, inspection);
- :mod:`sync.central.api` — the FastAPI application (routes on the contract models, the
  generated OpenAPI document); :mod:`sync.central.server` — uvicorn: :class:`CentralServer` in a
  background thread, worker processes for ``--workers``; the fault injector in
  :mod:`sync.central.faults`;
- :mod:`sync.central.seed` — demo and synthetic data, central-side changes for tests;
- :mod:`sync.central.cli` — ``cardvend central serve`` and ``cardvend central enrol``.
"""

from __future__ import annotations

from sync.central.server import CentralServer
from sync.central.server import FaultInjector
from sync.central.server import FaultSpec
from sync.central.store import AuditDiverged
from sync.central.store import CentralStore
from sync.central.store import Counter
from sync.central.store import Credentials
from sync.central.store import Refused

__all__ = [
    "AuditDiverged",
    "CentralServer",
    "CentralStore",
    "Counter",
    "Credentials",
    "FaultInjector",
    "FaultSpec",
    "Refused",
]
