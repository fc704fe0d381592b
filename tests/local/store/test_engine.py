"""The store's engine on real SQLite: group commit, where jobs run, WAL checkpoints, failures, closing."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable

import anyio

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.engine import CHECKPOINT_EVERY_COMMITS
from mam_mcp.local.store.rows import new_id
from tests.local.store.mailbox import mail, store_with_inbox


async def test_concurrent_inserts_are_group_committed(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    raws = [mail(f"m{i}", msg_id=f"<{i}@x>") for i in range(200)]
    results = await asyncio.gather(
        *(
            store.mail.insert_inbound(r, mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"])
            for r in raws
        )
    )
    assert all(len(copies) == 1 for copies in results)
    assert len(await store.mail.list_messages(inbox_id, limit=100, offset=100)) == 100
    # 200 callers at once share a handful of COMMITs (the inbox took 2 before them)
    assert store.db.writer.commits - 2 <= 20
    await store.close()


async def test_jobs_run_on_the_loop_and_offloaded_ones_on_the_commit_thread(
    local_config: LocalConfig,
) -> None:
    store, _ = await store_with_inbox(local_config)
    seen: list[tuple[str, str]] = []

    def job(name: str) -> Callable[[sqlite3.Connection], None]:
        return lambda c: seen.append((name, threading.current_thread().name))

    await store.db.write(job("small"))
    await store.db.write(job("big"), offload=True)  # may touch many rows: never stalls the loop
    await asyncio.gather(store.db.write(job("with-big")), store.db.write(job("big2"), offload=True))
    await store.db.write(job("after"))
    here = threading.current_thread().name
    threads = dict(seen)
    assert threads["small"] == threads["after"] == here  # short jobs never wait to win the GIL back
    assert threads["big"].startswith("mam-local-sqlite-commit")
    assert threads["with-big"] == threads["big2"] == threads["big"]  # a batch runs in one place
    await store.close()


async def test_the_wal_is_checkpointed_and_starts_over_under_sustained_writes(
    local_config: LocalConfig,
) -> None:
    store, _ = await store_with_inbox(local_config)
    wal = local_config.db_path.with_name(local_config.db_path.name + "-wal")
    body = "x" * 5000
    sizes = []

    async def sender(rnd: int, worker: int) -> None:  # one SMTP connection: a message at a time
        for i in range(CHECKPOINT_EVERY_COMMITS):
            await store.mail.insert_inbound(
                mail(f"m{rnd}-{worker}-{i}", msg_id=f"<{rnd}-{worker}-{i}@x>", body=body),
                mail_from="a@x",
                rcpt_tos=["bob@mam.localhost"],
            )

    for rnd in range(4):  # never a quiet moment: 8 senders at once, round after round
        await asyncio.gather(*(sender(rnd, w) for w in range(8)))
        sizes.append(wal.stat().st_size)
    assert store.db.writer.checkpoints >= 4
    # The WAL is reused from the start after checkpoints: it stops growing after the first round
    # instead of holding everything ever written (each round writes as much as the first).
    assert sizes[-1] < sizes[0] * 1.5, sizes
    db_size = local_config.db_path.stat().st_size
    assert db_size > 4 * 8 * CHECKPOINT_EVERY_COMMITS * 5000  # the pages reached the database file
    await store.close()


async def test_close_finishes_what_was_submitted(local_config: LocalConfig) -> None:
    store, _ = await store_with_inbox(local_config)
    tasks = [
        asyncio.create_task(
            store.mail.insert_inbound(
                mail(f"m{i}", msg_id=f"<{i}@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
            )
        )
        for i in range(50)
    ]
    await asyncio.sleep(0)  # every task has submitted its job
    await store.close()
    assert all(len(task.result()) == 1 for task in tasks)
    try:
        await store.mail.insert_inbound(
            mail("late", msg_id="<late@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
        )
    except RuntimeError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a closed store took a write")
    conn = sqlite3.connect(local_config.db_path)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 50
    conn.close()


async def test_a_write_from_another_event_loop_is_refused(local_config: LocalConfig) -> None:
    store, _ = await store_with_inbox(local_config)

    def other_loop() -> BaseException | None:
        try:
            asyncio.run(store.accounts.create_tenant())
        except RuntimeError as exc:
            return exc
        return None

    error = await asyncio.to_thread(other_loop)
    assert error is not None and "event loop" in str(error)
    await store.close()


async def test_failed_job_does_not_sink_the_batch(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    tenant = store.accounts.inbox_record(inbox_id).tenant_id  # type: ignore[union-attr]
    dup = store.accounts.create_inbox(tenant_id=tenant, workspace_id=None, username="bob", domain="mam.localhost",
                             display_name=None)  # fmt: skip
    ok = store.mail.insert_inbound(mail("fine", msg_id="<f@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    results = await asyncio.gather(dup, ok, return_exceptions=True)
    assert type(results[0]).__name__ == "ConflictError"
    assert [r["subject"] for r in await store.mail.list_messages(inbox_id)] == ["fine"]
    await store.close()


async def test_a_job_failing_half_way_leaves_nothing_and_its_batch_mates_are_kept_once(
    local_config: LocalConfig,
) -> None:
    store, inbox_id = await store_with_inbox(local_config)

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO tenants VALUES ('half-written', 'now')")
        raise ValueError("failed after a write")

    def good(n: int) -> Callable[[sqlite3.Connection], int]:
        return lambda c: c.execute("INSERT INTO tenants VALUES (?, 'now')", (f"good-{n}",)).rowcount

    commits_before = store.db.writer.commits
    results = await asyncio.gather(
        store.db.write(good(1)), store.db.write(half_then_fail), store.db.write(good(2)), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 1 and isinstance(results[1], ValueError)
    assert store.db.writer.commits == commits_before + 1  # one batch
    conn = sqlite3.connect(local_config.db_path)
    ids = sorted(r[0] for r in conn.execute("SELECT id FROM tenants WHERE id != ?", (_tenant(store, inbox_id),)))
    conn.close()
    assert ids == ["good-1", "good-2"]
    [alone] = await asyncio.gather(store.db.write(half_then_fail), return_exceptions=True)
    assert isinstance(alone, ValueError)  # a batch of one: rolled back, not run twice
    await store.close()


class _Interrupt(BaseException):
    """Something past Exception, as KeyboardInterrupt is."""


async def test_a_job_that_raises_oddly_fails_its_callers_and_the_writer_goes_on(
    local_config: LocalConfig,
) -> None:
    store, inbox_id = await store_with_inbox(local_config)

    def stop_iteration(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO tenants VALUES ('stop', 'now')")
        raise StopIteration  # a future refuses this exception type

    def interrupt(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO tenants VALUES ('interrupted', 'now')")
        raise _Interrupt

    def good(c: sqlite3.Connection) -> str:
        c.execute("INSERT INTO tenants VALUES ('good', 'now')")
        return "ok"

    with anyio.fail_after(5):
        first = await asyncio.gather(store.db.write(stop_iteration), store.db.write(good), return_exceptions=True)
        assert isinstance(first[0], RuntimeError) and first[1] == "ok"
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: None)  # the loop reports the escaped _Interrupt
        second = await asyncio.gather(store.db.write(interrupt), store.db.write(good), return_exceptions=True)
        assert all(isinstance(r, _Interrupt) for r in second)  # the whole batch was rolled back
        assert await store.db.write(lambda c: c.execute("SELECT count(*) FROM tenants").fetchone()[0]) == 2
        await store.close()
    conn = sqlite3.connect(local_config.db_path)
    assert {r[0] for r in conn.execute("SELECT id FROM tenants")} == {_tenant(store, inbox_id), "good"}
    conn.close()


async def test_another_writer_holding_the_lock_never_stalls_the_event_loop(local_config: LocalConfig) -> None:
    store, _ = await store_with_inbox(local_config)
    other = sqlite3.connect(local_config.db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # e.g. a sqlite3 shell in the middle of an edit
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    with anyio.fail_after(10):
        ticking = asyncio.create_task(ticker())
        write = asyncio.create_task(store.accounts.create_tenant())
        await asyncio.sleep(0.5)
        assert not write.done()  # it waits for the lock...
        other.execute("COMMIT")
        await write  # ...and goes through once it is free
        ticking.cancel()
    other.close()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.3, max(gaps)  # ...without holding the loop meanwhile
    await store.close()


def _tenant(store: EmailStore, inbox_id: str) -> str:
    record = store.accounts.inbox_record(inbox_id)
    assert record is not None
    return record.tenant_id


def test_new_ids_are_unique_uuid7s_that_grow_with_time() -> None:
    first = [new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_id()
    assert len(set(first)) == 1000
    assert {uuid.UUID(i).version for i in first} == {7}
    assert all(later > i for i in first)  # new rows land at the right edge of every id index
