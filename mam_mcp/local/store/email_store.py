"""SQLite storage of the local backend (WAL, one writer thread with group commit).

There is one writing connection. Concurrent callers' writes are batched (group commit): the
jobs queued while the previous batch was committing run together, each in its own SAVEPOINT
inside one transaction, and the batch commits once (`synchronous=FULL`: the commit is on
disk, power loss included, before any caller is told it succeeded). The jobs themselves run
on the event loop's thread, where they are short (a few inserts, no waiting); only the COMMIT
and its fsync go to a dedicated thread. Running the jobs on a thread of their own looked
cleaner but was measured 6x slower under SMTP load: every SQLite statement releases the GIL
and then waits to win it back from the busy event loop (bench/README.md, "SMTP ingest").
Jobs that can touch many rows (deleting an inbox or a workspace) run on the commit thread
instead so they never stall the loop. Reads run on worker threads, each with its own
read-only connection (WAL readers never block the writer).

Attachments and raw sources are BLOBs in SQLite rather than files: they commit atomically
with their message in the same fsync, there are no orphan files after a crash, and the
data dir stays one database file to back up.

Rows are returned as plain dicts of columns; the REST layer shapes the wire JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import anyio

from mam_mcp.local.auth.scope import KeyKind
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.events.model import InboxEvent
from mam_mcp.local.mime.parse import ParsedMessage, normalize_subject, parse_message
from mam_mcp.local.timestamps import utc_now_iso

__all__ = [
    "SCHEMA_VERSION",
    "ConflictError",
    "EmailStore",
    "InboxRecord",
    "KeyRecord",
    "event_message",
    "new_id",
]

T = TypeVar("T")
logger = logging.getLogger(__name__)
Row = dict[str, Any]
SCHEMA_VERSION = 1
THREAD_SUBJECT_WINDOW = timedelta(days=30)  # subject-only threading looks back this far
MAX_BATCH = 512
BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY_COMMITS = 32  # ~1-4 MB of WAL between checkpoints at SMTP-load batch sizes
PARSE_IN_THREAD_BYTES = 256 * 1024  # parse and store bigger messages off the event loop


class ConflictError(Exception):
    """A unique resource (address, username, domain) already exists."""


def new_id() -> str:
    """A UUIDv7 (RFC 9562): millisecond time first, then 74 random bits.

    Ids that grow with time land at the right edge of every index that holds them, so a batch
    of new messages dirties a few pages instead of one random page per index per message (with
    random UUIDv4 ids the commits grew with the database: 8 concurrent 5 KB inserts went from
    ~1,450 to ~1,700 msgs/s over 16,000 messages, commit mean 1.85 -> 1.33 ms).
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = rand >> 68, rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b))


@dataclass(frozen=True, slots=True)
class InboxRecord:
    id: str
    tenant_id: str
    workspace_id: str | None
    email: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    kind: KeyKind
    tenant_id: str
    workspace_id: str | None
    inbox_id: str | None
    key_hash: str


_SCHEMA = """
CREATE TABLE tenants (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE workspaces (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX workspaces_tenant ON workspaces(tenant_id);
CREATE TABLE inboxes (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, workspace_id TEXT, username TEXT NOT NULL,
  domain TEXT NOT NULL, email TEXT NOT NULL COLLATE NOCASE UNIQUE, display_name TEXT,
  metadata TEXT, created_at TEXT NOT NULL);
CREATE INDEX inboxes_owner ON inboxes(tenant_id, workspace_id, created_at);
CREATE TABLE addresses (
  email TEXT PRIMARY KEY COLLATE NOCASE, inbox_id TEXT NOT NULL, is_primary INTEGER NOT NULL,
  created_at TEXT NOT NULL);
CREATE INDEX addresses_inbox ON addresses(inbox_id);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, tenant_id TEXT NOT NULL, workspace_id TEXT,
  inbox_id TEXT, name TEXT, prefix TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE raw_sources (id INTEGER PRIMARY KEY, raw BLOB NOT NULL);
CREATE TABLE threads (
  id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, subject TEXT, subject_norm TEXT,
  message_count INTEGER NOT NULL DEFAULT 0, last_message_at TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX threads_inbox_recent ON threads(inbox_id, last_message_at DESC);
CREATE INDEX threads_subject ON threads(inbox_id, subject_norm, last_message_at DESC);
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, inbox_id TEXT NOT NULL,
  thread_id TEXT NOT NULL, direction TEXT NOT NULL, status TEXT NOT NULL,
  message_id_hdr TEXT, in_reply_to TEXT, references_json TEXT NOT NULL DEFAULT '[]',
  from_address TEXT, from_name TEXT, to_json TEXT NOT NULL DEFAULT '[]',
  cc_json TEXT NOT NULL DEFAULT '[]', bcc_json TEXT NOT NULL DEFAULT '[]', subject TEXT,
  plain_body TEXT, html_body TEXT, headers_json TEXT, is_read INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0, has_attachments INTEGER NOT NULL DEFAULT 0,
  raw_id INTEGER, at TEXT NOT NULL, sent_at TEXT, received_at TEXT, created_at TEXT NOT NULL);
CREATE INDEX messages_list ON messages(inbox_id, deleted, at DESC);
CREATE INDEX messages_direction ON messages(inbox_id, direction, deleted, at DESC);
CREATE INDEX messages_thread ON messages(thread_id, at);
CREATE INDEX messages_rfc_id ON messages(inbox_id, message_id_hdr);
CREATE VIRTUAL TABLE message_fts USING fts5(subject, sender, body, tokenize='unicode61 remove_diacritics 2');
CREATE TABLE attachments (
  id TEXT PRIMARY KEY, message_seq INTEGER NOT NULL, filename TEXT NOT NULL,
  content_type TEXT NOT NULL, size INTEGER NOT NULL, content_id TEXT, data BLOB NOT NULL);
CREATE INDEX attachments_message ON attachments(message_seq);
CREATE TABLE correspondents (
  inbox_id TEXT NOT NULL, address TEXT NOT NULL COLLATE NOCASE, PRIMARY KEY (inbox_id, address))
  WITHOUT ROWID;
CREATE TABLE drafts (
  id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, to_json TEXT NOT NULL, cc_json TEXT NOT NULL,
  bcc_json TEXT NOT NULL, subject TEXT, plain_body TEXT, html_body TEXT,
  reply_to_message_id TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX drafts_inbox ON drafts(inbox_id, updated_at DESC);
CREATE TABLE address_lists (
  id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
  created_at TEXT NOT NULL);
CREATE INDEX address_lists_inbox ON address_lists(inbox_id);
CREATE TABLE list_entries (
  id TEXT PRIMARY KEY, list_id TEXT NOT NULL, email TEXT NOT NULL, display_name TEXT,
  metadata TEXT, created_at TEXT NOT NULL);
CREATE INDEX list_entries_list ON list_entries(list_id, created_at);
CREATE TABLE domains (
  domain TEXT PRIMARY KEY COLLATE NOCASE, tenant_id TEXT NOT NULL, workspace_id TEXT,
  status TEXT NOT NULL, verify_token TEXT NOT NULL, created_at TEXT NOT NULL, verified_at TEXT);
CREATE TABLE webhooks (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, workspace_id TEXT, inbox_id TEXT,
  url TEXT NOT NULL, events_json TEXT NOT NULL, secret TEXT NOT NULL,
  is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL);
CREATE TABLE idempotency (
  inbox_id TEXT NOT NULL, key TEXT NOT NULL, message_id TEXT NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (inbox_id, key)) WITHOUT ROWID;
"""


