"""The console's read model: the lists and counts a page needs, each bounded in cost at 100k messages.

The store's public methods answer the REST API's questions (offset pages, whole rows); the console
asks others: how many messages and unread ones an inbox has (capped, so a count costs at most
`COUNT_CAP` index entries), one page of summaries without bodies after a cursor (keyset paging:
page 2,000 costs what page 1 does), outbound mail with its relay state, and a cheap fingerprint of
drafts and delivery states for the live view. These run on the console's own read-only connections
to the same database (WAL: they never block the store's writer).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

__all__ = ["COUNT_CAP", "ConsoleReads", "Cursor", "InboxCounts", "Page", "fts_query"]

T = TypeVar("T")

COUNT_CAP = 10_000  # counts above this show as "10,000+": an exact count of 100k rows costs ~25 ms
SNIPPET_CHARS = 160
_SUMMARY = (
    "m.seq, m.id, m.thread_id, m.direction, m.status, m.from_address, m.from_name, m.to_json, m.subject,"
    " m.is_read, m.has_attachments, m.at, m.tag, substr(coalesce(m.plain_body, ''), 1, 400) AS snippet"
)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: strictly older than (`at`, `seq`)."""

    at: str
    seq: int

    def token(self) -> str:
        return f"{self.at}~{self.seq}"

    @classmethod
    def parse(cls, token: str | None) -> Cursor | None:
        """None for no cursor; ValueError for one this module never made."""
        if not token:
            return None
        at, sep, seq = token.rpartition("~")
        if not sep or not at or len(at) > 40 or not seq.isdigit():
            raise ValueError("not a page cursor")
        return cls(at, int(seq))


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next: str | None  # the cursor of the following page, None on the last one


@dataclass(frozen=True, slots=True)
class InboxCounts:
    total: int
    unread: int
    drafts: int
    capped: bool  # a count reached COUNT_CAP: "10,000+"


def fts_query(text: str) -> str:
    """Words of a search box as an FTS5 query: every word must match, each quoted (no syntax from input)."""
    words = [w.replace('"', '""') for w in text.split() if w.strip('"')]
    return " AND ".join(f'"{w}"' for w in words[:20])


def _summary(row: sqlite3.Row) -> dict[str, Any]:
    snippet = " ".join(str(row["snippet"]).split())[:SNIPPET_CHARS]
    return {
        "id": row["id"],
        "threadId": row["thread_id"],
        "direction": row["direction"],
        "status": row["status"],
        "from": row["from_address"],
        "fromName": row["from_name"],
        "to": json.loads(row["to_json"] or "[]"),
        "subject": row["subject"] or "",
        "snippet": snippet,
        "isRead": bool(row["is_read"]),
        "hasAttachments": bool(row["has_attachments"]),
        "tag": row["tag"],  # the +tag the mail was addressed with, or None
        "at": row["at"],
    }


