"""The webhook outbox: one row per (webhook, event) to POST, in the mail database.

Rows for a received mail are written by `mail.insert_inbound` in the message's own transaction
(`insert_outbox_rows`); others (`message.sent`) by `OutboxRepository.add`. The dispatcher
(webhooks/dispatcher.py) claims due rows with a lease (`leased_until`, past the POST's timeout,
so no other worker takes them meanwhile), then records each attempt. One daemon runs per data
dir, so at its start every lease left is a dead process's: `release_leases` makes those rows
due again at once (at-least-once: a POST the receiver got before the crash is sent again). Every write goes through the store's group-commit writer.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mam_mcp.local.store.engine import Database
from mam_mcp.local.store.rows import Row, row_or_none
from mam_mcp.local.timestamps import iso_from_epoch

__all__ = ["DueRow", "OutboxEntry", "OutboxRepository", "insert_outbox_rows"]

LOG_COLUMNS: Final = (
    "id, webhook_id, event_id, event_type, status, attempts, last_status_code, last_error,"
    " created_at, updated_at, last_attempt_at, next_attempt_at, delivered_at"
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One delivery to record: the body is the exact JSON to POST (built by the caller, not here)."""

    webhook_id: str
    event_id: str
    event_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class DueRow:
    """A claimed delivery: what one POST needs, bar the URL and secret (looked up at send time)."""

    id: str
    webhook_id: str
    body: bytes
    attempts: int


def insert_outbox_rows(c: sqlite3.Connection, entries: Iterable[OutboxEntry], now: float | None = None) -> int:
    """Inside the caller's transaction: one pending row per entry, due now; an entry already there is ignored."""
    at = time.time() if now is None else now
    iso = iso_from_epoch(at)
    rows = [
        ("whd_" + secrets.token_hex(12), e.webhook_id, e.event_id, e.event_type, e.body, at, iso, iso)
        for e in entries
    ]
    if rows:
        c.executemany(
            "INSERT OR IGNORE INTO webhook_outbox (id, webhook_id, event_id, event_type, body, status, attempts,"
            " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
            rows,
        )
    return len(rows)


def active_webhooks_for_inbox(
    c: sqlite3.Connection, tenant_id: str, workspace_id: str | None, inbox_id: str
) -> list[Row]:
    """Active webhooks covering an inbox (tenant-wide, its workspace's, its own), read in the caller's transaction."""
    return [
        dict(r)
        for r in c.execute(
            "SELECT id, events_json FROM webhooks WHERE tenant_id=? AND is_active=1"
            " AND (inbox_id IS NULL OR inbox_id=?) AND (workspace_id IS NULL OR workspace_id IS ?)",
            (tenant_id, inbox_id, workspace_id),
        )
    ]


class OutboxRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, entries: Sequence[OutboxEntry], now: float | None = None) -> int:
        """Record deliveries in a transaction of their own; durable when this returns."""
        if not entries:
            return 0
        return await self._db.write(lambda c: insert_outbox_rows(c, entries, now))

    async def import_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """Rows of an older install's `webhooks.db`, kept as they were (ids and all); ones already here are skipped."""
        columns = (
            "id", "webhook_id", "event_id", "event_type", "body", "status", "attempts", "next_attempt_at",
            "last_status_code", "last_error", "created_at", "updated_at", "last_attempt_at", "delivered_at",
        )  # fmt: skip

        def run(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.executemany(
                f"INSERT OR IGNORE INTO webhook_outbox ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                [tuple(row.get(name) for name in columns) for row in rows],
            )
            return c.total_changes - before

        return await self._db.write(run, offload=True)

    async def claim_due(self, now: float, lease_until: float, limit: int, busy: Sequence[str]) -> list[DueRow]:
        """Due pending rows, leased until `lease_until` (another worker skips them meanwhile)."""
        busy = list(busy)

        def run(c: sqlite3.Connection) -> list[DueRow]:
            rows = c.execute(
                "SELECT id, webhook_id, body, attempts FROM webhook_outbox"
                " WHERE status = 'pending' AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)"
                f" AND id NOT IN ({','.join('?' * len(busy))})"
                " ORDER BY next_attempt_at LIMIT ?",
                (now, now, *busy, limit),
            ).fetchall()
            c.executemany(
                "UPDATE webhook_outbox SET leased_until = ? WHERE id = ?", [(lease_until, row["id"]) for row in rows]
            )
            return [DueRow(r["id"], r["webhook_id"], bytes(r["body"]), int(r["attempts"])) for r in rows]

        return await self._db.write(run)

    async def next_due(self, busy: Sequence[str]) -> float | None:
        """When the next pending row not in `busy` can be claimed (its due time, or its lease's end)."""
        busy = list(busy)
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(leased_until, 0))) FROM webhook_outbox"
                f" WHERE status = 'pending' AND id NOT IN ({','.join('?' * len(busy))})",
                busy,
            ).fetchone()
        )
        return None if row[0] is None else float(row[0])

    async def release(self, claimed: dict[str, int]) -> None:
        """End the leases of claimed rows (due again at once), unless their attempt got recorded after all."""
        if not claimed:
            return
        await self._db.write(
            lambda c: c.executemany(
                "UPDATE webhook_outbox SET leased_until = NULL WHERE id = ? AND status = 'pending' AND attempts = ?",
                list(claimed.items()),
            )
        )

    async def release_leases(self) -> int:
        """At the start of the one daemon of this data dir: leases a killed process left end now."""
        return await self._db.write(
            lambda c: c.execute("UPDATE webhook_outbox SET leased_until = NULL WHERE leased_until IS NOT NULL").rowcount
        )

    async def record_attempt(
        self,
        delivery_id: str,
        *,
        status: str,
        attempts: int,
        status_code: int | None,
        error: str | None,
        now: float,
        next_at: float | None = None,
    ) -> None:
        """One attempt's outcome: `delivered`, `failed` (given up) or `pending` (retry at `next_at`)."""
        iso = iso_from_epoch(now)
        await self._db.write(
            lambda c: c.execute(
                "UPDATE webhook_outbox SET status=?, attempts=?, next_attempt_at=?, leased_until=NULL,"
                " last_status_code=?, last_error=?, last_attempt_at=?, updated_at=?, delivered_at=? WHERE id=?",
                (
                    status, attempts, next_at if status == "pending" else None, status_code, error, iso, iso,
                    iso if status == "delivered" else None, delivery_id,
                ),  # fmt: skip
            )
        )

    async def prune_finished(self, updated_before: str, *, limit: int) -> int:
        """Delete up to `limit` deliveries that ended (delivered or failed) before `updated_before`
        (a wire timestamp); pending ones stay whatever their age. Returns how many went; more may remain.

        The rows are found on a read connection (a scan when nothing is due: kept off the writer),
        then deleted by id in a short write that checks the state again."""

        def find(c: sqlite3.Connection) -> list[str]:
            return [
                row[0]
                for row in c.execute(
                    "SELECT id FROM webhook_outbox WHERE status IN ('delivered', 'failed') AND updated_at < ? LIMIT ?",
                    (updated_before, limit),
                )
            ]

        ids = await self._db.read(find)
        if not ids:
            return 0

        def delete(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.executemany(
                "DELETE FROM webhook_outbox WHERE id = ? AND status IN ('delivered', 'failed') AND updated_at < ?",
                [(delivery_id, updated_before) for delivery_id in ids],
            )
            return c.total_changes - before

        return await self._db.write(delete)

    async def list_for_webhook(self, webhook_id: str, limit: int) -> list[Row]:
        """The delivery log of a webhook, newest first (no body)."""
        return await self._db.read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    f"SELECT {LOG_COLUMNS} FROM webhook_outbox WHERE webhook_id = ?"
                    " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                    (webhook_id, limit),
                )
            ]
        )

    async def get(self, delivery_id: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(
                c.execute(f"SELECT {LOG_COLUMNS} FROM webhook_outbox WHERE id = ?", (delivery_id,)).fetchone()
            )
        )
