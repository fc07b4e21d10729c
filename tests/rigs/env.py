"""The environment for a ``cardvend`` process a test starts."""

from __future__ import annotations

import os

from cardio.vpcd import VPCD_PORT_ENV

# the machine's, not a person's: where the suite's pcscd has its vpcd readers
# (tests/pcsc_fixtures.py)
KEPT = frozenset({VPCD_PORT_ENV})


def child_env(**settings: str) -> dict[str, str]:
    """This environment without the ``CARDVEND_`` settings of whoever runs the tests (never their
    home, database or passwords), then ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_") or k in KEPT}
    env.update(settings)
    return env
