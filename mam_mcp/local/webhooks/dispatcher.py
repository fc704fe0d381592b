"""Durable, signed webhook delivery of inbox events.

`WebhookDispatcher.enqueue` (an event sink of `LocalBackend`) writes one delivery row per matching
webhook to SQLite (`webhooks.db` in the data dir, WAL) before it returns; a worker POSTs the stored
JSON bytes with `x-mam-signature: <hex HMAC-SHA256(secret, body)>`, retries non-2xx answers and
timeouts with exponential backoff (`base * 3**n`, capped, jittered) up to `webhook_max_attempts`,
then marks the delivery `failed` (kept for the delivery log). `next_attempt_at` is persisted, so a
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
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, ConfigDict

from mam_mcp import __version__
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.events.model import InboxEvent
from mam_mcp.signatures import SIGNATURE_HEADER, sign_body

__all__ = [
    "DeliveryStatus",
    "WebhookDelivery",
    "WebhookDispatcher",
    "WebhookTargetLike",
    "encode_payload",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
DeliveryStatus = Literal["pending", "delivered", "failed"]
DEFAULT_RETRY_CAP_SECONDS: Final = 6 * 3600.0
LEASE_MARGIN_SECONDS: Final = 30.0  # a claimed row is re-tried by a later process only after this
MAX_CONCURRENT_POSTS: Final = 8
CLAIM_BATCH: Final = 32
_SCHEMA_VERSION: Final = 1


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


TargetsOf = Callable[[InboxEvent], Sequence[WebhookTargetLike] | Awaitable[Sequence[WebhookTargetLike]]]
# webhook id -> its URL now, or None once it is deleted or disabled (queued retries then stop).
CurrentUrlOf = Callable[[str], Awaitable[str | None]]


class WebhookDelivery(BaseModel):
    """One row of the delivery log (no URL, body or secret)."""

    model_config = ConfigDict(frozen=True)

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None


def encode_payload(event: InboxEvent) -> bytes:
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
        self._db = _DeliveryDb(config.data_dir / "webhooks.db")
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: dict[str, int] = {}  # delivery id -> attempts made when it was claimed

    @property
    def db_path(self) -> Path:
        return self._db.path

    # ------------------------------------------------------------------ the sink

    async def enqueue(self, event: InboxEvent) -> None:
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
                "whd_" + _token(),
                target.id,
                event.event_id,
                event.event_type,
                target.url,
                body,
                sign_body(target.secret, body),
                now,
                _iso(now),
            )
            for target in wanted
        ]
        await self._run(self._db.insert, rows)
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
            await self._run(self._db.release, interrupted, self._clock())
        self._in_flight.clear()
        if self._http is not None and self._given_http is None:
            await self._http.aclose()
            self._http = None
        await self._run(self._db.close)

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
        due = await self._run(self._db.claim_due, now, lease_until, CLAIM_BATCH, sorted(self._in_flight))
        for row in due:  # all claimed rows count as in flight, so a stop releases them too
            self._in_flight[row.id] = row.attempts
        for row in due:
            await limit.acquire()
            posts.start_soon(self._attempt_and_release, row, limit)
        if len(due) == CLAIM_BATCH:
            return 0.0
        next_due = await self._run(self._db.next_due, sorted(self._in_flight))
        return None if next_due is None else max(0.001, next_due - self._clock())

    # ------------------------------------------------------------------ the delivery log

    async def list_deliveries(self, webhook_id: str, limit: int = 50) -> list[WebhookDelivery]:
        """Newest first."""
        return await self._run(self._db.list_for_webhook, webhook_id, max(1, min(limit, 500)))

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        return await self._run(self._db.get, delivery_id)

    # ------------------------------------------------------------------ one attempt

    async def _attempt_and_release(self, row: _DueRow, limit: anyio.Semaphore) -> None:
        try:
            await self._attempt(row)
        except Exception:  # one bad row must not take the worker down
            logger.exception("webhooks: %s for webhook %s: attempt crashed", row.id, row.webhook_id)
        finally:
            self._in_flight.pop(row.id, None)
            limit.release()
            self._wake.set()  # the worker recomputes its next wake-up (a retry may be due sooner)

    async def _attempt(self, row: _DueRow) -> None:
        assert self._http is not None
        attempt = row.attempts + 1
        status_code: int | None = None
        error: str | None = None
        url = row.url
        if self._current_url is not None:
            current = await self._current_url(row.webhook_id)
            if current is None:  # deleted or disabled since the event: stop retrying to it
                await self._run(
                    self._db.mark_failed, row.id, row.attempts, None, "cancelled: webhook deleted or disabled", self._clock()
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
            await self._run(self._db.mark_delivered, row.id, attempt, status_code, now)
            logger.info("webhooks: %s for webhook %s delivered (attempt %d)", row.id, row.webhook_id, attempt)
            return
        if error is None:
            error = f"HTTP {status_code}"
        if attempt >= self._config.webhook_max_attempts:
            await self._run(self._db.mark_failed, row.id, attempt, status_code, error, now)
            logger.warning(
                "webhooks: %s for webhook %s failed after %d attempts (%s)",
                row.id,
                row.webhook_id,
                attempt,
                error,
            )
            return
        next_at = now + self._backoff(attempt)
        await self._run(self._db.mark_retry, row.id, attempt, status_code, error, now, next_at)
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


class _DueRow:
    __slots__ = ("attempts", "body", "id", "signature", "url", "webhook_id")

    def __init__(self, row: sqlite3.Row) -> None:
        self.id: str = row["id"]
        self.webhook_id: str = row["webhook_id"]
        self.url: str = row["url"]
        self.body: bytes = row["body"]
        self.signature: str = row["signature"]
        self.attempts: int = row["attempts"]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,            -- the exact bytes POSTed
    signature TEXT NOT NULL,       -- hex HMAC-SHA256 of body; the secret itself is not kept here
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,          -- epoch seconds; NULL once delivered or failed
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_attempt_at TEXT,
    delivered_at TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at DESC);
"""


