"""Durable, signed webhook delivery of inbox events.

`WebhookDispatcher.enqueue` (an event sink of `LocalBackend`) writes one delivery row per matching
webhook to SQLite (`webhooks.db` in the data dir, WAL) before it returns; a worker POSTs the stored
JSON bytes with `x-mam-signature: <hex HMAC-SHA256(secret, body)>`, retries non-2xx answers and
timeouts with exponential backoff (`base * 3**n`, capped, jittered) up to `webhook_max_attempts`,
then marks the delivery `failed` (kept for the delivery log, `deliveries.py`). `next_attempt_at` is persisted, so a
new dispatcher on the same data dir resumes pending retries.

Delivery is at least once: a POST interrupted by a crash or a stop is sent again (receivers dedupe
on `messageId`, as the reference says). The body is signed once, at enqueue: the row keeps the
exact bytes and their signature, never the secret itself.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import anyio
import httpx2

from mam_mcp import __version__
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.events.model import MailEvent
from mam_mcp.local.timestamps import iso_from_epoch
from mam_mcp.local.webhooks.deliveries import DeliveryLog, DueDelivery, WebhookDelivery
from mam_mcp.signatures import SIGNATURE_HEADER, sign_body

__all__ = ["WebhookDispatcher", "WebhookTargetLike", "encode_payload"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_RETRY_CAP_SECONDS: Final = 6 * 3600.0
LEASE_MARGIN_SECONDS: Final = 30.0  # a claimed row is re-tried by a later process only after this
MAX_CONCURRENT_POSTS: Final = 8
CLAIM_BATCH: Final = 32


class WebhookTargetLike(Protocol):
    """What the dispatcher needs of a webhook (the backend's `WebhookTarget` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def secret(self) -> str: ...
    @property
    def events(self) -> Sequence[str]: ...


TargetsOf = Callable[[MailEvent], Sequence[WebhookTargetLike] | Awaitable[Sequence[WebhookTargetLike]]]
# webhook id -> its URL now, or None once it is deleted or disabled (queued retries then stop).
CurrentUrlOf = Callable[[str], Awaitable[str | None]]


def encode_payload(event: MailEvent) -> bytes:
    """The exact bytes POSTed (and signed) for an event: compact JSON of its webhook payload."""
    return json.dumps(event.webhook_payload(), ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8"
    )


class WebhookDispatcher:
    """Persists webhook deliveries and works them off in a background task on the caller's loop."""

    def __init__(
        self,
        config: LocalConfig,
        *,
        targets: TargetsOf,
        http: httpx2.AsyncClient | None = None,
        clock: Callable[[], float] | None = None,
        retry_cap_seconds: float = DEFAULT_RETRY_CAP_SECONDS,
        current_url: CurrentUrlOf | None = None,
    ) -> None:
        self._config = config
        self._targets = targets
        self._current_url = current_url
        self._given_http = http
        self._http: httpx2.AsyncClient | None = http
        self._clock = clock or time.time  # wall clock: next_attempt_at must mean the same after a restart
        self._retry_cap = retry_cap_seconds
        self._log = DeliveryLog(config.data_dir / "webhooks.db")
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: dict[str, int] = {}  # delivery id -> attempts made when it was claimed

    @property
    def db_path(self) -> Path:
        return self._log.path

    # ------------------------------------------------------------------ the sink

    async def enqueue(self, event: MailEvent) -> None:
        """Persist one pending delivery per webhook that wants `event`; durable when this returns."""
        found = self._targets(event)
        targets = await found if inspect.isawaitable(found) else found
        wanted = [t for t in targets if not t.events or event.event_type in t.events]
        if not wanted:
            return
        body = encode_payload(event)
        now = self._clock()
        rows = [
            (
                "whd_" + secrets.token_hex(12),
                target.id,
                event.event_id,
                event.event_type,
                target.url,
                body,
                sign_body(target.secret, body),
                now,
                iso_from_epoch(now),
            )
            for target in wanted
        ]
        await self._run(self._log.insert, rows)
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the worker task on the running loop (idempotent)."""
        if self._worker is None:
            self._worker = asyncio.create_task(self.run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop the worker; POSTs cut short are due again at once for the next dispatcher."""
        worker, self._worker = self._worker, None
        interrupted = dict(self._in_flight)
        if worker is not None:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        if interrupted:
            await self._run(self._log.release, interrupted, self._clock())
        self._in_flight.clear()
        if self._http is not None and self._given_http is None:
            await self._http.aclose()
            self._http = None
        await self._run(self._log.close)

    async def run(self) -> None:
        """Deliver due rows until cancelled; sleeps until the next due time or a new enqueue."""
        if self._http is None:
            self._http = httpx2.AsyncClient(
                follow_redirects=False, timeout=self._config.webhook_timeout_seconds
            )
        limit = anyio.Semaphore(MAX_CONCURRENT_POSTS)
        async with anyio.create_task_group() as posts:
            while True:
                self._wake.clear()
                try:
                    wait = await self._dispatch_due(posts, limit)
                except Exception:  # a broken database must not end delivery for good
                    logger.exception("webhooks: dispatch loop error; retrying shortly")
                    wait = 1.0
                if wait == 0.0:
                    continue
                with anyio.move_on_after(wait if wait is not None else float("inf")):
                    await self._wake.wait()

    async def _dispatch_due(self, posts: anyio.abc.TaskGroup, limit: anyio.Semaphore) -> float | None:
        """Start a POST for each due row; returns how long to wait for the next (None: until woken)."""
        now = self._clock()
        lease_until = now + self._config.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        due = await self._run(self._log.claim_due, now, lease_until, CLAIM_BATCH, sorted(self._in_flight))
        for row in due:  # all claimed rows count as in flight, so a stop releases them too
            self._in_flight[row.id] = row.attempts
        for row in due:
            await limit.acquire()
            posts.start_soon(self._attempt_and_release, row, limit)
        if len(due) == CLAIM_BATCH:
            return 0.0
        next_due = await self._run(self._log.next_due, sorted(self._in_flight))
        return None if next_due is None else max(0.001, next_due - self._clock())

    # ------------------------------------------------------------------ the delivery log

    async def list_deliveries(self, webhook_id: str, limit: int = 50) -> list[WebhookDelivery]:
        """Newest first."""
        return await self._run(self._log.list_for_webhook, webhook_id, max(1, min(limit, 500)))

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        return await self._run(self._log.get, delivery_id)

    # ------------------------------------------------------------------ one attempt

    async def _attempt_and_release(self, row: DueDelivery, limit: anyio.Semaphore) -> None:
        try:
            await self._attempt(row)
        except Exception:  # one bad row must not take the worker down
            logger.exception("webhooks: %s for webhook %s: attempt crashed", row.id, row.webhook_id)
        finally:
            self._in_flight.pop(row.id, None)
            limit.release()
            self._wake.set()  # the worker recomputes its next wake-up (a retry may be due sooner)

    async def _attempt(self, row: DueDelivery) -> None:
        assert self._http is not None
        attempt = row.attempts + 1
        status_code: int | None = None
        error: str | None = None
        url = row.url
        if self._current_url is not None:
            current = await self._current_url(row.webhook_id)
            if current is None:  # deleted or disabled since the event: stop retrying to it
                await self._run(
                    self._log.mark_failed, row.id, row.attempts, None, "cancelled: webhook deleted or disabled", self._clock()
                )
                logger.info("webhooks: %s for webhook %s cancelled (webhook gone or disabled)", row.id, row.webhook_id)
                return
            url = current  # a changed URL applies to queued retries too
        try:
            # fail_after bounds the whole exchange; httpx2's timeout is per connect/read/write.
            with anyio.fail_after(self._config.webhook_timeout_seconds):
                async with self._http.stream(
                    "POST",
                    url,
                    content=row.body,
                    headers={
                        "content-type": "application/json",
                        "user-agent": f"mam-mcp-local/{__version__}",
                        SIGNATURE_HEADER: row.signature,
                    },
                    timeout=self._config.webhook_timeout_seconds,
                ) as response:
                    status_code = response.status_code  # the answer's body is never read
        except TimeoutError:
            error = f"timeout after {self._config.webhook_timeout_seconds:g} s"
        except httpx2.TimeoutException as exc:
            error = f"timeout ({type(exc).__name__})"
        except httpx2.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid URL: recorded and retried like any error
            error = type(exc).__name__
        now = self._clock()
        if status_code is not None and 200 <= status_code < 300:
            await self._run(self._log.mark_delivered, row.id, attempt, status_code, now)
            logger.info("webhooks: %s for webhook %s delivered (attempt %d)", row.id, row.webhook_id, attempt)
            return
        if error is None:
            error = f"HTTP {status_code}"
        if attempt >= self._config.webhook_max_attempts:
            await self._run(self._log.mark_failed, row.id, attempt, status_code, error, now)
            logger.warning(
                "webhooks: %s for webhook %s failed after %d attempts (%s)",
                row.id,
                row.webhook_id,
                attempt,
                error,
            )
            return
        next_at = now + self._backoff(attempt)
        await self._run(self._log.mark_retry, row.id, attempt, status_code, error, now, next_at)
        logger.info(
            "webhooks: %s for webhook %s attempt %d failed (%s); retry in %.3g s",
            row.id,
            row.webhook_id,
            attempt,
            error,
            next_at - now,
        )

    def _backoff(self, attempts_made: int) -> float:
        base = self._config.webhook_retry_base_seconds * 3.0 ** (attempts_made - 1)
        return min(base, self._retry_cap) * random.uniform(0.8, 1.2)  # jitter spreads retry storms

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)