class ConsoleReads:
    """Read-only queries over the store's database; one connection per worker thread, closed by `close`."""

    def __init__(self, db_path: Path) -> None:
        self._uri = f"{db_path.resolve().as_uri()}?mode=ro"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=1")
            with self._lock:
                if self._closed:
                    conn.close()
                    raise RuntimeError("console reads are closed")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(self._connection()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # ------------------------------------------------------------ counts

    async def inbox_counts(self, inbox_ids: Sequence[str]) -> dict[str, InboxCounts]:
        """Messages, unread messages and drafts per inbox, each counted up to COUNT_CAP."""

        def run(c: sqlite3.Connection) -> dict[str, InboxCounts]:
            out: dict[str, InboxCounts] = {}
            for inbox_id in inbox_ids:
                total = c.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM messages WHERE inbox_id=? AND deleted=0 LIMIT ?)",
                    (inbox_id, COUNT_CAP + 1),
                ).fetchone()[0]
                unread = c.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM messages INDEXED BY messages_unread"
                    " WHERE inbox_id=? AND is_read=0 AND deleted=0 LIMIT ?)",
                    (inbox_id, COUNT_CAP + 1),
                ).fetchone()[0]
                drafts = c.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM drafts WHERE inbox_id=? LIMIT ?)", (inbox_id, COUNT_CAP + 1)
                ).fetchone()[0]
                capped = max(total, unread, drafts) > COUNT_CAP
                out[inbox_id] = InboxCounts(
                    min(total, COUNT_CAP), min(unread, COUNT_CAP), min(drafts, COUNT_CAP), capped
                )
            return out

        return await self._run(run)

    # ------------------------------------------------------------ pages

    async def messages(
        self, inbox_id: str, *, direction: str | None, after: Cursor | None, limit: int
    ) -> Page:
        """Newest first, `limit` summaries older than the cursor; outbound rows carry their relay state."""
        sql = f"SELECT {_SUMMARY}{_DELIVERY_COLUMNS} FROM messages m{_DELIVERY_JOIN} WHERE m.inbox_id=? AND m.deleted=0"
        args: list[Any] = [inbox_id]
        if direction is not None:
            sql += " AND m.direction=?"
            args.append(direction)
        if after is not None:
            sql += " AND (m.at, m.seq) < (?, ?)"
            args += [after.at, after.seq]
        sql += " ORDER BY m.at DESC, m.seq DESC LIMIT ?"
        args.append(limit + 1)

        def run(c: sqlite3.Connection) -> Page:
            rows = c.execute(sql, args).fetchall()
            items = [_with_delivery(r) for r in rows[:limit]]
            last = rows[limit - 1] if len(rows) > limit else None
            return Page(items, Cursor(last["at"], last["seq"]).token() if last is not None else None)

        return await self._run(run)

    async def search(self, inbox_id: str, text: str, *, after_seq: int | None, limit: int) -> Page:
        """Full-text matches newest first (by arrival), `limit` after the cursor's sequence number."""
        match = fts_query(text)
        if not match:
            return Page([], None)
        sql = (
            f"SELECT {_SUMMARY} FROM message_fts f JOIN messages m ON m.seq=f.rowid"
            " WHERE message_fts MATCH ? AND m.inbox_id=? AND m.deleted=0"
        )
        args: list[Any] = [match, inbox_id]
        if after_seq is not None:
            sql += " AND f.rowid < ?"
            args.append(after_seq)
        sql += " ORDER BY f.rowid DESC LIMIT ?"
        args.append(limit + 1)

        def run(c: sqlite3.Connection) -> Page:
            rows = c.execute(sql, args).fetchall()
            items = [_summary(r) for r in rows[:limit]]
            return Page(items, str(rows[limit - 1]["seq"]) if len(rows) > limit else None)

        return await self._run(run)

    async def threads(self, inbox_id: str, *, after: tuple[str, str] | None, limit: int) -> Page:
        """Threads by their latest message, newest first."""
        sql = (
            "SELECT id, subject, message_count, last_message_at FROM threads"
            " WHERE inbox_id=? AND message_count>0"
        )
        args: list[Any] = [inbox_id]
        if after is not None:
            sql += " AND (last_message_at, id) < (?, ?)"
            args += list(after)
        sql += " ORDER BY last_message_at DESC, id DESC LIMIT ?"
        args.append(limit + 1)

        def run(c: sqlite3.Connection) -> Page:
            rows = c.execute(sql, args).fetchall()
            items = [
                {
                    "id": r["id"],
                    "subject": r["subject"] or "",
                    "messageCount": r["message_count"],
                    "lastMessageAt": r["last_message_at"],
                }
                for r in rows[:limit]
            ]
            last = rows[limit - 1] if len(rows) > limit else None
            return Page(items, f"{last['last_message_at']}~{last['id']}" if last is not None else None)

        return await self._run(run)

    async def delivery_of(self, message_id: str) -> dict[str, Any]:
        """The relay state of one outbound message (empty once it was sent, delivered or captured)."""

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            row = c.execute(
                "SELECT attempts, next_attempt_at, retry_until, last_reply FROM outbound_delivery WHERE message_id=?",
                (message_id,),
            ).fetchone()
            return _delivery(row) if row is not None else {}

        return await self._run(run)

    # ------------------------------------------------------------ live view

    async def fingerprint(self, inbox_ids: Sequence[str]) -> str:
        """Changes when a draft or an unfinished send of these inboxes changes (events do not cover them)."""
        if not inbox_ids:
            return ""
        marks = ",".join("?" * len(inbox_ids))

        def run(c: sqlite3.Connection) -> str:
            drafts = c.execute(
                f"SELECT count(*), max(updated_at) FROM drafts WHERE inbox_id IN ({marks})", list(inbox_ids)
            ).fetchone()
            sends = c.execute(
                "SELECT count(*), total(d.attempts), max(coalesce(d.next_attempt_at, '')),"
                " total(length(coalesce(d.last_reply, ''))), group_concat(m.status)"
                " FROM outbound_delivery d JOIN messages m ON m.id=d.message_id"
                f" WHERE m.inbox_id IN ({marks})",
                list(inbox_ids),
            ).fetchone()
            return json.dumps([list(drafts), list(sends)])

        return await self._run(run)


_DELIVERY_COLUMNS = ", d.attempts, d.next_attempt_at, d.retry_until, d.last_reply"
_DELIVERY_JOIN = " LEFT JOIN outbound_delivery d ON d.message_id=m.id"


def _delivery(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "attempts": row["attempts"],
        "nextAttemptAt": row["next_attempt_at"],
        "retryUntil": row["retry_until"],
        "relayReply": row["last_reply"],
    }


def _with_delivery(row: sqlite3.Row) -> dict[str, Any]:
    item = _summary(row)
    if row["direction"] == "outbound" and row["attempts"] is not None:
        item["delivery"] = _delivery(row)
    return item
