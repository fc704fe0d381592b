"""Durable, signed webhook delivery of inbox events: a worker over the store's outbox.

Deliveries are rows of `webhook_outbox` in the mail database (store/outbox.py). A received
mail's rows are written in its own transaction (service/backend.py `ingest`); `enqueue` records
any other event's. The worker claims due rows (leased: `leased_until` set past the POST's
timeout), POSTs the stored JSON bytes with `x-mam-signature: <hex HMAC-SHA256(secret, body)>`,
retries non-2xx answers and timeouts with exponential backoff (`base * 3**n`, capped, jittered)
up to `webhook_max_attempts`, then marks the row `failed` (kept for the delivery log).
`next_attempt_at` is persisted, so a restarted daemon resumes pending retries.

The body is signed at send time with the webhook's secret and URL as they are then
(`destination`): a rotated secret or a fixed URL applies to queued retries, and a deleted or
disabled webhook's queued rows are cancelled. Delivery is at least once: a POST interrupted by
a crash or a stop is sent again (receivers dedupe on `messageId`, as the reference says).

One concurrency model: the worker is an asyncio task; every read and write goes through the
store (its group-commit writer and read connections), no thread or lock of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import anyio
import httpx2

from mam_mcp import __version__
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.crash import crash_point
from mam_mcp.local.events.model import MailEvent
from mam_mcp.local.store.outbox import DueRow, OutboxEntry, OutboxRepository
from mam_mcp.local.webhooks.deliveries import WebhookDelivery, delivery_from_row
from mam_mcp.signatures import SIGNATURE_HEADER, sign_body

__all__ = ["Destination", "WebhookDispatcher", "WebhookTargetLike", "encode_payload"]

logger = logging.getLogger(__name__)

DEFAULT_RETRY_CAP_SECONDS: Final = 6 * 3600.0
LEASE_MARGIN_SECONDS: Final = 30.0  # a claimed row is re-tried by a later process only after this
MAX_CONCURRENT_POSTS: Final = 8
CLAIM_BATCH: Final = 32


class WebhookTargetLike(Protocol):
    """What `enqueue` needs of a webhook (the backend's `WebhookTarget` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def events(self) -> Sequence[str]: ...


TargetsOf = Callable[[MailEvent], Sequence[WebhookTargetLike] | Awaitable[Sequence[WebhookTargetLike]]]
# webhook id -> (URL, secret) now, or None once it is deleted or disabled (queued retries then stop).
Destination = Callable[[str], Awaitable[tuple[str, str] | None]]


def encode_payload(event: MailEvent) -> bytes:
    """The exact bytes POSTed (and signed) for an event: compact JSON of its webhook payload."""
    return event.webhook_body()


class WebhookDispatcher:
    """Works off the outbox in a background task on the caller's loop."""

    def __init__(
        self,
        config: LocalConfig,
        outbox: OutboxRepository,
        *,
        destination: Destination,
        targets: TargetsOf | None = None,
        http: httpx2.AsyncClient | None = None,
        clock: Callable[[], float] | None = None,
        retry_cap_seconds: float = DEFAULT_RETRY_CAP_SECONDS,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self._destination = destination
        self._targets = targets
        self._given_http = http
        self._http: httpx2.AsyncClient | None = http
        self._clock = clock or time.time  # wall clock: next_attempt_at must mean the same after a restart
        self._retry_cap = retry_cap_seconds
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: dict[str, int] = {}  # delivery id -> attempts made when it was claimed

    # ------------------------------------------------------------------ new rows

    def wake(self) -> None:
        """New rows were committed to the outbox: look now rather than at the next due time."""
        self._wake.set()

    async def enqueue(self, event: MailEvent) -> None:
        """Record one pending delivery per webhook (`targets`) that wants `event`; durable when this returns."""
        if self._targets is None:
            return
        found = self._targets(event)
        targets = await found if inspect.isawaitable(found) else found
        wanted = [t for t in targets if not t.events or event.event_type in t.events]
        if not wanted:
            return
        body = encode_payload(event)
        await self._outbox.add(
            [OutboxEntry(t.id, event.event_id, event.event_type, body) for t in wanted], self._clock()
        )
        self.wake()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the worker task on the running loop (idempotent).

        The one dispatcher of its data dir: leases a killed predecessor left end now, so the POSTs
        it had in flight are sent again at once (at least once), not after their lease.
        """
        if self._worker is None:
            released = await self._outbox.release_leases()
            if released:
                logger.info("webhooks: %d deliveries in flight when the daemon last stopped are due again", released)
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
            try:
                await self._outbox.release(interrupted)
            except Exception:  # noqa: BLE001 - the store closed first: the leases run out by themselves
                logger.warning("webhooks: %d interrupted deliveries stay leased until their lease ends", len(interrupted))
        self._in_flight.clear()
        if self._http is not None and self._given_http is None:
            await self._http.aclose()
            self._http = None

    async def run(self) -> None:
        """Deliver due rows until cancelled; sleeps until the next due time or a wake-up."""
        if self._http is None:
            self._http = httpx2.AsyncClient(follow_redirects=False, timeout=self._config.webhook_timeout_seconds)
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
        due = await self._outbox.claim_due(now, lease_until, CLAIM_BATCH, sorted(self._in_flight))
        for row in due:  # all claimed rows count as in flight, so a stop releases them too
            self._in_flight[row.id] = row.attempts
        for row in due:
            await limit.acquire()
            posts.start_soon(self._attempt_and_release, row, limit)
        if len(due) == CLAIM_BATCH:
            return 0.0
        next_due = await self._outbox.next_due(sorted(self._in_flight))
        return None if next_due is None else max(0.001, next_due - self._clock())

    # ------------------------------------------------------------------ the delivery log

    async def list_deliveries(self, webhook_id: str, limit: int = 50) -> list[WebhookDelivery]:
        """Newest first."""
        rows = await self._outbox.list_for_webhook(webhook_id, max(1, min(limit, 500)))
        return [delivery_from_row(row) for row in rows]

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        row = await self._outbox.get(delivery_id)
        return None if row is None else delivery_from_row(row)

    # ------------------------------------------------------------------ one attempt

    async def _attempt_and_release(self, row: DueRow, limit: anyio.Semaphore) -> None:
        try:
            await self._attempt(row)
        except Exception:  # one bad row must not take the worker down
            logger.exception("webhooks: %s for webhook %s: attempt crashed", row.id, row.webhook_id)
        finally:
            self._in_flight.pop(row.id, None)
            limit.release()
            self._wake.set()  # the worker recomputes its next wake-up (a retry may be due sooner)

    async def _attempt(self, row: DueRow) -> None:
        assert self._http is not None
        attempt = row.attempts + 1
        status_code: int | None = None
        error: str | None = None
        destination = await self._destination(row.webhook_id)
        if destination is None:  # deleted or disabled since the event: stop retrying to it
            await self._outbox.record_attempt(
                row.id, status="failed", attempts=row.attempts, status_code=None,
                error="cancelled: webhook deleted or disabled", now=self._clock(),
            )  # fmt: skip
            logger.info("webhooks: %s for webhook %s cancelled (webhook gone or disabled)", row.id, row.webhook_id)
            return
        url, secret = destination
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
                        SIGNATURE_HEADER: sign_body(secret, row.body),
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
            crash_point("webhook.after_post")  # tests: delivered but not recorded -> sent again after restart
            await self._outbox.record_attempt(
                row.id, status="delivered", attempts=attempt, status_code=status_code, error=None, now=now
            )
            logger.info("webhooks: %s for webhook %s delivered (attempt %d)", row.id, row.webhook_id, attempt)
            return
        if error is None:
            error = f"HTTP {status_code}"
        if attempt >= self._config.webhook_max_attempts:
            await self._outbox.record_attempt(
                row.id, status="failed", attempts=attempt, status_code=status_code, error=error, now=now
            )
            logger.warning(
                "webhooks: %s for webhook %s failed after %d attempts (%s)", row.id, row.webhook_id, attempt, error
            )
            return
        next_at = now + self._backoff(attempt)
        await self._outbox.record_attempt(
            row.id, status="pending", attempts=attempt, status_code=status_code, error=error, now=now, next_at=next_at
        )
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
