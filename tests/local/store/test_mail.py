"""The mail repository on real SQLite: durable inbound copies, threading, filters and full-text search."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store import mail as mail_module
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.mail import PARSE_IN_THREAD_BYTES
from mam_mcp.local.store.migrations import SCHEMA_VERSION
from tests.local.store.mailbox import mail, store_with_inbox


async def test_insert_inbound_is_committed_and_survives_reopen(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    copies = await store.mail.insert_inbound(
        mail("hi", msg_id="<1@x>"), mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"]
    )
    assert [(c.inbox.id, c.message["direction"], c.message["status"]) for c in copies] == [
        (inbox_id, "inbound", "received")
    ]
    # a separate connection sees the row as soon as insert_inbound returned: it is committed
    conn = sqlite3.connect(local_config.db_path)
    assert conn.execute("SELECT subject FROM messages").fetchall() == [("hi",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    await store.close()
    reopened = EmailStore(local_config)
    await reopened.open()
    assert reopened.accounts.inbox_for_address("BOB@mam.localhost") == (inbox_id, copies[0].inbox.tenant_id, None)
    rows = await reopened.mail.list_messages(inbox_id)
    assert [r["subject"] for r in rows] == ["hi"]
    assert await reopened.mail.get_raw(inbox_id, rows[0]["id"]) == mail("hi", msg_id="<1@x>")
    await reopened.close()


async def test_one_copy_per_local_inbox_with_aliases_case_insensitive(local_config: LocalConfig) -> None:
    store, bob = await store_with_inbox(local_config)
    tenant = store.accounts.inbox_record(bob).tenant_id  # type: ignore[union-attr]
    carol = (await store.accounts.create_inbox(
        tenant_id=tenant, workspace_id=None, username="carol", domain="mam.localhost", display_name=None
    ))["id"]  # fmt: skip
    await store.accounts.add_address(carol, "sales@mam.localhost", primary=False)
    copies = await store.mail.insert_inbound(
        mail("team", msg_id="<t@x>"),
        mail_from="alice@example.com",
        rcpt_tos=["Bob@MAM.localhost", "bob@mam.localhost", "SALES@mam.localhost", "nobody@mam.localhost"],
    )
    assert sorted(c.inbox.id for c in copies) == sorted([bob, carol])
    assert len({c.message["id"] for c in copies}) == 2  # a row of its own in each inbox
    assert store.accounts.inbox_for_address("<Sales@Mam.Localhost>") is not None
    assert store.accounts.inbox_for_address("nobody@mam.localhost") is None
    await store.close()


async def test_threading_by_references_then_subject(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    first = await store.mail.insert_inbound(
        mail("Plan", msg_id="<a@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
    )
    by_ref = await store.mail.insert_inbound(
        mail("Totally different", msg_id="<b@x>", extra="In-Reply-To: <a@x>\r\n"),
        mail_from="a@x", rcpt_tos=["bob@mam.localhost"],
    )  # fmt: skip
    by_subject = await store.mail.insert_inbound(mail("AW: Re: plan", msg_id="<c@x>"), mail_from="a@x",
                                            rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    other = await store.mail.insert_inbound(
        mail("Other", msg_id="<d@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"]
    )
    thread = first[0].message["thread_id"]
    assert by_ref[0].message["thread_id"] == thread
    assert by_subject[0].message["thread_id"] == thread
    assert other[0].message["thread_id"] != thread
    detail = await store.mail.get_thread(inbox_id, thread)
    assert detail is not None and detail["message_count"] == 3
    assert [m["message_id_hdr"] for m in detail["messages"]] == ["<a@x>", "<b@x>", "<c@x>"]
    # the thread keeps its first subject; each copy names it (its event carries it)
    assert [c[0].thread_subject for c in (first, by_ref, by_subject, other)] == ["Plan"] * 3 + ["Other"]
    alone = await store.mail.get_thread(inbox_id, other[0].message["thread_id"])
    assert alone is not None and alone["message_count"] == 1 and alone["subject"] == "Other"
    await store.close()


async def test_filters_and_full_text_search(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    await store.mail.insert_inbound(mail("Your code", msg_id="<1@x>", body="code 483921 inside"), mail_from="a@x",
                               rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    await store.mail.insert_inbound(mail("Newsletter", msg_id="<2@x>", body="nothing here"), mail_from="a@x",
                               rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    found = await store.mail.list_messages(inbox_id, q="483921")
    assert [r["subject"] for r in found] == ["Your code"]
    assert [
        r["subject"] for r in await store.mail.list_messages(inbox_id, q='" OR *')
    ] == []  # syntax is quoted away
    assert [r["subject"] for r in await store.mail.list_messages(inbox_id, subject_contains="news")] == [
        "Newsletter"
    ]
    assert len(await store.mail.list_messages(inbox_id, from_contains="alice")) == 2
    assert len(await store.mail.list_messages(inbox_id, from_contains="%")) == 0
    newest = (await store.mail.list_messages(inbox_id))[0]
    assert await store.mail.list_messages(inbox_id, after=newest["at"]) == []
    await store.mail.set_read(inbox_id, newest["id"], True)
    assert [r["subject"] for r in await store.mail.list_messages(inbox_id, unread=True)] != [newest["subject"]]
    assert await store.mail.soft_delete(inbox_id, newest["id"])
    assert len(await store.mail.list_messages(inbox_id)) == 1
    await store.close()


async def test_big_messages_are_stored_off_the_event_loop(
    local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = await store_with_inbox(local_config)
    threads: list[str] = []
    real_store_inbound = mail_module._store_inbound

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_store_inbound(*args)

    monkeypatch.setattr(mail_module, "_store_inbound", spy)
    small = mail("small", msg_id="<s@x>")
    big = mail("big", msg_id="<b@x>", body="y" * (PARSE_IN_THREAD_BYTES + 1))
    for raw in (small, big):
        await store.mail.insert_inbound(raw, mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    assert threads[0] == threading.current_thread().name
    assert threads[1].startswith("mam-local-sqlite-commit")
    await store.close()


async def test_plus_tags_are_stored_and_the_to_and_tag_filters_are_exact(local_config: LocalConfig) -> None:
    store, bob = await store_with_inbox(local_config)
    await store.mail.insert_inbound(mail("tagged", msg_id="<p1@x>"), mail_from="a@example.com",
                                    rcpt_tos=["bob+Run7@mam.localhost"])  # fmt: skip
    await store.mail.insert_inbound(mail("plain", msg_id="<p2@x>"), mail_from="a@example.com",
                                    rcpt_tos=["bob@mam.localhost"])  # fmt: skip
    # Two addresses of one inbox in one transaction: one copy, the tag of the first address naming it.
    copies = await store.mail.insert_inbound(mail("both", msg_id="<p3@x>"), mail_from="a@example.com",
                                             rcpt_tos=["bob+first@mam.localhost", "bob+second@mam.localhost"])  # fmt: skip
    assert [c.message["tag"] for c in copies] == ["first"]

    async def subjects(**filters: Any) -> list[str]:
        return sorted(r["subject"] for r in await store.mail.list_messages(bob, **filters))

    assert await subjects(tag="run7") == ["tagged"]  # without regard to case
    assert await subjects(tag="run") == []  # whole tags only
    # `mail()` addresses its To header to bob@mam.localhost: that is the recipient `to` matches...
    assert await subjects(to="BOB@mam.localhost") == ["both", "plain", "tagged"]
    assert await subjects(to="ob@mam.localhost") == []  # ...as a whole address, not a substring
    # ...and a +tag address also matches what was delivered with that tag.
    assert await subjects(to="bob+run7@mam.localhost") == ["tagged"]
    await store.close()


async def test_inbound_digests_are_kept_for_the_window_and_go_with_their_inbox(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    raw = mail("again", msg_id="<again@x>")
    [first] = await store.mail.insert_inbound(raw, mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    [retry] = await store.mail.insert_inbound(raw, mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.message["id"] == first.message["id"]  # the stored copy, not a new one
    raws = await store.db.read(lambda c: c.execute("SELECT COUNT(*) FROM raw_sources").fetchone()[0])
    assert raws == 1  # the retry's bytes were not kept either

    def count(c: sqlite3.Connection) -> int:
        return int(c.execute("SELECT COUNT(*) FROM inbound_digests").fetchone()[0])

    await store.db.write(
        lambda c: c.execute(
            "INSERT INTO inbound_digests VALUES (?, 'old', '', 'm', ?)",
            (inbox_id, 1.0),  # long past the window
        )
    )
    assert await store.db.read(count) == 2
    await store.close()
    reopened = EmailStore(local_config)
    await reopened.open()  # forgets digests older than the window
    assert await reopened.db.read(count) == 1
    await reopened.delete_inbox(inbox_id)
    assert await reopened.db.read(count) == 0
    await reopened.close()


async def test_an_inbox_deleted_while_its_mail_waits_for_the_writer_gets_no_orphan_copy(
    local_config: LocalConfig,
) -> None:
    # The recipient is routed before the store's transaction; an inbox deleted in between (by its
    # owner, or the expiry sweep) must not get a copy: rows nobody can list or delete, and a 250.
    store, inbox_id = await store_with_inbox(local_config)
    deleting = asyncio.create_task(store.delete_inbox(inbox_id))  # queued first: runs first
    storing = asyncio.create_task(
        store.mail.insert_inbound(mail("late", msg_id="<late@x>"), mail_from="a@x", rcpt_tos=["bob@mam.localhost"])
    )
    await deleting
    assert await storing == []  # no copy stored: the backend answers 451, never a 250 into nowhere
    left = await store.db.read(
        lambda c: [
            c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("messages", "threads", "raw_sources", "inbound_digests", "correspondents")
        ]
    )
    assert left == [0, 0, 0, 0, 0]
    await store.close()


async def test_the_same_bytes_to_another_plus_tag_are_a_new_delivery_not_a_retry(local_config: LocalConfig) -> None:
    # A sender's retry repeats its envelope; the same bytes to bob+b after bob+a (a test sending one
    # fixture to two tagged addresses) are a second delivery, stored with their own tag.
    store, bob = await store_with_inbox(local_config)
    raw = mail("fixture", msg_id="<same@x>")
    sent = [
        await store.mail.insert_inbound(raw, mail_from="a@x", rcpt_tos=[rcpt])
        for rcpt in ("bob+a@mam.localhost", "bob+b@mam.localhost", "bob+A@mam.localhost", "bob@mam.localhost")
    ]
    assert [[(c.message["tag"], c.duplicate) for c in copies] for copies in sent] == [
        [("a", False)], [("b", False)], [("a", True)], [(None, False)],  # a tag compares without case
    ]
    assert sorted(str(r["tag"]) for r in await store.mail.list_messages(bob)) == ["None", "a", "b"]
    await store.close()
