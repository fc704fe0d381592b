"""The one database of the local backend: SQLite in WAL mode, one writer thread with group commit.

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

The repositories (mail.py, accounts.py, admin.py, send_states.py) hand this engine their jobs:
functions of a connection, run by `Database.write` or `Database.read`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CHECKPOINT_EVERY_COMMITS",
    "MAX_BATCH",
    "Database",
    "GroupCommitWriter",
    "connect",
    "execute_script",
]

T = TypeVar("T")
logger = logging.getLogger("mam_mcp.local.store")
MAX_BATCH = 512
BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY_COMMITS = 32  # ~1-4 MB of WAL between checkpoints at SMTP-load batch sizes


def connect(path: str, *, readonly: bool) -> sqlite3.Connection:
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


class GroupCommitWriter:
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
        self._conn = connect(self._path, readonly=False)
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
                self._checkpoint_conn = connect(self._path, readonly=False)
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


def _make_private(path: Path) -> None:
    """The database file 0600 (created so if missing), and its WAL and shared-memory files if they exist.

    SQLite creates `-wal` and `-shm` with the database file's own mode, so they follow it; every
    mail and webhook secret is in these files.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600))
    if sys.platform == "win32":
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                os.chmod(file, 0o600)
                logger.warning("store: %s was readable by other users (mode %03o): tightened to 600", file.name, mode)
        except FileNotFoundError:
            continue


def execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated statements one by one, inside the caller's transaction (executescript would commit it)."""
    for statement in filter(str.strip, script.split(";")):
        conn.execute(statement)


class Database:
    """The database file: its group-commit writer, a read-only connection per reading thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = GroupCommitWriter(str(path))
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._open = False

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Create the file if needed, run `prepare` (migrations, caches) on a writable connection, start the writer."""
        if self._open:
            return
        await anyio.to_thread.run_sync(self._prepare, prepare)
        self.writer.start()
        self._open = True

    def _prepare(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _make_private(self.path)
        conn = connect(str(self.path), readonly=False)
        try:
            prepare(conn)
        finally:
            conn.close()

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        await self.writer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(str(self.path), readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open:
            raise RuntimeError("store is closed")
        return await anyio.to_thread.run_sync(lambda: fn(self._reader()))

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, offload: bool = False) -> T:
        """Run `fn` in the next group commit; `offload=True` for jobs that may touch many rows."""
        return await self.writer.submit(fn, offload=offload)

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` on a fresh read-only connection, on the calling thread (a composition root built outside a coroutine)."""
        conn = connect(str(self.path), readonly=True)
        try:
            return fn(conn)
        finally:
            conn.close()