# Where each outbound send stands with the relay (states in `messages.status`). Added after
# schema 1, so created at open when missing; a row lives until the send is sent, delivered or
# captured, and stays for failed/unknown/partial sends to keep the relay's last answer.
_DELIVERY_SCHEMA = """
CREATE TABLE outbound_delivery (
  message_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT,
  retry_until TEXT, last_reply TEXT) WITHOUT ROWID;
CREATE INDEX outbound_delivery_due ON outbound_delivery(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
"""
FINISHED_OK_STATUSES = ("sent", "delivered", "captured")
# Unread mail per inbox, newest first: unread counts and lists cost the unread rows, not the inbox's size
# (the console counts them at 100k messages). Created at open on databases made before it.
_UNREAD_INDEX = (
    "CREATE INDEX IF NOT EXISTS messages_unread ON messages(inbox_id, at DESC) WHERE is_read=0 AND deleted=0"
)


def _add_delivery_table(conn: sqlite3.Connection) -> None:
    """Create `outbound_delivery` on a database that lacks it (idempotent; one transaction).

    Sends an older version left `pending` had no recorded outcome: they become `unknown`.
    """
    if _has_table(conn, "outbound_delivery"):
        return  # every start after the first: one read, no write
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_table(conn, "outbound_delivery"):  # another process may have been first
            for statement in filter(str.strip, _DELIVERY_SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute("UPDATE messages SET status='unknown' WHERE direction='outbound' AND status='pending'")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    else:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # durable against power loss, not just crashes
    return conn


def _dict(row: sqlite3.Row | None) -> Row | None:
    return dict(row) if row is not None else None


def _fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must match (quoted, so no syntax injection)."""
    words = [w.replace('"', '""') for w in text.split() if w.strip('"')]
    return " AND ".join(f'"{w}"' for w in words[:20])


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    offload: bool  # run on the commit thread (may touch many rows)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration):  # a future refuses it (TypeError): the caller still hears
        future.set_exception(RuntimeError(f"write job raised StopIteration: {value!r}"))
    else:
        future.set_exception(value)


def _run_jobs(conn: sqlite3.Connection, batch: Sequence[_Job]) -> list[tuple[bool, Any]]:
    """BEGIN and run the batch's jobs; one failing job never sinks the others.

    Optimistic: the jobs first run without a SAVEPOINT each (two statements and ~20 us per job,
    FTS5 flushes its pending terms at every RELEASE). If one raises, the transaction is rolled
    back and the batch runs again with a SAVEPOINT per job. Jobs only touch the database (ids
    are drawn inside them), so running one twice leaves nothing behind.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        return [(True, job.fn(conn)) for job in batch]
    except Exception as exc:  # noqa: BLE001 - sorted out below, job by job
        conn.execute("ROLLBACK")
        if len(batch) == 1:
            conn.execute("BEGIN IMMEDIATE")  # an empty transaction, committed like any other
            return [(False, exc)]
    return _run_jobs_isolated(conn, batch)


def _run_jobs_isolated(conn: sqlite3.Connection, batch: Sequence[_Job]) -> list[tuple[bool, Any]]:
    conn.execute("BEGIN IMMEDIATE")
    results: list[tuple[bool, Any]] = []
    for job in batch:
        conn.execute("SAVEPOINT job")
        try:
            value = job.fn(conn)
        except Exception as exc:  # noqa: BLE001 - the job's caller gets it
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            results.append((False, exc))
        else:
            conn.execute("RELEASE job")
            results.append((True, value))
    return results


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(exc)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class _Writer:
    """The one writing connection; jobs queued during a commit share the next one.

    Used from one event loop. At most one batch is in flight: jobs run on the loop (or, when a
    job asks to be offloaded, on the commit thread), then COMMIT runs on the commit thread, then
    every job of the batch is settled with its own result, or with the COMMIT's error.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Job] = []
        self._idle = asyncio.Event()  # clear while a batch is running or committing
        self._idle.set()
        self._since_checkpoint = 0
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpointing = False  # a background pass is running
        self._catch_up = False  # a background pass finished: the writer copies what came since
        self.commits = 0  # batches committed (group commit: far fewer than jobs under load)
        self.checkpoints = 0

    def start(self) -> None:
        """Open the connection; call on the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._pending.clear()  # nothing survives a close that was cancelled half-way
        self._idle = asyncio.Event()  # bound to this loop when first awaited
        self._idle.set()
        self._conn = _connect(self._path, readonly=False)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # done after the callers hear back; see _commit
        self._conn.execute("PRAGMA busy_timeout=0")  # BEGIN runs on the loop: never wait there
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mam-local-sqlite-commit")
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="mam-local-sqlite-checkpoint")

    async def stop(self) -> None:
        """Finish what was submitted, then close."""
        conn, executor = self._conn, self._executor
        if conn is None or executor is None:
            return
        self._conn = None  # refuse new jobs; the batches in flight hold their own reference
        await self._idle.wait()
        loop = asyncio.get_running_loop()
        if self._checkpointer is not None:
            await loop.run_in_executor(self._checkpointer, self._close_checkpoint_connection)
            self._checkpointer.shutdown(wait=True)
            self._checkpointer = None
        await loop.run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)
        self._executor = None

    async def submit(self, fn: Callable[[sqlite3.Connection], T], *, offload: bool = False) -> T:
        if self._conn is None:
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError("the store is used from the event loop that opened it")
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Job(fn, future, offload))
        if self._idle.is_set():
            self._idle.clear()
            loop.call_soon(self._next_batch, self._conn)  # let jobs ready this turn join the batch
        return await future

    def _next_batch(self, conn: sqlite3.Connection) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if any(job.offload for job in batch):
            self._on_thread(
                self._run_and_commit, conn, batch, then=lambda done: self._done(conn, batch, done)
            )
            return
        try:
            results = _run_jobs(conn, batch)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or conn.in_transaction:
                self._fail(conn, batch, exc)
                return
            # Another connection holds the write lock (a sqlite3 shell, a backup): wait for it on
            # the commit thread, never on the loop (busy_timeout is 0 here).
            self._on_thread(
                self._run_and_commit, conn, batch, True, then=lambda done: self._done(conn, batch, done)
            )
            return
        except BaseException as exc:  # BEGIN failed, or a job raised past Exception: none of it stays
            self._fail(conn, batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._on_thread(self._commit, conn, batch, results, then=lambda done: self._done(conn, batch, done))

    def _fail(self, conn: sqlite3.Connection, batch: list[_Job], error: BaseException) -> None:
        failed: list[tuple[bool, Any]] = [(False, error)] * len(batch)
        self._on_thread(self._give_up, conn, batch, failed, then=lambda done: self._done(conn, batch, done))

    def _on_thread(self, fn: Callable[..., Any], *args: Any, then: Callable[[Future[Any]], None]) -> None:
        """Run `fn(*args)` on the commit thread, then `then(future)` on the loop."""
        executor = self._executor
        assert executor is not None
        executor.submit(fn, *args).add_done_callback(lambda done: self._to_loop(then, done))

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """From the commit thread: `fn(*args)` on the loop, next turn.

        Straight from the thread: one loop turn, where an asyncio future wrapping a thread's
        future (run_in_executor) takes two before the batch's callers hear back.
        """
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _run_and_commit(
        self, conn: sqlite3.Connection, batch: list[_Job], patient: bool = False
    ) -> list[tuple[bool, Any]] | None:
        """On the commit thread: the whole batch; `patient` waits for another writer's lock."""
        if patient:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            results = _run_jobs(conn, batch)
        except BaseException:
            _rollback(conn)
            raise
        finally:
            if patient:
                conn.execute("PRAGMA busy_timeout=0")
        return self._commit(conn, batch, results)

    def _give_up(self, conn: sqlite3.Connection, batch: list[_Job], failed: list[tuple[bool, Any]]) -> None:
        _rollback(conn)
        self._to_loop(self._settle_batch, batch, failed)

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Job], results: list[tuple[bool, Any]]
    ) -> list[tuple[bool, Any]] | None:
        """On the commit thread: COMMIT, then the WAL's upkeep when due.

        Returns the results for `_done` to hand out, or None when they were handed out already:
        before the writer itself checkpoints, the callers are told first.

        Checkpoints copy the WAL back into the database so it can start over. SQLite's automatic
        one runs inside the COMMIT that takes the WAL past 1,000 pages, so those callers waited
        for it (~10 ms). Here the bulk of the copying runs on a connection of its own beside the
        writer (PASSIVE: it never blocks the writer or readers); but racing continuous commits it
        never copies everything before the next write begins, so SQLite would never start the
        WAL over (700 MB of WAL after 11,000 messages, each round slower). So once it is done, the
        writer's own connection copies the few frames written since, between two batches, and
        the next transaction starts the WAL from the beginning.
        """
        try:
            conn.execute("COMMIT")
        except BaseException:  # nothing of the batch is durable
            _rollback(conn)
            raise
        self.commits += 1
        self._since_checkpoint += 1
        if self._catch_up:
            self._catch_up = False
            self._to_loop(self._settle_batch, batch, results)
            self._checkpoint(conn)
            return None
        if self._since_checkpoint >= CHECKPOINT_EVERY_COMMITS and not self._checkpointing:
            self._since_checkpoint = 0
            self._checkpointing = True
            assert self._checkpointer is not None
            self._checkpointer.submit(self._background_checkpoint)
        return results

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # the WAL only grows until the next attempt; nothing is lost
            logger.warning("store: WAL checkpoint failed: %s", exc)

    def _background_checkpoint(self) -> None:
        """On the checkpoint thread, with its own connection."""
        try:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = _connect(self._path, readonly=False)
            self._checkpoint(self._checkpoint_conn)
        except Exception as exc:  # noqa: BLE001 - nobody reads this thread's future: say it here
            logger.warning("store: background WAL checkpoint failed: %s", exc)
        finally:
            self._catch_up = True
            self._checkpointing = False

    def _close_checkpoint_connection(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    @staticmethod
    def _settle_batch(batch: list[_Job], results: list[tuple[bool, Any]]) -> None:
        for job, (ok, value) in zip(batch, results, strict=True):
            try:
                _settle(job.future, ok, value)
            except Exception:  # one caller's future must not keep the others waiting
                logger.exception("store: could not hand a write result back")

    def _done(self, conn: sqlite3.Connection, batch: list[_Job], done: Future[Any]) -> None:
        """On the loop, once the commit thread is through with the batch: the next one, or idle."""
        try:
            error = done.exception()
            if error is not None:  # the COMMIT failed: nobody was told anything yet
                self._settle_batch(batch, [(False, error)] * len(batch))
            elif (results := done.result()) is not None:  # None: told already (see _commit)
                self._settle_batch(batch, results)
        finally:
            if self._pending:
                assert self._loop is not None
                self._loop.call_soon(self._next_batch, conn)
            else:
                self._idle.set()


class EmailStore:
    """All persistent state of the local backend."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self._path = str(config.db_path)
        self._writer = _Writer(self._path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._inboxes: dict[str, InboxRecord] = {}
        self._addresses: dict[str, str] = {}  # lower-case address -> inbox id
        self._may_have_webhooks = True  # set properly by open()
        self._open = False

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._open:
            return
        await anyio.to_thread.run_sync(self._open_sync)
        self._writer.start()
        self._open = True

    def _open_sync(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        conn = _connect(self._path, readonly=False)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.executescript("BEGIN;" + _SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"database schema {version} is newer than this mam-mcp ({SCHEMA_VERSION})")
            _add_delivery_table(conn)
            conn.execute(_UNREAD_INDEX)
            for row in conn.execute("SELECT id, tenant_id, workspace_id, email FROM inboxes"):
                self._inboxes[row["id"]] = InboxRecord(
                    row["id"], row["tenant_id"], row["workspace_id"], row["email"]
                )
            for row in conn.execute("SELECT email, inbox_id FROM addresses"):
                self._addresses[row["email"].lower()] = row["inbox_id"]
            self._may_have_webhooks = conn.execute("SELECT 1 FROM webhooks LIMIT 1").fetchone() is not None
        finally:
            conn.close()

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        await self._writer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ plumbing

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open:
            raise RuntimeError("store is closed")
        return await anyio.to_thread.run_sync(lambda: fn(self._reader()))

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, offload: bool = False) -> T:
        """Run `fn` in the next group commit; `offload=True` for jobs that may touch many rows."""
        return await self._writer.submit(fn, offload=offload)

    # ------------------------------------------------------------ tenants, workspaces, keys

    async def create_tenant(self) -> str:
        tenant_id = new_id()
        await self._write(
            lambda c: c.execute("INSERT INTO tenants VALUES (?, ?)", (tenant_id, utc_now_iso()))
        )
        return tenant_id

    async def first_tenant(self) -> str | None:
        row = await self._read(
            lambda c: c.execute("SELECT id FROM tenants ORDER BY created_at LIMIT 1").fetchone()
        )
        return row["id"] if row else None

    async def create_workspace(self, tenant_id: str, name: str) -> Row:
        row = {"id": new_id(), "tenant_id": tenant_id, "name": name, "created_at": utc_now_iso()}
        await self._write(
            lambda c: c.execute("INSERT INTO workspaces VALUES (:id, :tenant_id, :name, :created_at)", row)
        )
        return row

    async def get_workspace(self, workspace_id: str) -> Row | None:
        return await self._read(
            lambda c: _dict(c.execute("SELECT * FROM workspaces WHERE id=?", (workspace_id,)).fetchone())
        )

    async def list_workspaces(self, tenant_id: str, only_id: str | None = None) -> list[Row]:
        sql = (
            "SELECT * FROM workspaces WHERE tenant_id=?"
            + (" AND id=?" if only_id else "")
            + " ORDER BY created_at"
        )
        args: tuple[str, ...] = (tenant_id, only_id) if only_id else (tenant_id,)
        return await self._read(lambda c: [dict(r) for r in c.execute(sql, args)])

    async def delete_workspace(self, workspace_id: str) -> list[str]:
        """Delete a workspace and everything in it; returns the deleted inbox ids."""

        def run(c: sqlite3.Connection) -> list[str]:
            inbox_ids = [
                r["id"] for r in c.execute("SELECT id FROM inboxes WHERE workspace_id=?", (workspace_id,))
            ]
            for inbox_id in inbox_ids:
                _delete_inbox_rows(c, inbox_id)
            c.execute("DELETE FROM api_keys WHERE workspace_id=?", (workspace_id,))
            c.execute("DELETE FROM domains WHERE workspace_id=?", (workspace_id,))
            c.execute("DELETE FROM webhooks WHERE workspace_id=?", (workspace_id,))
            c.execute("DELETE FROM workspaces WHERE id=?", (workspace_id,))
            return inbox_ids

        deleted = await self._write(run, offload=True)
        for inbox_id in deleted:
            self._forget_inbox(inbox_id)
        return deleted

    async def insert_key(
        self,
        *,
        kind: KeyKind,
        tenant_id: str,
        workspace_id: str | None,
        inbox_id: str | None,
        name: str | None,
        prefix: str,
        key_hash: str,
    ) -> Row:
        row = {
            "id": new_id(), "kind": kind, "tenant_id": tenant_id, "workspace_id": workspace_id,
            "inbox_id": inbox_id, "name": name, "prefix": prefix, "key_hash": key_hash,
            "created_at": utc_now_iso(), "revoked_at": None,
        }  # fmt: skip
        await self._write(
            lambda c: c.execute(
                "INSERT INTO api_keys VALUES (:id, :kind, :tenant_id, :workspace_id, :inbox_id, :name, :prefix,"
                " :key_hash, :created_at, :revoked_at)",
                row,
            )
        )
        return row

    async def list_keys(self, *, workspace_id: str | None = None, inbox_id: str | None = None) -> list[Row]:
        column, value = ("workspace_id", workspace_id) if workspace_id else ("inbox_id", inbox_id)
        kind = "wk" if workspace_id else "ak"
        sql = f"SELECT * FROM api_keys WHERE {column}=? AND kind=? ORDER BY created_at"
        return await self._read(lambda c: [dict(r) for r in c.execute(sql, (value, kind))])

    async def get_key(self, key_id: str) -> Row | None:
        return await self._read(
            lambda c: _dict(c.execute("SELECT * FROM api_keys WHERE id=?", (key_id,)).fetchone())
        )

    async def revoke_key(self, key_id: str) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (utc_now_iso(), key_id)
            )
        )

    async def active_keys(self) -> list[KeyRecord]:
        rows = await self._read(
            lambda c: c.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL").fetchall()
        )
        return [_key_record(r) for r in rows]

    def active_keys_sync(self) -> list[KeyRecord]:
        """Active keys read on the calling thread (a composition root built outside a coroutine)."""
        conn = _connect(self._path, readonly=True)
        try:
            return [_key_record(r) for r in conn.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL")]
        finally:
            conn.close()

    # ------------------------------------------------------------ inboxes and addresses

    def inbox_for_address(self, address: str) -> tuple[str, str, str | None] | None:
        """(inbox_id, tenant_id, workspace_id) of the inbox owning an address; in memory (RCPT checks)."""
        inbox_id = self._addresses.get(address.strip().strip("<>").lower())
        record = self._inboxes.get(inbox_id) if inbox_id else None
        return (record.id, record.tenant_id, record.workspace_id) if record else None

    def inbox_record(self, inbox_id: str) -> InboxRecord | None:
        return self._inboxes.get(inbox_id)

    def _forget_inbox(self, inbox_id: str) -> None:
        self._inboxes.pop(inbox_id, None)
        for addr in [a for a, i in self._addresses.items() if i == inbox_id]:
            del self._addresses[addr]

    async def create_inbox(
        self,
        *,
        tenant_id: str,
        workspace_id: str | None,
        username: str,
        domain: str,
        display_name: str | None,
        metadata: dict[str, Any] | None = None,
    ) -> Row:
        now = utc_now_iso()
        email_addr = f"{username}@{domain}"
        inbox_id = new_id()
        row = {
            "id": inbox_id, "tenant_id": tenant_id, "workspace_id": workspace_id, "username": username,
            "domain": domain, "email": email_addr, "display_name": display_name,
            "metadata": json.dumps(metadata) if metadata is not None else None, "created_at": now,
        }  # fmt: skip

        def run(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM addresses WHERE email=?", (email_addr,)).fetchone():
                raise ConflictError(f"address {email_addr} is already in use")
            c.execute(
                "INSERT INTO inboxes VALUES (:id, :tenant_id, :workspace_id, :username, :domain, :email,"
                " :display_name, :metadata, :created_at)",
                row,
            )
            c.execute("INSERT INTO addresses VALUES (?, ?, 1, ?)", (email_addr, row["id"], now))

        await self._write(run)
        self._inboxes[inbox_id] = InboxRecord(inbox_id, tenant_id, workspace_id, email_addr)
        self._addresses[email_addr.lower()] = inbox_id
        return row

    async def get_inbox(self, inbox_id: str) -> Row | None:
        def run(c: sqlite3.Connection) -> Row | None:
            row = _dict(c.execute("SELECT * FROM inboxes WHERE id=?", (inbox_id,)).fetchone())
            if row is not None:
                row["addresses"] = [
                    dict(r)
                    for r in c.execute(
                        "SELECT email, is_primary, created_at FROM addresses WHERE inbox_id=? ORDER BY created_at",
                        (inbox_id,),
                    )
                ]
            return row

        return await self._read(run)

    async def list_inboxes(
        self,
        tenant_id: str,
        *,
        workspace_id: str | None = None,
        inbox_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Row]:
        sql = "SELECT * FROM inboxes WHERE tenant_id=?"
        args: list[Any] = [tenant_id]
        if workspace_id is not None:
            sql += " AND workspace_id=?"
            args.append(workspace_id)
        if inbox_id is not None:
            sql += " AND id=?"
            args.append(inbox_id)
        sql += " ORDER BY created_at DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        return await self._read(lambda c: [dict(r) for r in c.execute(sql, args)])

    async def update_inbox(
        self, inbox_id: str, *, display_name: str | None, metadata: Any, set_meta: bool
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            if display_name is not None:
                c.execute("UPDATE inboxes SET display_name=? WHERE id=?", (display_name, inbox_id))
            if set_meta:
                c.execute("UPDATE inboxes SET metadata=? WHERE id=?", (json.dumps(metadata), inbox_id))

        await self._write(run)

    async def delete_inbox(self, inbox_id: str) -> None:
        await self._write(lambda c: _delete_inbox_rows(c, inbox_id), offload=True)
        self._forget_inbox(inbox_id)

    async def add_address(self, inbox_id: str, address: str, *, primary: bool) -> None:
        def run(c: sqlite3.Connection) -> None:
            owner = c.execute("SELECT inbox_id FROM addresses WHERE email=?", (address,)).fetchone()
            if owner is not None and owner["inbox_id"] != inbox_id:
                raise ConflictError(f"address {address} is already in use")
            if owner is None:
                c.execute("INSERT INTO addresses VALUES (?, ?, 0, ?)", (address, inbox_id, utc_now_iso()))
            if primary:
                c.execute("UPDATE addresses SET is_primary=(email=?) WHERE inbox_id=?", (address, inbox_id))

        await self._write(run)
        self._addresses[address.lower()] = inbox_id

    async def remove_address(self, inbox_id: str, address: str) -> bool:
        """False when the address is not on this inbox. The canonical address is checked by the caller."""

        def run(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "SELECT is_primary FROM addresses WHERE email=? AND inbox_id=?", (address, inbox_id)
            ).fetchone()
            if row is None:
                return False
            c.execute("DELETE FROM addresses WHERE email=?", (address,))
            if row["is_primary"]:  # the canonical address becomes primary again
                c.execute("UPDATE addresses SET is_primary=1 WHERE email=(SELECT email FROM inboxes WHERE id=?)",
                          (inbox_id,))  # fmt: skip
            return True

        removed = await self._write(run)
        if removed:
            self._addresses.pop(address.lower(), None)
        return removed

    async def primary_address(self, inbox_id: str) -> str | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT email FROM addresses WHERE inbox_id=? AND is_primary=1", (inbox_id,)
            ).fetchone()
        )
        return row["email"] if row else None

    async def inbox_addresses(self, inbox_id: str) -> list[str]:
        return await self._read(
            lambda c: [
                r["email"] for r in c.execute("SELECT email FROM addresses WHERE inbox_id=?", (inbox_id,))
            ]
        )

    async def has_correspondent(self, inbox_id: str, address: str) -> bool:
        row = await self._read(
            lambda c: c.execute(
                "SELECT 1 FROM correspondents WHERE inbox_id=? AND address=?", (inbox_id, address.lower())
            ).fetchone()
        )
        return row is not None

    # ------------------------------------------------------------ inbound mail (durable)

    async def insert_inbound(
        self, raw: bytes, *, mail_from: str, rcpt_tos: Sequence[str]
    ) -> list[InboxEvent]:
        """Store one copy per local recipient inbox; returns only after the COMMIT is on disk."""
        targets: list[InboxRecord] = []
        for rcpt in rcpt_tos:
            found = self.inbox_for_address(rcpt)
            record = self._inboxes.get(found[0]) if found else None
            if record is not None and record not in targets:
                targets.append(record)
        if not targets:
            return []
        if len(raw) > PARSE_IN_THREAD_BYTES:
            parsed = await anyio.to_thread.run_sync(parse_message, raw)
        else:
            parsed = parse_message(raw)
        if not parsed.from_address and "@" in mail_from:
            parsed.from_address = mail_from
        # A big message's inserts (blob, attachments, full text) would hold the loop for tens of ms.
        big = len(raw) > PARSE_IN_THREAD_BYTES
        return await self._write(lambda c: _store_inbound(c, raw, parsed, targets), offload=big)

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
            seq = _insert_message(c, row, body_text=plain_body or html_body or "")
            for filename, ctype, data in attachments:
                c.execute(
                    "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, NULL, ?)",
                    (new_id(), seq, filename, ctype, len(data), data),
                )
            _touch_thread(c, tid, now)
            c.execute("INSERT INTO outbound_delivery (message_id) VALUES (?)", (row["id"],))
            if idempotency_key is not None:
                c.execute(
                    "INSERT INTO idempotency VALUES (?, ?, ?, ?)", (inbox_id, idempotency_key, row["id"], now)
                )
            return row

        size = len(raw or b"") + sum(len(data) for _, _, data in attachments)
        return await self._write(run, offload=size > PARSE_IN_THREAD_BYTES)

    # ------------------------------------------------------------ outbound delivery states

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

        return await self._write(run)

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

        await self._write(run)

    async def schedule_retry(self, message_id: str, *, next_attempt_at: str, retry_until: str, reply: str) -> None:
        """Back to `queued`, due again at `next_attempt_at` (the retry worker picks it up)."""

        def run(c: sqlite3.Connection) -> None:
            c.execute("UPDATE messages SET status='queued' WHERE id=?", (message_id,))
            c.execute(
                "UPDATE outbound_delivery SET next_attempt_at=?, retry_until=COALESCE(retry_until, ?),"
                " last_reply=? WHERE message_id=?",
                (next_attempt_at, retry_until, reply, message_id),
            )

        await self._write(run)

    async def delivery(self, message_id: str) -> Row | None:
        """The delivery row of a send (attempts, next_attempt_at, retry_until, last_reply), if it has one."""
        return await self._read(
            lambda c: _dict(c.execute("SELECT * FROM outbound_delivery WHERE message_id=?", (message_id,)).fetchone())
        )

    async def due_deliveries(self, now: str, limit: int = 32) -> list[Row]:
        """Queued sends whose retry is due: the message row with `attempts`, `retry_until`, `last_reply`."""
        return await self._read(
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
        row = await self._read(
            lambda c: c.execute(
                "SELECT MIN(d.next_attempt_at) FROM outbound_delivery d JOIN messages m ON m.id=d.message_id"
                " WHERE d.next_attempt_at IS NOT NULL AND m.status='queued'"
            ).fetchone()
        )
        return str(row[0]) if row and row[0] else None

    async def outbound_raw(self, message_id: str) -> bytes | None:
        """The exact bytes of an outbound message, as first built (a retry sends the same bytes)."""
        row = await self._read(
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

        return await self._write(run)

    async def idempotent_message(self, inbox_id: str, key: str) -> Row | None:
        return await self._read(
            lambda c: _dict(
                c.execute(
                    "SELECT m.* FROM idempotency i JOIN messages m ON m.id=i.message_id"
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
        sql += " ORDER BY f.rowid DESC" if match else " ORDER BY m.at DESC, m.seq DESC"
        sql += " LIMIT ? OFFSET ?"
        args += [limit, offset]
        return await self._read(lambda c: [dict(r) for r in c.execute(sql, args)])

    async def get_message(self, inbox_id: str, message_id: str, *, mark_read: bool = False) -> Row | None:
        if mark_read:
            await self._write(
                lambda c: c.execute(
                    "UPDATE messages SET is_read=1 WHERE id=? AND inbox_id=? AND deleted=0 AND is_read=0",
                    (message_id, inbox_id),
                )
            )

        def run(c: sqlite3.Connection) -> Row | None:
            row = _dict(
                c.execute(
                    "SELECT * FROM messages WHERE id=? AND inbox_id=? AND deleted=0", (message_id, inbox_id)
                ).fetchone()
            )
            if row is not None:
                row["attachments"] = _attachment_rows(c, row["seq"])
            return row

        return await self._read(run)

    async def set_read(self, inbox_id: str, message_id: str, is_read: bool) -> bool:
        cur = await self._write(
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

        return await self._write(run)

    async def get_raw(self, inbox_id: str, message_id: str) -> bytes | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT r.raw FROM messages m JOIN raw_sources r ON r.id=m.raw_id"
                " WHERE m.id=? AND m.inbox_id=? AND m.deleted=0 AND m.direction='inbound'",
                (message_id, inbox_id),
            ).fetchone()
        )
        return bytes(row["raw"]) if row else None

    async def list_attachments(self, inbox_id: str, message_id: str) -> list[Row] | None:
        def run(c: sqlite3.Connection) -> list[Row] | None:
            row = c.execute(
                "SELECT seq FROM messages WHERE id=? AND inbox_id=? AND deleted=0", (message_id, inbox_id)
            ).fetchone()
            return _attachment_rows(c, row["seq"]) if row else None

        return await self._read(run)

    async def get_attachment(self, inbox_id: str, message_id: str, attachment_id: str) -> Row | None:
        return await self._read(
            lambda c: _dict(
                c.execute(
                    "SELECT a.* FROM attachments a JOIN messages m ON m.seq=a.message_seq"
                    " WHERE a.id=? AND m.id=? AND m.inbox_id=? AND m.deleted=0",
                    (attachment_id, message_id, inbox_id),
                ).fetchone()
            )
        )

    async def attachment_blobs(self, inbox_id: str, message_id: str) -> list[tuple[str, str, bytes]]:
        """(filename, content type, bytes) of every attachment of a message (forwards re-attach them)."""
        return await self._read(
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
        return await self._read(
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
            row = _dict(
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

        return await self._read(run)

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
        await self._write(
            lambda c: c.execute(
                "INSERT INTO drafts (id, inbox_id, to_json, cc_json, bcc_json, subject, plain_body, html_body,"
                " reply_to_message_id, created_at, updated_at) VALUES (:id, :inbox_id, :to_json, :cc_json,"
                " :bcc_json, :subject, :plain_body, :html_body, :reply_to_message_id, :created_at, :updated_at)",
                row,
            )
        )
        return row

    async def get_draft(self, inbox_id: str, draft_id: str) -> Row | None:
        return await self._read(
            lambda c: _dict(
                c.execute("SELECT * FROM drafts WHERE id=? AND inbox_id=?", (draft_id, inbox_id)).fetchone()
            )
        )

    async def list_drafts(self, inbox_id: str, *, limit: int = 100, offset: int = 0) -> list[Row]:
        return await self._read(
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

        return await self._write(run)

    async def delete_draft(self, inbox_id: str, draft_id: str) -> bool:
        return await self._write(
            lambda c: (
                c.execute("DELETE FROM drafts WHERE id=? AND inbox_id=?", (draft_id, inbox_id)).rowcount > 0
            )
        )

    # ------------------------------------------------------------ lists

    async def create_list(self, inbox_id: str, name: str, description: str | None) -> Row:
        row = {"id": new_id(), "inbox_id": inbox_id, "name": name, "description": description,
               "created_at": utc_now_iso()}  # fmt: skip
        await self._write(
            lambda c: c.execute(
                "INSERT INTO address_lists VALUES (:id, :inbox_id, :name, :description, :created_at)", row
            )
        )
        return row

    async def list_lists(self, inbox_id: str) -> list[Row]:
        return await self._read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT * FROM address_lists WHERE inbox_id=? ORDER BY created_at", (inbox_id,)
                )
            ]
        )

    async def get_list(self, inbox_id: str, list_id: str) -> Row | None:
        def run(c: sqlite3.Connection) -> Row | None:
            row = _dict(
                c.execute(
                    "SELECT * FROM address_lists WHERE id=? AND inbox_id=?", (list_id, inbox_id)
                ).fetchone()
            )
            if row is not None:
                row["entries"] = [
                    dict(r)
                    for r in c.execute(
                        "SELECT * FROM list_entries WHERE list_id=? ORDER BY created_at", (list_id,)
                    )
                ]
            return row

        return await self._read(run)

    async def delete_list(self, inbox_id: str, list_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("DELETE FROM address_lists WHERE id=? AND inbox_id=?", (list_id, inbox_id))
            if cur.rowcount:
                c.execute("DELETE FROM list_entries WHERE list_id=?", (list_id,))
            return cur.rowcount > 0

        return await self._write(run)

    async def add_list_entry(
        self, list_id: str, email_addr: str, display_name: str | None, metadata: Any
    ) -> Row:
        row = {"id": new_id(), "list_id": list_id, "email": email_addr, "display_name": display_name,
               "metadata": json.dumps(metadata) if metadata is not None else None, "created_at": utc_now_iso()}  # fmt: skip
        await self._write(
            lambda c: c.execute(
                "INSERT INTO list_entries VALUES (:id, :list_id, :email, :display_name, :metadata, :created_at)",
                row,
            )
        )
        return row

    async def remove_list_entry(self, list_id: str, entry_id: str) -> bool:
        return await self._write(
            lambda c: (
                c.execute("DELETE FROM list_entries WHERE id=? AND list_id=?", (entry_id, list_id)).rowcount
                > 0
            )
        )

    # ------------------------------------------------------------ domains

    async def create_domain(
        self, *, tenant_id: str, workspace_id: str | None, domain: str, token: str
    ) -> Row:
        row = {"domain": domain, "tenant_id": tenant_id, "workspace_id": workspace_id, "status": "pending",
               "verify_token": token, "created_at": utc_now_iso(), "verified_at": None}  # fmt: skip

        def run(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM domains WHERE domain=?", (domain,)).fetchone():
                raise ConflictError(f"domain {domain} is already registered")
            c.execute(
                "INSERT INTO domains VALUES (:domain, :tenant_id, :workspace_id, :status, :verify_token,"
                " :created_at, :verified_at)",
                row,
            )

        await self._write(run)
        return row

    async def get_domain(self, domain: str) -> Row | None:
        return await self._read(
            lambda c: _dict(c.execute("SELECT * FROM domains WHERE domain=?", (domain,)).fetchone())
        )

    async def list_domains(self, tenant_id: str, workspace_id: str | None = None) -> list[Row]:
        sql = "SELECT * FROM domains WHERE tenant_id=?" + (" AND workspace_id=?" if workspace_id else "")
        args = (tenant_id, workspace_id) if workspace_id else (tenant_id,)
        return await self._read(lambda c: [dict(r) for r in c.execute(sql + " ORDER BY created_at", args)])

    async def set_domain_status(self, domain: str, status: str) -> None:
        verified_at = utc_now_iso() if status == "verified" else None
        await self._write(
            lambda c: c.execute(
                "UPDATE domains SET status=?, verified_at=COALESCE(?, verified_at) WHERE domain=?",
                (status, verified_at, domain),
            )
        )

    async def delete_domain(self, domain: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM domains WHERE domain=?", (domain,)))

    # ------------------------------------------------------------ webhooks

    async def create_webhook(
        self,
        *,
        tenant_id: str,
        workspace_id: str | None,
        inbox_id: str | None,
        url: str,
        events: Sequence[str],
        secret: str,
    ) -> Row:
        row = {"id": new_id(), "tenant_id": tenant_id, "workspace_id": workspace_id, "inbox_id": inbox_id,
               "url": url, "events_json": json.dumps(list(events)), "secret": secret, "is_active": 1,
               "created_at": utc_now_iso()}  # fmt: skip
        self._may_have_webhooks = (
            True  # before the insert: a stale True costs a query, a stale False a delivery
        )
        await self._write(
            lambda c: c.execute(
                "INSERT INTO webhooks VALUES (:id, :tenant_id, :workspace_id, :inbox_id, :url, :events_json,"
                " :secret, :is_active, :created_at)",
                row,
            )
        )
        return row

    async def get_webhook(self, webhook_id: str) -> Row | None:
        return await self._read(
            lambda c: _dict(c.execute("SELECT * FROM webhooks WHERE id=?", (webhook_id,)).fetchone())
        )

    async def list_webhooks(self, tenant_id: str, workspace_id: str | None = None) -> list[Row]:
        sql = "SELECT * FROM webhooks WHERE tenant_id=?" + (" AND workspace_id=?" if workspace_id else "")
        args = (tenant_id, workspace_id) if workspace_id else (tenant_id,)
        return await self._read(lambda c: [dict(r) for r in c.execute(sql + " ORDER BY created_at", args)])

    async def update_webhook(
        self, webhook_id: str, *, url: str | None, events: Sequence[str] | None, is_active: bool | None
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            if url is not None:
                c.execute("UPDATE webhooks SET url=? WHERE id=?", (url, webhook_id))
            if events is not None:
                c.execute(
                    "UPDATE webhooks SET events_json=? WHERE id=?", (json.dumps(list(events)), webhook_id)
                )
            if is_active is not None:
                c.execute("UPDATE webhooks SET is_active=? WHERE id=?", (1 if is_active else 0, webhook_id))

        await self._write(run)

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM webhooks WHERE id=?", (webhook_id,)))

    def may_have_webhooks(self) -> bool:
        """False only when no webhook was ever stored: every SMTP accept can then skip the lookup."""
        return self._may_have_webhooks

    async def webhooks_for_event(self, tenant_id: str, workspace_id: str | None, inbox_id: str) -> list[Row]:
        """Active webhooks that cover an inbox: tenant-wide, its workspace's, or its own."""
        return await self._read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT * FROM webhooks WHERE tenant_id=? AND is_active=1"
                    " AND (workspace_id IS NULL OR workspace_id IS ?) AND (inbox_id IS NULL OR inbox_id=?)",
                    (tenant_id, workspace_id, inbox_id),
                )
            ]
        )

    # ------------------------------------------------------------ metrics

    async def metrics(
        self,
        tenant_id: str,
        *,
        workspace_id: str | None,
        inbox_id: str | None,
        start: str | None,
        end: str | None,
    ) -> Row:
        scope_sql = "i.tenant_id=?"
        scope_args: list[Any] = [tenant_id]
        if workspace_id:
            scope_sql += " AND i.workspace_id=?"
            scope_args.append(workspace_id)
        if inbox_id:
            scope_sql += " AND i.id=?"
            scope_args.append(inbox_id)
        window_sql, window_args = "", []
        if start:
            window_sql += " AND m.at >= ?"
            window_args.append(start)
        if end:
            window_sql += " AND m.at <= ?"
            window_args.append(end)

        def run(c: sqlite3.Connection) -> Row:
            counts = c.execute(
                "SELECT SUM(m.direction='outbound' AND m.status IN ('sent', 'delivered', 'captured', 'partial')) AS sent,"
                " SUM(m.direction='inbound') AS received, SUM(m.status='bounced') AS bounced"
                f" FROM messages m JOIN inboxes i ON i.id=m.inbox_id WHERE {scope_sql}{window_sql}",
                scope_args + window_args,
            ).fetchone()
            inboxes = c.execute(f"SELECT COUNT(*) FROM inboxes i WHERE {scope_sql}", scope_args).fetchone()[0]
            dom_sql = "SELECT COUNT(*) FROM domains WHERE tenant_id=?" + (
                " AND workspace_id=?" if workspace_id else ""
            )
            dom_args = (tenant_id, workspace_id) if workspace_id else (tenant_id,)
            domains = c.execute(dom_sql, dom_args).fetchone()[0]
            return {
                "sent": counts["sent"] or 0,
                "received": counts["received"] or 0,
                "bounced": counts["bounced"] or 0,
                "inboxes": inboxes,
                "domains": domains,
            }

        return await self._read(run)


