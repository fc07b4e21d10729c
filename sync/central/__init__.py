"""The reference central marketing system: a real HTTP server implementing ``sync.contract``
with its own database.  It stands in for the utility's system in tests, benchmarks and demos.

- :mod:`sync.central.models` — the tables (SQLAlchemy Core, own ``MetaData``);
- :mod:`sync.central.store` — :class:`CentralStore`, the rules, usable without HTTP;
- :mod:`sync.central.server` — :class:`CentralServer` (stdlib ``ThreadingHTTPServer``) and the
  fault injector;
- :mod:`sync.central.seed` — demo and synthetic data, central-side changes for tests;
- :mod:`sync.central.cli` — ``cardvend central serve``.
"""

from __future__ import annotations

from sync.central.server import CentralServer, FaultInjector, FaultSpec
from sync.central.store import AuditDiverged, CentralStore, Counter

__all__ = [
    "AuditDiverged",
    "CentralServer",
    "CentralStore",
    "Counter",
    "FaultInjector",
    "FaultSpec",
]
