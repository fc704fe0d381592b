"""The webhook delivery log: one row per (webhook, event), in `webhooks.db` beside the mail database.

Blocking calls, run in a worker thread by the dispatcher and serialised by one lock. A claimed
row is leased (`next_attempt_at` pushed past the POST's timeout), so no other worker takes it meanwhile.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from mam_mcp.local.timestamps import iso_from_epoch

__all__ = ["DeliveryLog", "DeliveryStatus", "DueDelivery", "WebhookDelivery"]

DeliveryStatus = Literal["pending", "delivered", "failed"]
_SCHEMA_VERSION: Final = 1


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




class DueDelivery:
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


class DeliveryLog:
    """The delivery table of `webhooks.db`."""

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

    def claim_due(self, now: float, lease_until: float, limit: int, busy: list[str]) -> list[DueDelivery]:
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
            return [DueDelivery(row) for row in rows]

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
            last_attempt_at=iso_from_epoch(now),
            delivered_at=iso_from_epoch(now),
            updated_at=iso_from_epoch(now),
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
            last_attempt_at=iso_from_epoch(now),
            updated_at=iso_from_epoch(now),
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
            last_attempt_at=iso_from_epoch(now),
            updated_at=iso_from_epoch(now),
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
    values["next_attempt_at"] = None if next_at is None else iso_from_epoch(next_at)
    return WebhookDelivery(**values)


class _transaction:  # reads as a statement: `with _transaction(conn):`
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
