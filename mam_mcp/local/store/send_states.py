"""Where each outbound send stands with the relay: `messages.status` and its `outbound_delivery` row.

A send is recorded `queued` with its delivery row (mail.py, `insert_outbound`, one transaction);
from there it is claimed (`relaying`), finished, or scheduled for a retry. The delivery row goes
once the send is sent, delivered or captured, and stays for failed/unknown/partial sends to keep
the relay's last answer.
"""

from __future__ import annotations

import sqlite3

from mam_mcp.local.store.engine import Database
from mam_mcp.local.store.rows import Row, row_or_none

__all__ = ["FINISHED_OK_STATUSES", "SendStateRepository"]

FINISHED_OK_STATUSES = ("sent", "delivered", "captured")


class SendStateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_delivery(self, message_id: str) -> bool:
        """`queued` -> `relaying` (one more attempt counted); False if it was not queued (someone else has it)."""

        def run(c: sqlite3.Connection) -> bool:
            claimed = c.execute(
                "UPDATE messages SET status='relaying' WHERE id=? AND status='queued'", (message_id,)
            ).rowcount
            if claimed:
                c.execute(
                    "UPDATE outbound_delivery SET attempts=attempts+1, next_attempt_at=NULL WHERE message_id=?",
                    (message_id,),
                )
            return bool(claimed)

        return await self._db.write(run)

    async def finish_delivery(self, message_id: str, status: str, reply: str | None = None) -> None:
        """Record a send's outcome; the delivery row goes once it is sent, delivered or captured."""

        def run(c: sqlite3.Connection) -> None:
            c.execute("UPDATE messages SET status=? WHERE id=?", (status, message_id))
            if status in FINISHED_OK_STATUSES:
                c.execute("DELETE FROM outbound_delivery WHERE message_id=?", (message_id,))
            else:
                c.execute(
                    "UPDATE outbound_delivery SET next_attempt_at=NULL, last_reply=COALESCE(?, last_reply)"
                    " WHERE message_id=?",
                    (reply, message_id),
                )

        await self._db.write(run)

    async def schedule_retry(self, message_id: str, *, next_attempt_at: str, retry_until: str, reply: str) -> None:
        """Back to `queued`, due again at `next_attempt_at` (the retry worker picks it up); the window
        only ever grows (`retry_until`, the later of the stored and the given one)."""

        def run(c: sqlite3.Connection) -> None:
            c.execute("UPDATE messages SET status='queued' WHERE id=?", (message_id,))
            c.execute(
                "UPDATE outbound_delivery SET next_attempt_at=?1,"
                " retry_until=MAX(COALESCE(retry_until, ?2), ?2), last_reply=?3 WHERE message_id=?4",
                (next_attempt_at, retry_until, reply, message_id),
            )

        await self._db.write(run)

    async def delivery(self, message_id: str) -> Row | None:
        """The delivery row of a send (attempts, next_attempt_at, retry_until, last_reply), if it has one."""
        return await self._db.read(
            lambda c: row_or_none(c.execute("SELECT * FROM outbound_delivery WHERE message_id=?", (message_id,)).fetchone())
        )

    async def due_deliveries(self, now: str, limit: int = 32) -> list[Row]:
        """Queued sends whose retry is due: the message row with `attempts`, `retry_until`, `last_reply`."""
        return await self._db.read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT m.*, d.attempts, d.retry_until, d.last_reply FROM outbound_delivery d"
                    " JOIN messages m ON m.id=d.message_id"
                    " WHERE d.next_attempt_at IS NOT NULL AND d.next_attempt_at<=? AND m.status='queued'"
                    " ORDER BY d.next_attempt_at LIMIT ?",
                    (now, limit),
                )
            ]
        )

    async def next_delivery_at(self) -> str | None:
        """When the earliest scheduled retry is due (None: nothing scheduled)."""
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT MIN(d.next_attempt_at) FROM outbound_delivery d JOIN messages m ON m.id=d.message_id"
                " WHERE d.next_attempt_at IS NOT NULL AND m.status='queued'"
            ).fetchone()
        )
        return str(row[0]) if row and row[0] else None

    async def outbound_raw(self, message_id: str) -> bytes | None:
        """The exact bytes of an outbound message, as first built (a retry sends the same bytes)."""
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT r.raw FROM messages m JOIN raw_sources r ON r.id=m.raw_id WHERE m.id=?", (message_id,)
            ).fetchone()
        )
        return bytes(row["raw"]) if row else None

    async def recover_deliveries(self, now: str, reply: str) -> tuple[int, int]:
        """At daemon start, before anything sends: what a previous run left in flight.

        A send found `relaying` was with the relay (or a local inbox) when the daemon stopped:
        it becomes `unknown` (never resent). A send still `queued` that was never scheduled had
        not been handed to anyone: it is due now. Returns (unknown, requeued).
        """

        def run(c: sqlite3.Connection) -> tuple[int, int]:
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT d.message_id FROM outbound_delivery d JOIN messages m ON m.id=d.message_id"
                    " WHERE m.status='relaying'"
                )
            ]
            for message_id in ids:
                c.execute("UPDATE messages SET status='unknown' WHERE id=?", (message_id,))
                c.execute("UPDATE outbound_delivery SET last_reply=? WHERE message_id=?", (reply, message_id))
            requeued = c.execute(
                "UPDATE outbound_delivery SET next_attempt_at=? WHERE next_attempt_at IS NULL AND message_id IN"
                " (SELECT id FROM messages WHERE id=outbound_delivery.message_id AND status='queued')",
                (now,),
            ).rowcount
            return len(ids), requeued

        return await self._db.write(run)
