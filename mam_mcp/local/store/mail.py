"""Mail: messages with their raw source, threads, attachments, drafts, correspondents and send idempotency.

Attachments and raw sources are BLOBs in SQLite rather than files: they commit atomically
with their message in the same fsync, there are no orphan files after a crash, and the
data dir stays one database file to back up. Each message's text is stored once (schema 5): the
full-text index reads it from the row (external content), and a raw source whose body is the
row's plain body keeps only its header block (sources.py).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from mam_mcp.local.crash import crash_point
from mam_mcp.local.mime.parse import ParsedMessage, normalize_subject, parse_message
from mam_mcp.local.mime.source import RawMessage, SpooledMessage, raw_chunks
from mam_mcp.local.store.directory import InboxDirectory, InboxRecord
from mam_mcp.local.store.engine import Database
from mam_mcp.local.store.outbox import OutboxEntry, active_webhooks_for_inbox, insert_outbox_rows
from mam_mcp.local.store.rows import Row, new_id, row_or_none
from mam_mcp.local.store.sources import join_source, split_source
from mam_mcp.local.timestamps import iso_utc, utc_now_iso

__all__ = [
    "DEDUP_WINDOW_SECONDS",
    "PARSE_IN_THREAD_BYTES",
    "THREAD_SUBJECT_WINDOW",
    "InboundCopy",
    "MailRepository",
    "OutboxBuilder",
    "delete_inbox_rows",
    "prune_inbound_digests",
]

THREAD_SUBJECT_WINDOW = timedelta(days=30)  # subject-only threading looks back this far
PARSE_IN_THREAD_BYTES = 256 * 1024  # parse and store bigger messages off the event loop
# A mail received again within this window (same inbox, Message-ID and SHA-256 of the raw bytes, same
# +tag) is a sender's retry (our 250 was lost): answered 250, stored once. Mail without a Message-ID is
# never taken for a retry. Senders retry for up to ~5 days
# (RFC 5321 4.5.4.1), but a retry of a mail we committed follows our crash within minutes.
DEDUP_WINDOW_SECONDS = 24 * 3600.0
BLOB_IN_PIECES_BYTES = 1024 * 1024  # bigger blobs are written in place (incremental blob I/O): no bound copies


@dataclass(frozen=True, slots=True)
class InboundCopy:
    """One stored copy of a received mail: the inbox it went to, its message row, its thread's subject."""

    inbox: InboxRecord
    message: Row
    thread_subject: str | None
    duplicate: bool = False  # received before (a retried SMTP transaction): nothing new was stored


# Called inside the transaction that stores a copy, with the active webhooks covering its inbox
# (`id`, `events_json`): the deliveries to record with it (their bodies are built by the caller).
OutboxBuilder = Callable[[InboundCopy, Sequence[Row]], Sequence[OutboxEntry]]