# ---------------------------------------------------------------- writer-thread functions


def _key_record(row: sqlite3.Row | Row) -> KeyRecord:
    return KeyRecord(
        row["id"], row["kind"], row["tenant_id"], row["workspace_id"], row["inbox_id"], row["key_hash"]
    )


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


def _delete_inbox_rows(c: sqlite3.Connection, inbox_id: str) -> None:
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
    for table in ("threads", "drafts", "correspondents", "idempotency"):
        c.execute(f"DELETE FROM {table} WHERE inbox_id=?", (inbox_id,))
    c.execute(
        "DELETE FROM list_entries WHERE list_id IN (SELECT id FROM address_lists WHERE inbox_id=?)",
        (inbox_id,),
    )
    c.execute("DELETE FROM address_lists WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM addresses WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM api_keys WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM webhooks WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM inboxes WHERE id=?", (inbox_id,))


def _insert_message(c: sqlite3.Connection, row: Row, *, body_text: str) -> int:
    columns = [k for k in row if k != "seq"]
    cur = c.execute(
        f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join(':' + k for k in columns)})",
        row,
    )
    seq = int(cur.lastrowid or 0)
    sender = f"{row.get('from_name') or ''} {row.get('from_address') or ''}"
    c.execute(
        "INSERT INTO message_fts (rowid, subject, sender, body) VALUES (?, ?, ?, ?)",
        (seq, row.get("subject") or "", sender, body_text[:200_000]),
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
    since = (
        (datetime.now(UTC) - THREAD_SUBJECT_WINDOW).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    row = c.execute(
        "SELECT id FROM threads WHERE inbox_id=? AND subject_norm=? AND last_message_at>?"
        " ORDER BY last_message_at DESC LIMIT 1",
        (inbox_id, norm, since),
    ).fetchone()
    return str(row["id"]) if row else None


def _store_inbound(
    c: sqlite3.Connection, raw: bytes, parsed: ParsedMessage, targets: Sequence[InboxRecord]
) -> list[InboxEvent]:
    now = utc_now_iso()
    raw_id = c.execute("INSERT INTO raw_sources (raw) VALUES (?)", (raw,)).lastrowid
    headers_json = json.dumps(parsed.headers, ensure_ascii=False)
    sender = parsed.from_address or ""
    events: list[InboxEvent] = []
    for inbox in targets:
        found = _find_thread(c, inbox.id, parsed, now)
        # A new thread starts with this message counted and its subject known: two statements fewer.
        thread_id = found or _new_thread(c, inbox.id, parsed.subject, now, message_count=1)
        row = {
            "id": new_id(), "inbox_id": inbox.id, "thread_id": thread_id, "direction": "inbound",
            "status": "received", "message_id_hdr": parsed.message_id, "in_reply_to": parsed.in_reply_to,
            "references_json": json.dumps(parsed.references), "from_address": parsed.from_address,
            "from_name": parsed.from_name, "to_json": json.dumps(parsed.to), "cc_json": json.dumps(parsed.cc),
            "bcc_json": "[]", "subject": parsed.subject, "plain_body": parsed.plain_body,
            "html_body": parsed.html_body, "headers_json": headers_json, "is_read": 0, "deleted": 0,
            "has_attachments": 1 if parsed.attachments else 0, "raw_id": raw_id, "at": now,
            "sent_at": parsed.date, "received_at": now, "created_at": now,
        }  # fmt: skip
        seq = _insert_message(c, row, body_text=parsed.plain_body or parsed.html_body or "")
        for att in parsed.attachments:
            c.execute(
                "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id(), seq, att.filename, att.content_type, len(att.data), att.content_id, att.data),
            )
        thread_subject = parsed.subject
        if found:
            _touch_thread(c, thread_id, now)
            thread_subject = c.execute("SELECT subject FROM threads WHERE id=?", (thread_id,)).fetchone()[0]
        if sender:
            c.execute("INSERT OR IGNORE INTO correspondents VALUES (?, ?)", (inbox.id, sender.lower()))
        events.append(
            InboxEvent(
                event_type="message.received",
                tenant_id=inbox.tenant_id,
                workspace_id=inbox.workspace_id,
                inbox_id=inbox.id,
                message=event_message(row),
                thread={"thread_id": thread_id, "subject": thread_subject},
                has_attachments=bool(parsed.attachments),
                timestamp=now,
            )
        )
    return events


def event_message(row: Row) -> dict[str, Any]:
    """The snake_case `message` object of an event frame, from a message row."""
    name, addr = row.get("from_name"), row.get("from_address") or ""
    to = row.get("to_json")
    return {
        "inbox_id": row["inbox_id"],
        "thread_id": row["thread_id"],
        "message_id": row["id"],
        "from": f"{name} <{addr}>" if name and addr else addr,
        "to": json.loads(to) if isinstance(to, str) else list(to or []),
        "subject": row.get("subject") or "",
        "plain_body": row.get("plain_body"),
        "html_body": row.get("html_body"),
        "timestamp": row.get("at") or utc_now_iso(),
    }
