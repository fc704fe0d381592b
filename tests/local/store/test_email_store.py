"""EmailStore on real SQLite: durable inbound storage, group commit, threading, search, addresses."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from mam_mcp.local.auth.keys import KeyRing, hash_key, mint_tenant_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store import email_store as store_module
from mam_mcp.local.store.email_store import (
    CHECKPOINT_EVERY_COMMITS,
    PARSE_IN_THREAD_BYTES,
    SCHEMA_VERSION,
    EmailStore,
    new_id,
)


def _mail(
    subject: str, *, msg_id: str, to: str = "bob@mam.localhost", extra: str = "", body: str = "hello"
) -> bytes:
    return (
        f"From: Alice <alice@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msg_id}\r\n{extra}\r\n{body}"
    ).encode()


async def _store_with_inbox(config: LocalConfig) -> tuple[EmailStore, str]:
    store = EmailStore(config)
    await store.open()
    tenant = await store.create_tenant()
    inbox = await store.create_inbox(
        tenant_id=tenant, workspace_id=None, username="bob", domain="mam.localhost", display_name=None
    )
    return store, inbox["id"]


async def test_insert_inbound_is_committed_and_survives_reopen(local_config: LocalConfig) -> None:
    store, inbox_id = await _store_with_inbox(local_config)
    events = await store.insert_inbound(
        _mail("hi", msg_id="<1@x>"), mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"]
    )
    assert [e.event_type for e in events] == ["message.received"]
    # a separate connection sees the row as soon as insert_inbound returned: it is committed
    conn = sqlite3.connect(local_config.db_path)
    assert conn.execute("SELECT subject FROM messages").fetchall() == [("hi",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    await store.close()
    reopened = EmailStore(local_config)
    await reopened.open()
    assert reopened.inbox_for_address("BOB@mam.localhost") == (inbox_id, events[0].tenant_id, None)
    rows = await reopened.list_messages(inbox_id)
    assert [r["subject"] for r in rows] == ["hi"]
    assert await reopened.get_raw(inbox_id, rows[0]["id"]) == _mail("hi", msg_id="<1@x>")
    await reopened.close()


async def test_concurrent_inserts_are_group_committed(local_config: LocalConfig) -> None:
    store, inbox_id = await _store_with_inbox(local_config)
    raws = [_mail(f"m{i}", msg_id=f"<{i}@x>") for i in range(200)]
    results = await asyncio.gather(
        *(
            store.insert_inbound(r, mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"])
            for r in raws
        )
    )
    assert all(len(events) == 1 for events in results)
    assert len(await store.list_messages(inbox_id, limit=100, offset=100)) == 100
    # 200 callers at once share a handful of COMMITs (the inbox took 2 before them)
    assert store._writer.commits - 2 <= 20
    await store.close()


async def test_jobs_run_on_the_loop_and_offloaded_ones_on_the_commit_thread(
    local_config: LocalConfig,
) -> None:
    store, _ = await _store_with_inbox(local_config)
    seen: list[tuple[str, str]] = []

    def job(name: str) -> Callable[[sqlite3.Connection], None]:
        return lambda c: seen.append((name, threading.current_thread().name))

    await store._write(job("small"))
    await store._write(job("big"), offload=True)  # may touch many rows: never stalls the loop
    await asyncio.gather(store._write(job("with-big")), store._write(job("big2"), offload=True))
    await store._write(job("after"))
    here = threading.current_thread().name
    threads = dict(seen)
    assert threads["small"] == threads["after"] == here  # short jobs never wait to win the GIL back
    assert threads["big"].startswith("mam-local-sqlite-commit")
    assert threads["with-big"] == threads["big2"] == threads["big"]  # a batch runs in one place
    await store.close()


async def test_the_wal_is_checkpointed_and_starts_over_under_sustained_writes(
    local_config: LocalConfig,
) -> None:
    store, _ = await _store_with_inbox(local_config)
    wal = local_config.db_path.with_name(local_config.db_path.name + "-wal")
    body = "x" * 5000
    sizes = []

    async def sender(rnd: int, worker: int) -> None:  # one SMTP connection: a message at a time
        for i in range(CHECKPOINT_EVERY_COMMITS):
            await store.insert_inbound(
                _mail(f"m{rnd}-{worker}-{i}", msg_id=f"<{rnd}-{worker}-{i}@x>", body=body),
                mail_from="a@x",
                rcpt_tos=["bob@mam.localhost"],
            )

    for rnd in range(4):  # never a quiet moment: 8 senders at once, round after round
        await asyncio.gather(*(sender(rnd, w) for w in range(8)))
        sizes.append(wal.stat().st_size)
    assert store._writer.checkpoints >= 4
    # The WAL is reused from the start after checkpoints: it stops growing after the first round
    # instead of holding everything ever written (each round writes as much as the first).
    assert sizes[-1] < sizes[0] * 1.5, sizes
    db_size = local_config.db_path.stat().st_size
    assert db_size > 4 * 8 * CHECKPOINT_EVERY_COMMITS * 5000  # the pages reached the database file
    await store.close()


async def test_close_finishes_what_was_submitted(local_config: LocalConfig) -> None:
    store, _ = await _store_with_inbox(local_config)
    tasks = [
        asyncio.create_task(
            store.insert_inbound(
                _mail(f"m{i}", msg_id=f"<{i}@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
            )
        )
        for i in range(50)
    ]
    await asyncio.sleep(0)  # every task has submitted its job
    await store.close()
    assert all(len(task.result()) == 1 for task in tasks)
    try:
        await store.insert_inbound(
            _mail("late", msg_id="<late@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
        )
    except RuntimeError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a closed store took a write")
    conn = sqlite3.connect(local_config.db_path)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 50
    conn.close()


async def test_a_write_from_another_event_loop_is_refused(local_config: LocalConfig) -> None:
    store, _ = await _store_with_inbox(local_config)

    def other_loop() -> BaseException | None:
        try:
            asyncio.run(store.create_tenant())
        except RuntimeError as exc:
            return exc
        return None

    error = await asyncio.to_thread(other_loop)
    assert error is not None and "event loop" in str(error)
    await store.close()


async def test_one_copy_per_local_inbox_with_aliases_case_insensitive(local_config: LocalConfig) -> None:
    store, bob = await _store_with_inbox(local_config)
    tenant = store.inbox_record(bob).tenant_id  # type: ignore[union-attr]
    carol = (await store.create_inbox(
        tenant_id=tenant, workspace_id=None, username="carol", domain="mam.localhost", display_name=None
    ))["id"]  # fmt: skip
    await store.add_address(carol, "sales@mam.localhost", primary=False)
    events = await store.insert_inbound(
        _mail("team", msg_id="<t@x>"),
        mail_from="alice@example.com",
        rcpt_tos=["Bob@MAM.localhost", "bob@mam.localhost", "SALES@mam.localhost", "nobody@mam.localhost"],
    )
    assert sorted(e.inbox_id for e in events) == sorted([bob, carol])
    assert store.inbox_for_address("<Sales@Mam.Localhost>") is not None
    assert store.inbox_for_address("nobody@mam.localhost") is None
    await store.close()


async def test_threading_by_references_then_subject(local_config: LocalConfig) -> None:
    store, inbox_id = await _store_with_inbox(local_config)
    first = await store.insert_inbound(
        _mail("Plan", msg_id="<a@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
    )
    by_ref = await store.insert_inbound(
        _mail("Totally different", msg_id="<b@x>", extra="In-Reply-To: <a@x>\r\n"),
        mail_from="a@x", rcpt_tos=["bob@mam.localhost"],
    )  # fmt: skip
    by_subject = await store.insert_inbound(_mail("AW: Re: plan", msg_id="<c@x>"), mail_from="a@x",
                                            rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    other = await store.insert_inbound(
        _mail("Other", msg_id="<d@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
    )
    thread = first[0].thread["thread_id"]
    assert by_ref[0].thread["thread_id"] == thread
    assert by_subject[0].thread["thread_id"] == thread
    assert other[0].thread["thread_id"] != thread
    detail = await store.get_thread(inbox_id, thread)
    assert detail is not None and detail["message_count"] == 3
    assert [m["message_id_hdr"] for m in detail["messages"]] == ["<a@x>", "<b@x>", "<c@x>"]
    # the thread keeps its first subject; each event names it
    assert [e[0].thread["subject"] for e in (first, by_ref, by_subject, other)] == ["Plan"] * 3 + ["Other"]
    alone = await store.get_thread(inbox_id, other[0].thread["thread_id"])
    assert alone is not None and alone["message_count"] == 1 and alone["subject"] == "Other"
    await store.close()


async def test_filters_and_full_text_search(local_config: LocalConfig) -> None:
    store, inbox_id = await _store_with_inbox(local_config)
    await store.insert_inbound(_mail("Your code", msg_id="<1@x>", body="code 483921 inside"), mail_from="a@x",
                               rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    await store.insert_inbound(_mail("Newsletter", msg_id="<2@x>", body="nothing here"), mail_from="a@x",
                               rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    found = await store.list_messages(inbox_id, q="483921")
    assert [r["subject"] for r in found] == ["Your code"]
    assert [
        r["subject"] for r in await store.list_messages(inbox_id, q='" OR *')
    ] == []  # syntax is quoted away
    assert [r["subject"] for r in await store.list_messages(inbox_id, subject_contains="news")] == [
        "Newsletter"
    ]
    assert len(await store.list_messages(inbox_id, from_contains="alice")) == 2
    assert len(await store.list_messages(inbox_id, from_contains="%")) == 0
    newest = (await store.list_messages(inbox_id))[0]
    assert await store.list_messages(inbox_id, after=newest["at"]) == []
    await store.set_read(inbox_id, newest["id"], True)
    assert [r["subject"] for r in await store.list_messages(inbox_id, unread=True)] != [newest["subject"]]
    assert await store.soft_delete(inbox_id, newest["id"])
    assert len(await store.list_messages(inbox_id)) == 1
    await store.close()


async def test_failed_job_does_not_sink_the_batch(local_config: LocalConfig) -> None:
    store, inbox_id = await _store_with_inbox(local_config)
    tenant = store.inbox_record(inbox_id).tenant_id  # type: ignore[union-attr]
    dup = store.create_inbox(tenant_id=tenant, workspace_id=None, username="bob", domain="mam.localhost",
                             display_name=None)  # fmt: skip
    ok = store.insert_inbound(_mail("fine", msg_id="<f@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    results = await asyncio.gather(dup, ok, return_exceptions=True)
    assert type(results[0]).__name__ == "ConflictError"
    assert [r["subject"] for r in await store.list_messages(inbox_id)] == ["fine"]
    await store.close()


async def test_a_job_failing_half_way_leaves_nothing_and_its_batch_mates_are_kept_once(
    local_config: LocalConfig,
) -> None:
    store, _ = await _store_with_inbox(local_config)

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO tenants VALUES ('half-written', 'now')")
        raise ValueError("failed after a write")

    def good(n: int) -> Callable[[sqlite3.Connection], int]:
        return lambda c: c.execute("INSERT INTO tenants VALUES (?, 'now')", (f"good-{n}",)).rowcount

    commits_before = store._writer.commits
    results = await asyncio.gather(
        store._write(good(1)), store._write(half_then_fail), store._write(good(2)), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 1 and isinstance(results[1], ValueError)
    assert store._writer.commits == commits_before + 1  # one batch
    conn = sqlite3.connect(local_config.db_path)
    ids = sorted(r[0] for r in conn.execute("SELECT id FROM tenants WHERE id != ?", (_tenant(store),)))
    conn.close()
    assert ids == ["good-1", "good-2"]
    [alone] = await asyncio.gather(store._write(half_then_fail), return_exceptions=True)
    assert isinstance(alone, ValueError)  # a batch of one: rolled back, not run twice
    await store.close()


class _Interrupt(BaseException):
    """Something past Exception, as KeyboardInterrupt is."""


async def test_a_job_that_raises_oddly_fails_its_callers_and_the_writer_goes_on(
    local_config: LocalConfig,
) -> None:
    store, _ = await _store_with_inbox(local_config)

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
        first = await asyncio.gather(store._write(stop_iteration), store._write(good), return_exceptions=True)
        assert isinstance(first[0], RuntimeError) and first[1] == "ok"
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: None)  # the loop reports the escaped _Interrupt
        second = await asyncio.gather(store._write(interrupt), store._write(good), return_exceptions=True)
        assert all(isinstance(r, _Interrupt) for r in second)  # the whole batch was rolled back
        assert await store._write(lambda c: c.execute("SELECT count(*) FROM tenants").fetchone()[0]) == 2
        await store.close()
    conn = sqlite3.connect(local_config.db_path)
    assert {r[0] for r in conn.execute("SELECT id FROM tenants")} == {_tenant(store), "good"}
    conn.close()


async def test_another_writer_holding_the_lock_never_stalls_the_event_loop(local_config: LocalConfig) -> None:
    store, _ = await _store_with_inbox(local_config)
    other = sqlite3.connect(local_config.db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # e.g. a sqlite3 shell in the middle of an edit
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    with anyio.fail_after(10):
        ticking = asyncio.create_task(ticker())
        write = asyncio.create_task(store.create_tenant())
        await asyncio.sleep(0.5)
        assert not write.done()  # it waits for the lock...
        other.execute("COMMIT")
        await write  # ...and goes through once it is free
        ticking.cancel()
    other.close()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.3, max(gaps)  # ...without holding the loop meanwhile
    await store.close()


async def test_big_messages_are_stored_off_the_event_loop(
    local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = await _store_with_inbox(local_config)
    threads: list[str] = []
    real_store_inbound = store_module._store_inbound

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_store_inbound(*args)

    monkeypatch.setattr(store_module, "_store_inbound", spy)
    small = _mail("small", msg_id="<s@x>")
    big = _mail("big", msg_id="<b@x>", body="y" * (PARSE_IN_THREAD_BYTES + 1))
    for raw in (small, big):
        await store.insert_inbound(raw, mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    assert threads[0] == threading.current_thread().name
    assert threads[1].startswith("mam-local-sqlite-commit")
    await store.close()


def _tenant(store: EmailStore) -> str:
    [record] = [r for r in store._inboxes.values()]
    return record.tenant_id


def test_new_ids_are_unique_uuid7s_that_grow_with_time() -> None:
    first = [new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_id()
    assert len(set(first)) == 1000
    assert {uuid.UUID(i).version for i in first} == {7}
    assert all(later > i for i in first)  # new rows land at the right edge of every id index


async def test_keys_are_stored_hashed_and_scoped(local_config: LocalConfig) -> None:
    store = EmailStore(local_config)
    await store.open()
    first = await mint_tenant_key(store)
    second = await mint_tenant_key(store)  # a lost key file: same tenant, new key
    ring = KeyRing(store)
    scope_a, scope_b = ring.authenticate(first), ring.authenticate(second)
    assert scope_a is not None and scope_b is not None and scope_a.kind == "tk"
    assert scope_a.tenant_id == scope_b.tenant_id
    conn = sqlite3.connect(local_config.db_path)
    stored = [row[0] for row in conn.execute("SELECT key_hash FROM api_keys")]
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert hash_key(first) in stored and first not in dump and second not in dump
    mam_alias = "mam_" + first.removeprefix("tk_")
    assert ring.authenticate(mam_alias) is None  # a key only works with its own prefix
    await ring.revoke(scope_a.key_id)
    assert ring.authenticate(first) is None
    await ring.reload()
    assert ring.authenticate(first) is None and ring.authenticate(second) is not None
    await store.close()
