"""Fault injection for tests: the reference central server misbehaves on purpose when armed
(``POST /_test/faults`` or :meth:`FaultInjector.arm`); see :mod:`sync.central.server`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sync import contract as c

log = logging.getLogger(__name__)


class FaultSpec(BaseModel):
    """What ``POST /_test/faults`` (or :meth:`FaultInjector.arm`) takes."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=600_000)
    error_5xx: int = Field(default=0, ge=0)
    retry_after: int | None = Field(default=None, ge=0)
    drop_after_commit: int = Field(default=0, ge=0)
    drop_before: int = Field(default=0, ge=0)
    malformed: int = Field(default=0, ge=0)
    path: str = c.API_PREFIX


@dataclass
class _Rule:
    spec: FaultSpec
    left: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """What to do with one request: sleep first, then at most one misbehaviour."""

    latency_ms: int = 0
    action: str | None = None  # drop_before | error_5xx | drop_after_commit | malformed
    retry_after: int | None = None
    malformed_variant: int = 0


class FaultInjector:
    """Faults armed for the next requests whose path starts with a prefix (thread-safe).

    ``arm(error_5xx=2)`` makes the next two matching requests answer 503 without doing
    anything; ``drop_before`` closes the connection without doing anything;
    ``drop_after_commit`` does the request (commits) and closes the connection without an
    answer; ``malformed`` does it and answers 200 with a body that is not JSON, or (every
    other time) JSON of the wrong shape.  ``latency_ms`` delays every matching request while
    the rule is armed.  Several calls add rules; :meth:`clear` removes them all.  When one
    rule has several kinds left, a request takes one of them in the order drop_before,
    error_5xx, drop_after_commit, malformed.
    """

    ORDER = ("drop_before", "error_5xx", "drop_after_commit", "malformed")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._malformed_seen = 0
        self.injected: dict[str, int] = dict.fromkeys(self.ORDER, 0)

    def arm(self, spec: FaultSpec | None = None, **kwargs: Any) -> FaultSpec:
        if not self.enabled:
            raise RuntimeError("fault injection is off: start the server with faults=True")
        spec = spec or FaultSpec.model_validate(kwargs)
        rule = _Rule(spec, {k: getattr(spec, k) for k in self.ORDER if getattr(spec, k)})
        with self._lock:
            self._rules.append(rule)
        log.info("faults armed: %s", spec.model_dump())
        return spec

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rules": [{**r.spec.model_dump(), "left": dict(r.left)} for r in self._rules],
                "injected": dict(self.injected),
            }

    def take(self, path: str) -> Fault | None:
        """The fault for a request to ``path`` (counted as used), or None."""
        if not self.enabled:
            return None
        with self._lock:
            latency = 0
            for rule in self._rules:
                if not path.startswith(rule.spec.path):
                    continue
                latency = max(latency, rule.spec.latency_ms)
                for action in self.ORDER:
                    if rule.left.get(action, 0) > 0:
                        rule.left[action] -= 1
                        self.injected[action] += 1
                        variant = 0
                        if action == "malformed":
                            variant = self._malformed_seen % 2
                            self._malformed_seen += 1
                        return Fault(latency, action, rule.spec.retry_after, variant)
            self._rules = [r for r in self._rules if r.spec.latency_ms or any(r.left.values())]
            return Fault(latency) if latency else None


__all__ = ["Fault", "FaultInjector", "FaultSpec"]