class MailRepository:
    def __init__(
        self, db: Database, directory: InboxDirectory, may_have_webhooks: Callable[[], bool] = lambda: True
    ) -> None:
        self._db = db
        self._directory = directory
        self._may_have_webhooks = may_have_webhooks

    # ------------------------------------------------------------ inbound mail (durable)

    async def insert_inbound(
        self, raw: RawMessage, *, mail_from: str, rcpt_tos: Sequence[str], outbox: OutboxBuilder | None = None
    ) -> list[InboundCopy]:
        """Store one copy per local recipient inbox; returns the copies only after the COMMIT is on disk.

        With `outbox`, each new copy's webhook deliveries are written in the same transaction. A copy
        already received within `DEDUP_WINDOW_SECONDS` comes back with `duplicate=True`, stored once.
        `raw` may be spooled to a file (large mail from SMTP): it is hashed, parsed and stored in chunks.
        """
        targets: list[InboxRecord] = []
        tags: dict[str, str | None] = {}  # inbox id -> the tag of the first recipient address naming it
        for rcpt in rcpt_tos:
            delivery = self._directory.route(rcpt)
            if delivery is not None and delivery.inbox not in targets:
                targets.append(delivery.inbox)
                tags[delivery.inbox.id] = delivery.tag
        if not targets:
            return []
        if len(raw) > PARSE_IN_THREAD_BYTES:
            parsed, digest = await anyio.to_thread.run_sync(_parse_and_digest, raw)
        else:
            parsed, digest = _parse_and_digest(raw)
        if not parsed.from_address and "@" in mail_from:
            parsed.from_address = mail_from
        # A big message's inserts (blob, attachments, full text) would hold the loop for tens of ms.
        big = len(raw) > PARSE_IN_THREAD_BYTES
        webhooks = outbox is not None and self._may_have_webhooks()  # else no read of the webhooks table
        return await self._db.write(
            lambda c: _store_inbound(c, raw, parsed, digest, targets, outbox, webhooks, tags), offload=big
        )

    # ------------------------------------------------------------ outbound mail

    async def insert_outbound(
        self,
        *,
        inbox_id: str,
        thread_id: str | None,
        message_id_hdr: str,
        in_reply_to: str | None,
        references: Sequence[str],
        from_address: str,
        from_name: str | None,
        to: Sequence[str],
        cc: Sequence[str],
        bcc: Sequence[str],
        subject: str,
        plain_body: str | None,
        html_body: str | None,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        raw: bytes | None = None,
        idempotency_key: str | None = None,
        idempotency_fingerprint: str | None = None,
        delete_draft_id: str | None = None,
    ) -> Row:
        """Record an outbound message (status `queued`, with its delivery row), its thread, idempotency
        record and the draft's deletion, in one transaction: a draft disappears only with its message
        durably recorded."""
        now = utc_now_iso()

        def run(c: sqlite3.Connection) -> Row:
            if delete_draft_id is not None:
                gone = c.execute("DELETE FROM drafts WHERE id=? AND inbox_id=?", (delete_draft_id, inbox_id))
                if gone.rowcount == 0:
                    raise LookupError("draft not found")
            tid = thread_id or _new_thread(c, inbox_id, subject, now)
            raw_id = c.execute("INSERT INTO raw_sources (raw) VALUES (?)", (raw,)).lastrowid if raw else None
            row = {
                "id": new_id(), "inbox_id": inbox_id, "thread_id": tid, "direction": "outbound",
                "status": "queued", "message_id_hdr": message_id_hdr, "in_reply_to": in_reply_to,
                "references_json": json.dumps(list(references)), "from_address": from_address,
                "from_name": from_name, "to_json": json.dumps(list(to)), "cc_json": json.dumps(list(cc)),
                "bcc_json": json.dumps(list(bcc)), "subject": subject, "plain_body": plain_body,
                "html_body": html_body, "headers_json": None, "is_read": 1, "deleted": 0,
                "has_attachments": 1 if attachments else 0, "raw_id": raw_id, "at": now, "sent_at": now,
                "received_at": None, "created_at": now,
            }  # fmt: skip
            seq = _insert_message(c, row)
            for filename, ctype, data in attachments:
                c.execute(
                    "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, NULL, ?)",
                    (new_id(), seq, filename, ctype, len(data), data),
                )
            _touch_thread(c, tid, now)
            c.execute("INSERT INTO outbound_delivery (message_id) VALUES (?)", (row["id"],))
            if idempotency_key is not None:
                c.execute(
                    "INSERT INTO idempotency (inbox_id, key, message_id, created_at, fingerprint)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (inbox_id, idempotency_key, row["id"], now, idempotency_fingerprint),
                )
            return row

        size = len(raw or b"") + sum(len(data) for _, _, data in attachments)
        return await self._db.write(run, offload=size > PARSE_IN_THREAD_BYTES)

    async def idempotent_message(self, inbox_id: str, key: str) -> Row | None:
        """The message sent with this key, with the key's `idempotency_fingerprint` (NULL: not recorded)."""
        return await self._db.read(
            lambda c: row_or_none(
                c.execute(
                    "SELECT m.*, i.fingerprint AS idempotency_fingerprint"
                    " FROM idempotency i JOIN messages m ON m.id=i.message_id"
                    " WHERE i.inbox_id=? AND i.key=?",
                    (inbox_id, key),
                ).fetchone()
            )
        )

    # ------------------------------------------------------------ reading messages

    async def list_messages(
        self,
        inbox_id: str,
        *,
        direction: str | None = None,
        unread: bool | None = None,
        from_contains: str | None = None,
        subject_contains: str | None = None,
        q: str | None = None,
        after: str | None = None,
        tag: str | None = None,
        to: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Row]:
        match = _fts_query(q) if q else ""
        if match:
            # Walk the full-text matches newest first (rowid = seq) and stop at the page: fast for
            # rare and common words alike, where an IN (...) list of every match is not.
            sql = (
                "SELECT m.* FROM message_fts f JOIN messages m ON m.seq=f.rowid"
                " WHERE message_fts MATCH ? AND m.inbox_id=? AND m.deleted=0"
            )
            args: list[Any] = [match, inbox_id]
        else:
            sql = "SELECT m.* FROM messages m WHERE m.inbox_id=? AND m.deleted=0"
            args = [inbox_id]
        if direction:
            sql += " AND m.direction=?"
            args.append(direction)
        if unread is not None:
            sql += " AND m.is_read=?"
            args.append(0 if unread else 1)
        if from_contains:
            sql += " AND (m.from_address LIKE ? ESCAPE '\\' OR m.from_name LIKE ? ESCAPE '\\')"
            args += [_like(from_contains)] * 2
        if subject_contains:
            sql += " AND m.subject LIKE ? ESCAPE '\\'"
            args.append(_like(subject_contains))
        if after:
            sql += " AND m.at > ?"
            args.append(after)
        if tag:
            sql += " AND m.tag=?"  # the column compares without case (NOCASE), as the index does
            args.append(tag)
        if to:
            # a recipient in To or Cc, or (a `+tag` address) the tag the mail was delivered with
            local, _, domain = to.rpartition("@")
            plus_tag = local.partition("+")[2] if domain else ""
            sql += " AND (m.to_json LIKE ? ESCAPE '\\' OR m.cc_json LIKE ? ESCAPE '\\'"
            args += [_like(json.dumps(to.lower()))] * 2  # a whole JSON string: `a@b` is not `xa@b`
            if plus_tag:
                sql += " OR m.tag=?"
                args.append(plus_tag)
            sql += ")"
        sql += " ORDER BY f.rowid DESC" if match else " ORDER BY m.at DESC, m.seq DESC"
        sql += " LIMIT ? OFFSET ?"
        args += [limit, offset]
        return await self._db.read(lambda c: [dict(r) for r in c.execute(sql, args)])

    async def get_message(self, inbox_id: str, message_id: str, *, mark_read: bool = False) -> Row | None:
        if mark_read:
            await self._db.write(
                lambda c: c.execute(
                    "UPDATE messages SET is_read=1 WHERE id=? AND inbox_id=? AND deleted=0 AND is_read=0",
                    (message_id, inbox_id),
                )
            )

        def run(c: sqlite3.Connection) -> Row | None:
            row = row_or_none(
                c.execute(
                    "SELECT * FROM messages WHERE id=? AND inbox_id=? AND deleted=0", (message_id, inbox_id)
                ).fetchone()
            )
            if row is not None:
                row["attachments"] = _attachment_rows(c, row["seq"])
            return row

        return await self._db.read(run)

    async def set_read(self, inbox_id: str, message_id: str, is_read: bool) -> bool:
        cur = await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE messages SET is_read=? WHERE id=? AND inbox_id=? AND deleted=0",
                    (1 if is_read else 0, message_id, inbox_id),
                ).rowcount
            )
        )
        return bool(cur)

    async def soft_delete(self, inbox_id: str, message_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "SELECT thread_id FROM messages WHERE id=? AND inbox_id=? AND deleted=0",
                (message_id, inbox_id),
            ).fetchone()
            if row is None:
                return False
            c.execute("UPDATE messages SET deleted=1 WHERE id=?", (message_id,))
            c.execute(
                "UPDATE threads SET message_count=MAX(message_count-1, 0), updated_at=? WHERE id=?",
                (utc_now_iso(), row["thread_id"]),
            )
            return True

        return await self._db.write(run)

    async def get_raw(self, inbox_id: str, message_id: str) -> bytes | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT r.raw, r.tail, m.plain_body FROM messages m JOIN raw_sources r ON r.id=m.raw_id"
                " WHERE m.id=? AND m.inbox_id=? AND m.deleted=0 AND m.direction='inbound'",
                (message_id, inbox_id),
            ).fetchone()
        )
        return join_source(bytes(row["raw"]), row["tail"], row["plain_body"]) if row else None

    async def list_attachments(self, inbox_id: str, message_id: str) -> list[Row] | None:
        def run(c: sqlite3.Connection) -> list[Row] | None:
            row = c.execute(
                "SELECT seq FROM messages WHERE id=? AND inbox_id=? AND deleted=0", (message_id, inbox_id)
            ).fetchone()
            return _attachment_rows(c, row["seq"]) if row else None

        return await self._db.read(run)

    async def get_attachment(self, inbox_id: str, message_id: str, attachment_id: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(
                c.execute(
                    "SELECT a.* FROM attachments a JOIN messages m ON m.seq=a.message_seq"
                    " WHERE a.id=? AND m.id=? AND m.inbox_id=? AND m.deleted=0",
                    (attachment_id, message_id, inbox_id),
                ).fetchone()
            )
        )

    async def attachment_blobs(self, inbox_id: str, message_id: str) -> list[tuple[str, str, bytes]]:
        """(filename, content type, bytes) of every attachment of a message (forwards re-attach them)."""
        return await self._db.read(
            lambda c: [
                (r["filename"], r["content_type"], bytes(r["data"]))
                for r in c.execute(
                    "SELECT a.filename, a.content_type, a.data FROM attachments a JOIN messages m"
                    " ON m.seq=a.message_seq WHERE m.id=? AND m.inbox_id=? ORDER BY a.rowid",
                    (message_id, inbox_id),
                )
            ]
        )

    async def list_threads(self, inbox_id: str, *, limit: int = 20, offset: int = 0) -> list[Row]:
        return await self._db.read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT * FROM threads WHERE inbox_id=? AND message_count>0"
                    " ORDER BY last_message_at DESC LIMIT ? OFFSET ?",
                    (inbox_id, limit, offset),
                )
            ]
        )

    async def get_thread(
        self, inbox_id: str, thread_id: str, *, limit: int | None = None, offset: int = 0
    ) -> Row | None:
        """A thread with its messages oldest first; `limit`/`offset` page them (a thread can hold thousands)."""

        def run(c: sqlite3.Connection) -> Row | None:
            row = row_or_none(
                c.execute("SELECT * FROM threads WHERE id=? AND inbox_id=?", (thread_id, inbox_id)).fetchone()
            )
            if row is not None:
                row["messages"] = [
                    dict(r)
                    for r in c.execute(
                        "SELECT * FROM messages WHERE thread_id=? AND deleted=0 ORDER BY at, seq LIMIT ? OFFSET ?",
                        (thread_id, -1 if limit is None else limit, offset),
                    )
                ]
            return row

        return await self._db.read(run)

    # ------------------------------------------------------------ correspondents

    async def has_correspondent(self, inbox_id: str, address: str) -> bool:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT 1 FROM correspondents WHERE inbox_id=? AND address=?", (inbox_id, address.lower())
            ).fetchone()
        )
        return row is not None

    # ------------------------------------------------------------ drafts

    async def create_draft(self, inbox_id: str, fields: Row) -> Row:
        now = utc_now_iso()
        row = {
            "id": new_id(),
            "inbox_id": inbox_id,
            "created_at": now,
            "updated_at": now,
            **_draft_columns(fields),
        }
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO drafts (id, inbox_id, to_json, cc_json, bcc_json, subject, plain_body, html_body,"
                " reply_to_message_id, created_at, updated_at) VALUES (:id, :inbox_id, :to_json, :cc_json,"
                " :bcc_json, :subject, :plain_body, :html_body, :reply_to_message_id, :created_at, :updated_at)",
                row,
            )
        )
        return row

    async def get_draft(self, inbox_id: str, draft_id: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(
                c.execute("SELECT * FROM drafts WHERE id=? AND inbox_id=?", (draft_id, inbox_id)).fetchone()
            )
        )

    async def list_drafts(self, inbox_id: str, *, limit: int = 100, offset: int = 0) -> list[Row]:
        return await self._db.read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT * FROM drafts WHERE inbox_id=? ORDER BY updated_at DESC LIMIT ? OFFSET ?",
                    (inbox_id, limit, offset),
                )
            ]
        )

    async def update_draft(self, inbox_id: str, draft_id: str, fields: Row) -> bool:
        columns = _draft_columns(fields, partial=True)
        columns["updated_at"] = utc_now_iso()
        assignments = ", ".join(f"{k}=:{k}" for k in columns)

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                f"UPDATE drafts SET {assignments} WHERE id=:draft_id AND inbox_id=:inbox_id",
                {**columns, "draft_id": draft_id, "inbox_id": inbox_id},
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def delete_draft(self, inbox_id: str, draft_id: str) -> bool:
        return await self._db.write(
            lambda c: (
                c.execute("DELETE FROM drafts WHERE id=? AND inbox_id=?", (draft_id, inbox_id)).rowcount > 0
            )
        )


