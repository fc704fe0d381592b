"""Test-only crash points: `MAM_LOCAL_CRASH_AT=<point>` makes the process SIGKILL itself there.

Read once, when this module is first imported. Unset (always, outside the crash-matrix tests),
`crash_point` is one comparison. Points: `ingest.before_commit` (the message's transaction is
written but not committed), `ingest.after_commit` (committed, the `250` not yet said),
`webhook.after_post` (the receiver answered 2xx, not yet recorded), `migration.v4` (inside the
version-4 migration's transaction).
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ["CRASH_AT_ENV", "crash_point"]

CRASH_AT_ENV: Final = "MAM_LOCAL_CRASH_AT"
_CRASH_AT: Final = os.environ.get(CRASH_AT_ENV) or None


def crash_point(name: str) -> None:
    """Die at once, like `kill -9`, when the process was started with `MAM_LOCAL_CRASH_AT=name`."""
    if _CRASH_AT is not None and _CRASH_AT == name:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        os._exit(137)  # pragma: no cover - where SIGKILL does not exist
