"""When the daemon last had a client: what its idle shutdown waits for.

An HTTP request, an open WebSocket, an SMTP delivery or a queued send retry counts for as long
as it lasts; asking how the daemon is (`/_mam/status`) does not.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import anyio

__all__ = ["PASSIVE_PATHS", "ActivityTracker", "watch_idle"]

logger = logging.getLogger("mam_mcp.local.daemon")

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

# Asking how the daemon is (`mam-mcp local status`) must not keep it alive.
PASSIVE_PATHS = frozenset({"/_mam/status"})


class ActivityTracker:
    """Knows when the daemon last had a client (for the idle shutdown).

    An open WebSocket, a long request or an SMTP delivery counts for as long as it lasts.
    """

    def __init__(self) -> None:
        self._open = 0
        self._last = time.monotonic()
        self.changed = anyio.Event()

    @property
    def idle_since(self) -> float | None:
        """monotonic time since which nothing is open, or None while a client is connected."""
        return None if self._open else self._last

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        # Only the last one out wakes the watcher: it waits for that while anything is open, and
        # re-reads the clock when its idle deadline passes. (Two Events per SMTP message were
        # 2-3% of the daemon's time under load.)
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            self._last = time.monotonic()
            if self._open == 0:
                self._notify()

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` with every HTTP request and WebSocket counted as activity while it lasts."""

        async def tracked(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] not in ("http", "websocket") or scope.get("path") in PASSIVE_PATHS:
                await app(scope, receive, send)
                return
            with self.busy():
                await app(scope, receive, send)

        return tracked


async def watch_idle(
    tracker: ActivityTracker, idle_timeout: float, request_shutdown: Callable[[], None]
) -> None:
    """Request shutdown once nothing has been open for `idle_timeout` seconds."""
    while True:
        changed = tracker.changed
        since = tracker.idle_since
        if since is None:
            await changed.wait()
            continue
        remaining = since + idle_timeout - time.monotonic()
        if remaining <= 0:
            logger.info("no client for %.0f s: stopping", idle_timeout)
            request_shutdown()
            return
        with anyio.move_on_after(remaining):
            await changed.wait()