# ---------------------------------------------------------------- writer-thread functions


def _fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must match (quoted, so no syntax injection)."""
    words = [w.replace('"', '""') for w in text.split() if w.strip('"')]
    return " AND ".join(f'"{w}"' for w in words[:20])


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _attachment_rows(c: sqlite3.Connection, seq: int) -> list[Row]:
    return [
        dict(r)
        for r in c.execute(
            "SELECT id, filename, content_type, size, content_id FROM attachments WHERE message_seq=? ORDER BY rowid",
            (seq,),
        )
    ]


def _draft_columns(fields: Row, *, partial: bool = False) -> Row:
    mapping = {"to": "to_json", "cc": "cc_json", "bcc": "bcc_json"}
    out: Row = {}
    for key in ("to", "cc", "bcc"):
        if key in fields or not partial:
            out[mapping[key]] = json.dumps(list(fields.get(key) or []))
    for key in ("subject", "plain_body", "html_body", "reply_to_message_id"):
        if key in fields or not partial:
            out[key] = fields.get(key)
    return out


def _insert_message(c: sqlite3.Connection, row: Row) -> int:
    columns = [k for k in row if k != "seq"]
    cur = c.execute(
        f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join(':' + k for k in columns)})",
        row,
    )
    seq = int(cur.lastrowid or 0)
    # External content (schema version 5): the index takes exactly what its view will read back.
    c.execute(
        "INSERT INTO message_fts (rowid, subject, sender, body)"
        " SELECT seq, subject, sender, body FROM message_fts_source WHERE seq=?",
        (seq,),
    )
    return seq


def _new_thread(
    c: sqlite3.Connection, inbox_id: str, subject: str | None, now: str, *, message_count: int = 0
) -> str:
    thread_id = new_id()
    c.execute(
        "INSERT INTO threads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (thread_id, inbox_id, subject, normalize_subject(subject), message_count, now, now, now),
    )
    return thread_id


def _touch_thread(c: sqlite3.Connection, thread_id: str, now: str) -> None:
    c.execute(
        "UPDATE threads SET message_count=message_count+1, last_message_at=?, updated_at=? WHERE id=?",
        (now, now, thread_id),
    )


def _find_thread(c: sqlite3.Connection, inbox_id: str, parsed: ParsedMessage, now: str) -> str | None:
    """By In-Reply-To/References first, then by normalised subject within a recent window."""
    ids = ([parsed.in_reply_to] if parsed.in_reply_to else []) + list(reversed(parsed.references))
    for ref in ids[:50]:
        row = c.execute(
            "SELECT thread_id FROM messages WHERE inbox_id=? AND message_id_hdr=? LIMIT 1", (inbox_id, ref)
        ).fetchone()
        if row is not None:
            return str(row["thread_id"])
    norm = normalize_subject(parsed.subject)
    if not norm:
        return None
    since = iso_utc(datetime.now(UTC) - THREAD_SUBJECT_WINDOW)
    row = c.execute(
        "SELECT id FROM threads WHERE inbox_id=? AND subject_norm=? AND last_message_at>?"
        " ORDER BY last_message_at DESC LIMIT 1",
        (inbox_id, norm, since),
    ).fetchone()
    return str(row["id"]) if row else None


def _parse_and_digest(raw: RawMessage) -> tuple[ParsedMessage, str]:
    digest = hashlib.sha256()
    for chunk in raw_chunks(raw):
        digest.update(chunk)
    return parse_message(raw), digest.hexdigest()


def _received_before(c: sqlite3.Connection, inbox: InboxRecord, digest: str, hdr: str, since: float) -> InboundCopy | None:
    row = c.execute(
        "SELECT message_id FROM inbound_digests WHERE inbox_id=? AND digest=? AND message_id_hdr=? AND received_at>?",
        (inbox.id, digest, hdr, since),
    ).fetchone()
    if row is None:
        return None
    stored = row_or_none(c.execute("SELECT * FROM messages WHERE id=?", (row[0],)).fetchone())
    return InboundCopy(inbox, stored or {"id": row[0], "inbox_id": inbox.id}, None, duplicate=True)


def _insert_blob(
    c: sqlite3.Connection, table: str, column: str, sql: str, args: tuple[Any, ...], data: RawMessage
) -> int:
    """Run an INSERT into `table` whose `$BLOB` is `data`, for `column`; its rowid.

    A big blob goes in as `zeroblob(n)` and is then written in place, piece by piece: bound as a
    parameter, SQLite would copy it whole (and again into the record) while the caller holds it.
    """
    if len(data) <= BLOB_IN_PIECES_BYTES and not isinstance(data, SpooledMessage):
        return int(c.execute(sql.replace("$BLOB", "?"), (*args, data)).lastrowid or 0)
    rowid = int(c.execute(sql.replace("$BLOB", "zeroblob(?)"), (*args, len(data))).lastrowid or 0)
    with c.blobopen(table, column, rowid) as blob:
        for chunk in raw_chunks(data):
            blob.write(chunk)
    return rowid


def _insert_raw_source(c: sqlite3.Connection, raw: RawMessage, plain_body: str | None) -> int:
    """The raw source's row: without its body when that is the plain body (sources.py); a large
    message spooled by SMTP is stored whole, written in pieces (it is mostly attachments anyway)."""
    if isinstance(raw, SpooledMessage):
        return _insert_blob(c, "raw_sources", "raw", "INSERT INTO raw_sources (raw) VALUES ($BLOB)", (), raw)
    stored, tail = split_source(raw, plain_body)  # the body is not stored twice
    return _insert_blob(c, "raw_sources", "raw", "INSERT INTO raw_sources (tail, raw) VALUES (?, $BLOB)", (tail,), stored)


def _store_inbound(
    c: sqlite3.Connection,
    raw: RawMessage,
    parsed: ParsedMessage,
    digest: str,
    targets: Sequence[InboxRecord],
    outbox: OutboxBuilder | None,
    look_up_webhooks: bool,
    tags: dict[str, str | None] | None = None,
) -> list[InboundCopy]:
    now = utc_now_iso()
    epoch = time.time()
    hdr = parsed.message_id or ""
    raw_id: int | None = None
    sender = parsed.from_address or ""
    copies: list[InboundCopy] = []
    for inbox in targets:
        # Routed before this transaction: an inbox deleted since (its owner, the expiry sweep) gets no copy.
        if c.execute("SELECT 1 FROM inboxes WHERE id=?", (inbox.id,)).fetchone() is None:
            continue
        tag = (tags or {}).get(inbox.id)
        # A retry repeats its envelope: the same bytes to another +tag of the inbox are a new delivery.
        key = digest if tag is None else f"{digest}+{tag.lower()}"
        # Only a mail with a Message-ID can be told from a new one: the same bytes without one are
        # an app sending one fixed notice twice far more often than a retrying server (which adds one).
        if hdr and (seen := _received_before(c, inbox, key, hdr, epoch - DEDUP_WINDOW_SECONDS)) is not None:
            copies.append(seen)
            continue
        if raw_id is None:
            raw_id = _insert_raw_source(c, raw, parsed.plain_body)
        found = _find_thread(c, inbox.id, parsed, now)
        # A new thread starts with this message counted and its subject known: two statements fewer.
        thread_id = found or _new_thread(c, inbox.id, parsed.subject, now, message_count=1)
        # headers_json stays empty: the raw source has them (schema version 5)
        row = {
            "id": new_id(), "inbox_id": inbox.id, "thread_id": thread_id, "direction": "inbound",
            "status": "received", "message_id_hdr": parsed.message_id, "in_reply_to": parsed.in_reply_to,
            "references_json": json.dumps(parsed.references), "from_address": parsed.from_address,
            "from_name": parsed.from_name, "to_json": json.dumps(parsed.to), "cc_json": json.dumps(parsed.cc),
            "bcc_json": "[]", "subject": parsed.subject, "plain_body": parsed.plain_body,
            "html_body": parsed.html_body, "headers_json": None, "is_read": 0, "deleted": 0,
            "has_attachments": 1 if parsed.attachments else 0, "raw_id": raw_id, "at": now,
            "sent_at": parsed.date, "received_at": now, "created_at": now,
            "tag": tag,
        }  # fmt: skip
        seq = _insert_message(c, row)
        for att in parsed.attachments:
            _insert_blob(
                c, "attachments", "data", "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, $BLOB)",
                (new_id(), seq, att.filename, att.content_type, len(att.data), att.content_id), att.data,
            )  # fmt: skip
        thread_subject = parsed.subject
        if found:
            _touch_thread(c, thread_id, now)
            thread_subject = c.execute("SELECT subject FROM threads WHERE id=?", (thread_id,)).fetchone()[0]
        if sender:
            c.execute("INSERT OR IGNORE INTO correspondents VALUES (?, ?)", (inbox.id, sender.lower()))
        if hdr:
            c.execute(
                "INSERT OR REPLACE INTO inbound_digests VALUES (?, ?, ?, ?, ?)",
                (inbox.id, key, hdr, row["id"], epoch),
            )
        copy = InboundCopy(inbox, row, thread_subject)
        if outbox is not None:  # called for every copy (the caller builds its event); rows only for webhooks
            webhooks = (
                active_webhooks_for_inbox(c, inbox.tenant_id, inbox.workspace_id, inbox.id) if look_up_webhooks else []
            )
            insert_outbox_rows(c, outbox(copy, webhooks), epoch)
        copies.append(copy)
    crash_point("ingest.before_commit")
    return copies


def prune_inbound_digests(c: sqlite3.Connection, now: float | None = None) -> None:
    """Forget digests older than the dedup window (at store open)."""
    c.execute("DELETE FROM inbound_digests WHERE received_at < ?", ((now or time.time()) - DEDUP_WINDOW_SECONDS,))


def delete_inbox_rows(c: sqlite3.Connection, inbox_id: str) -> None:
    """Every message of the inbox (with attachments, full text, send states), its threads, drafts,
    correspondents and idempotency records."""
    seqs = "SELECT seq FROM messages WHERE inbox_id=?"
    c.execute(f"DELETE FROM attachments WHERE message_seq IN ({seqs})", (inbox_id,))
    c.execute(f"DELETE FROM message_fts WHERE rowid IN ({seqs})", (inbox_id,))
    c.execute(
        "DELETE FROM outbound_delivery WHERE message_id IN (SELECT id FROM messages WHERE inbox_id=?)", (inbox_id,)
    )
    # raw sources may be shared by copies in other inboxes: drop only unreferenced ones
    raw_ids = [r[0] for r in c.execute("SELECT DISTINCT raw_id FROM messages WHERE inbox_id=? AND raw_id IS NOT NULL",
                                        (inbox_id,))]  # fmt: skip
    c.execute("DELETE FROM messages WHERE inbox_id=?", (inbox_id,))
    for raw_id in raw_ids:
        c.execute("DELETE FROM raw_sources WHERE id=? AND NOT EXISTS (SELECT 1 FROM messages WHERE raw_id=?)",
                  (raw_id, raw_id))  # fmt: skip
    for table in ("threads", "drafts", "correspondents", "idempotency", "inbound_digests"):
        c.execute(f"DELETE FROM {table} WHERE inbox_id=?", (inbox_id,))