class _DeliveryDb:
    """The delivery table; blocking calls, run in a worker thread, serialised by one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (what a killed daemon is); only a power
            # loss can drop the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            conn = self._connect()
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO webhook_deliveries (id, webhook_id, event_id, event_type, url, body,"
                    " signature, status, attempts, next_attempt_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
                    [(*row, row[-1]) for row in rows],
                )

    def claim_due(self, now: float, lease_until: float, limit: int, busy: list[str]) -> list[_DueRow]:
        """Due pending rows, leased until `lease_until` so no other worker takes them meanwhile."""
        with self._lock:
            conn = self._connect()
            with _transaction(conn):
                rows = conn.execute(
                    "SELECT id, webhook_id, url, body, signature, attempts FROM webhook_deliveries"
                    " WHERE status = 'pending' AND next_attempt_at <= ?"
                    f" AND id NOT IN ({','.join('?' * len(busy))})"
                    " ORDER BY next_attempt_at LIMIT ?",
                    (now, *busy, limit),
                ).fetchall()
                conn.executemany(
                    "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
                    [(lease_until, row["id"]) for row in rows],
                )
            return [_DueRow(row) for row in rows]

    def next_due(self, busy: list[str]) -> float | None:
        with self._lock:
            row = (
                self._connect()
                .execute(
                    "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"
                    f" AND id NOT IN ({','.join('?' * len(busy))})",
                    busy,
                )
                .fetchone()
            )
            return None if row[0] is None else float(row[0])

    def release(self, claimed: dict[str, int], now: float) -> None:
        """Make claimed rows due now, unless their attempt got recorded after all."""
        with self._lock:
            conn = self._connect()
            with _transaction(conn):
                conn.executemany(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?"
                    " WHERE id = ? AND status = 'pending' AND attempts = ?",
                    [(now, delivery_id, attempts) for delivery_id, attempts in claimed.items()],
                )

    def mark_delivered(self, delivery_id: str, attempts: int, status_code: int, now: float) -> None:
        self._update(
            delivery_id,
            status="delivered",
            attempts=attempts,
            next_attempt_at=None,
            last_status_code=status_code,
            last_error=None,
            last_attempt_at=_iso(now),
            delivered_at=_iso(now),
            updated_at=_iso(now),
        )

    def mark_retry(
        self, delivery_id: str, attempts: int, status_code: int | None, error: str, now: float, next_at: float
    ) -> None:
        self._update(
            delivery_id,
            attempts=attempts,
            next_attempt_at=next_at,
            last_status_code=status_code,
            last_error=error,
            last_attempt_at=_iso(now),
            updated_at=_iso(now),
        )

    def mark_failed(
        self, delivery_id: str, attempts: int, status_code: int | None, error: str, now: float
    ) -> None:
        self._update(
            delivery_id,
            status="failed",
            attempts=attempts,
            next_attempt_at=None,
            last_status_code=status_code,
            last_error=error,
            last_attempt_at=_iso(now),
            updated_at=_iso(now),
        )

    def _update(self, delivery_id: str, **columns: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self._lock:
            conn = self._connect()
            with _transaction(conn):
                conn.execute(
                    f"UPDATE webhook_deliveries SET {assignments} WHERE id = ?",
                    (*columns.values(), delivery_id),
                )

    def list_for_webhook(self, webhook_id: str, limit: int) -> list[WebhookDelivery]:
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    f"SELECT {_LOG_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?"
                    " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                    (webhook_id, limit),
                )
                .fetchall()
            )
        return [_delivery(row) for row in rows]

    def get(self, delivery_id: str) -> WebhookDelivery | None:
        with self._lock:
            row = (
                self._connect()
                .execute(f"SELECT {_LOG_COLUMNS} FROM webhook_deliveries WHERE id = ?", (delivery_id,))
                .fetchone()
            )
        return None if row is None else _delivery(row)


_LOG_COLUMNS: Final = (
    "id, webhook_id, event_id, event_type, status, attempts, last_status_code, last_error,"
    " created_at, updated_at, last_attempt_at, next_attempt_at, delivered_at"
)


def _delivery(row: sqlite3.Row) -> WebhookDelivery:
    values = dict(row)
    next_at = values["next_attempt_at"]
    values["next_attempt_at"] = None if next_at is None else _iso(next_at)
    return WebhookDelivery(**values)


class _transaction:  # reads as a statement: `with _transaction(conn):`
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _token() -> str:
    return secrets.token_hex(12)
