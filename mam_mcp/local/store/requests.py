"""Request records: what a create route answered to an `Idempotency-Key`, so a retry gets it again.

The service (`service/idempotency.py`) claims a key before it creates anything, finishes the
record with the response, or releases it when the request failed and created nothing. Records
older than the expiry are dropped when a new key is claimed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from mam_mcp.local.store.engine import Database

__all__ = ["RequestRecord", "RequestRecordRepository"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    fingerprint: str
    status: int | None  # None: claimed, not finished (running now, or interrupted by a crash)
    body: str | None
    created_at: str


class RequestRecordRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, owner: str, route: str, key: str) -> RequestRecord | None:
        def run(c: sqlite3.Connection) -> RequestRecord | None:
            row = c.execute(
                "SELECT fingerprint, status, body, created_at FROM request_records WHERE owner=? AND route=? AND key=?",
                (owner, route, key),
            ).fetchone()
            return None if row is None else RequestRecord(row[0], row[1], row[2], row[3])

        return await self._db.read(run)

    async def claim(self, owner: str, route: str, key: str, fingerprint: str, *, now: str, expired_before: str) -> bool:
        """Record the key as taken by this request; False when a record exists already."""

        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM request_records WHERE created_at < ?", (expired_before,))
            cursor = c.execute(
                "INSERT OR IGNORE INTO request_records VALUES (?, ?, ?, ?, NULL, NULL, ?)",
                (owner, route, key, fingerprint, now),
            )
            return cursor.rowcount == 1

        return await self._db.write(run)

    async def finish(self, owner: str, route: str, key: str, status: int, body: str) -> None:
        await self._db.write(
            lambda c: c.execute(
                "UPDATE request_records SET status=?, body=? WHERE owner=? AND route=? AND key=?",
                (status, body, owner, route, key),
            )
        )

    async def release(self, owner: str, route: str, key: str) -> None:
        """Forget a claim whose request failed without creating anything: a retry runs it again."""
        await self._db.write(
            lambda c: c.execute(
                "DELETE FROM request_records WHERE owner=? AND route=? AND key=? AND status IS NULL",
                (owner, route, key),
            )
        )
