"""Named crash points for fault-injection tests.

``checkpoint("name")`` does nothing unless the environment variable ``CARDVEND_CRASH_AT``
names that point, in which case the process kills itself with SIGKILL right there — no
cleanup, no flush, exactly like a power cut.  The sale flow passes through its points in a
fixed order (see app/services/selling/sale.py); tests kill a real selling process at each one and
check that nothing is lost on the next start.
"""

from __future__ import annotations

import os
import signal

ENV = "CARDVEND_CRASH_AT"
_target = os.environ.get(ENV, "")


def checkpoint(name: str) -> None:
    if _target and _target == name:
        os.kill(os.getpid(), signal.SIGKILL)
