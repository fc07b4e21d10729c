"""The reference central marketing system: a real HTTP server implementing ``sync.contract``
with its own database.  It stands in for the utility's system in tests, benchmarks and demos.

- :mod:`sync.central.models` — the tables (SQLAlchemy Core, own ``MetaData``);
- :mod:`sync.central.store` — :class:`CentralStore`, everything a counter may ask, usable without
  HTTP; its parts: :mod:`~sync.central.base` (database, transactions),
  :mod:`~sync.central.rules` (the trust rules and refusal codes), :mod:`~sync.central.apply`
  (posted records), :mod:`~sync.central.enrol` (registration, enrolment codes),
  :mod:`~sync.central.changes` (the central administrator's own changes, inspection);
- :mod:`sync.central.server` — :class:`CentralServer` (stdlib ``ThreadingHTTPServer``); the
  fault injector in :mod:`sync.central.faults`;
- :mod:`sync.central.seed` — demo and synthetic data, central-side changes for tests;
- :mod:`sync.central.cli` — ``cardvend central serve`` and ``cardvend central enrol``.
"""

from __future__ import annotations

from sync.central.server import CentralServer, FaultInjector, FaultSpec
from sync.central.store import AuditDiverged, CentralStore, Counter, Credentials, Refused

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
