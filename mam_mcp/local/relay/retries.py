"""The daemon's retry worker for sends the relay could not take yet (4xx, unreachable).

A send that failed for a temporary reason is stored `queued` with its next attempt time
(`LocalBackend._retry_later`); this worker sleeps until the earliest one is due, has the backend
try it, and repeats. The schedule is in the database, so a restarted daemon picks up where the
last one stopped. While any send is waiting, the worker counts as activity: the daemon does not
stop for idleness before its retries are done (at most ~20 minutes with the defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio

__all__ = ["SendRetryWorker"]

logger = logging.getLogger(__name__)

_ERROR_PAUSE_SECONDS = 5.0


class _Retrier(Protocol):
    async def retry_due_sends(self) -> float | None: ...

    def add_retry_listener(self, listener: Callable[[], None]) -> None: ...


class SendRetryWorker:
    def __init__(
        self, backend: _Retrier, *, busy: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    ) -> None:
        self._backend = backend
        self._busy = busy or contextlib.nullcontext
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        backend.add_retry_listener(self._wake.set)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="send-retries")

    async def stop(self) -> None:
        """Stop; a send cut short mid-relay is found `relaying` by the next start and marked unknown."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self._backend.retry_due_sends()
            except Exception:  # a broken database must not end retries for good
                logger.exception("send retries: pass failed; trying again shortly")
                wait = _ERROR_PAUSE_SECONDS
            if wait is None:
                await self._wake.wait()  # nothing scheduled: until a send is queued
                continue
            with self._busy():  # a send is waiting: not idle
                with anyio.move_on_after(wait):
                    await self._wake.wait()
