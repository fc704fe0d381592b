"""The daemon's sweeps: ephemeral inboxes whose time to live ran out are deleted, and old records
are let go (webhook deliveries that ended more than `delivery_log_days` ago, inbound digests past
the dedup window).

Inboxes are swept at start, then every `expiry_sweep_seconds`; the housekeeping runs at start,
then every `housekeeping_seconds`. Each tick does bounded work (at most `MAX_BATCHES`
transactions of `BATCH` inboxes; a larger backlog waits for the next tick) and is not activity:
an idle daemon still stops, and the next start sweeps what expired meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

__all__ = ["BATCH", "MAX_BATCHES", "ExpirySweeper"]

logger = logging.getLogger(__name__)

BATCH = 50  # inboxes deleted per transaction: a backlog never holds the writer long
MAX_BATCHES = 20


class _Expirer(Protocol):
    async def delete_expired_inboxes(self, *, limit: int) -> list[str]: ...

    async def housekeeping(self) -> int: ...


class ExpirySweeper:
    def __init__(
        self, backend: _Expirer, interval_seconds: float, housekeeping_seconds: float = 3600.0
    ) -> None:
        self._backend = backend
        self._interval = interval_seconds
        self._housekeeping_interval = housekeeping_seconds
        self._housekept_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="inbox-expiry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep_once(self) -> int:
        """One tick: the number of inboxes deleted."""
        total = 0
        for _ in range(MAX_BATCHES):
            deleted = len(await self._backend.delete_expired_inboxes(limit=BATCH))
            total += deleted
            if deleted < BATCH:
                break
        return total

    async def _housekeep_if_due(self) -> None:
        now = time.monotonic()
        if self._housekept_at is not None and now - self._housekept_at < self._housekeeping_interval:
            return
        self._housekept_at = now  # also after a failure: it is tried again at the next interval, not every tick
        await self._backend.housekeeping()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:  # a broken database must not end the sweep for good
                logger.exception("deleting expired inboxes failed; trying again at the next tick")
            try:
                await self._housekeep_if_due()
            except Exception:
                logger.exception("housekeeping failed; trying again at the next interval")
            await asyncio.sleep(self._interval)
