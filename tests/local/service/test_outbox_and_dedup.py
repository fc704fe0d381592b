"""A received mail and its webhook deliveries commit together (the outbox), and a sender's retry is stored once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib
import anyio
import httpx2
import pytest

from mam_mcp.local.events.model import MailEvent
from mam_mcp.local.smtp.ingress import SmtpIngress
from mam_mcp.local.store.mail import DEDUP_WINDOW_SECONDS
from tests.local.conftest import LocalBackendFixture

MakeInbox = Callable[..., Awaitable[dict[str, Any]]]


def _mail(subject: str, msg_id: str | None, body: str = "hi") -> bytes:
    header = f"Message-ID: {msg_id}\r\n" if msg_id else ""
    return f"From: Ann <ann@example.com>\r\nSubject: {subject}\r\n{header}\r\n{body}\r\n".encode()


async def _outbox(backend: Any) -> list[dict[str, Any]]:
    return await backend.store.db.read(  # type: ignore[no-any-return]
        lambda c: [dict(r) for r in c.execute("SELECT * FROM webhook_outbox ORDER BY webhook_id")]
    )


async def test_a_received_mail_commits_with_one_delivery_per_subscribed_webhook(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    inbox = await make_inbox("hooked")
    every = (await local_api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/all", "events": []})).json()
    received = (
        await local_api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/r", "events": ["message.received"]})
    ).json()
    sent_only = (
        await local_api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/s", "events": ["message.sent"]})
    ).json()
    woken: list[int] = []
    backend.add_outbox_listener(lambda: woken.append(1))
    [event] = await backend.ingest(_mail("Plan", "<p@x>"), "ann@example.com", [inbox["email"]])
    rows = await _outbox(backend)
    assert {r["webhook_id"] for r in rows} == {every["id"], received["id"]}  # not the message.sent one
    assert sent_only["id"] not in {r["webhook_id"] for r in rows}
    for row in rows:
        assert (row["event_id"], row["event_type"], row["status"], row["attempts"]) == (
            event.event_id, "message.received", "pending", 0,
        )  # fmt: skip
        assert bytes(row["body"]) == event.webhook_body()
    assert woken == [1]  # the dispatcher hears of the new rows once


async def test_a_delivery_that_cannot_be_recorded_fails_the_whole_ingest(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    inbox = await make_inbox("atomic")
    await local_api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/all", "events": []})
    emitted: list[MailEvent] = []
    backend.add_event_sink(emitted.append)
    await backend.store.db.write(lambda c: c.execute("DROP TABLE webhook_outbox"))  # recording now fails
    with pytest.raises(sqlite3.OperationalError):  # the SMTP session answers 451: the sender retries
        await backend.ingest(_mail("Lost?", "<l@x>"), "ann@example.com", [inbox["email"]])
    assert await backend.store.mail.list_messages(inbox["id"]) == []  # never a message without its webhook
    assert emitted == []


async def test_a_retried_smtp_transaction_is_answered_250_and_stored_once(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    inbox = await make_inbox("dedup")
    emitted: list[MailEvent] = []
    backend.add_event_sink(emitted.append)
    server = SmtpIngress(ingest=backend.ingest, is_local_recipient=backend.is_local_recipient, port=0)
    await server.start()
    same = _mail("Your code", "<retry-1@sender.example>", "Your code is 1234.")
    no_id = _mail("No id", None, "no Message-ID header here")
    try:
        with anyio.fail_after(20):
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False) as smtp:
                answers = [
                    await smtp.sendmail("ann@example.com", [inbox["email"]], raw)
                    for raw in (same, same, no_id, no_id)  # each DATA twice: a sender retrying after a lost 250
                ]  # ...or, without a Message-ID, an app sending one fixed notice twice: two mails
                # Same Message-ID, other bytes: a different mail, stored.
                answers.append(
                    await smtp.sendmail(
                        "ann@example.com", [inbox["email"]], _mail("Your code", "<retry-1@sender.example>", "new")
                    )
                )
    finally:
        await server.stop()
    assert [response.startswith("2.0.0") for _, response in answers] == [True] * 5
    stored = await backend.store.mail.list_messages(inbox["id"], limit=50)
    assert sorted(m["subject"] for m in stored) == ["No id", "No id", "Your code", "Your code"]
    assert len(emitted) == 4 and len({e.message["message_id"] for e in emitted}) == 4
    assert sorted(m["id"] for m in stored) == sorted(e.message["message_id"] for e in emitted)


async def test_a_mail_received_again_after_the_window_is_stored_again(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    inbox, other = await make_inbox("window"), await make_inbox("second")
    raw = _mail("Weekly", "<weekly@x>")
    [first] = await backend.ingest(raw, "ann@example.com", [inbox["email"]])
    assert await backend.ingest(raw, "ann@example.com", [inbox["email"]]) == []  # a retry: nothing new
    # The same mail to another inbox too is new there (the key is per inbox); here it is a retry.
    [to_other] = await backend.ingest(raw, "ann@example.com", [inbox["email"], other["email"]])
    assert to_other.inbox_id == other["id"]
    await backend.store.db.write(
        lambda c: c.execute("UPDATE inbound_digests SET received_at = received_at - ?", (DEDUP_WINDOW_SECONDS + 1,))
    )
    [again] = await backend.ingest(raw, "ann@example.com", [inbox["email"]])
    assert again.message["message_id"] != first.message["message_id"]
    assert len(await backend.store.mail.list_messages(inbox["id"])) == 2


async def test_a_local_send_records_sent_and_received_deliveries(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    alice, bob = await make_inbox("alice"), await make_inbox("bob")
    hook = (await local_api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/all", "events": []})).json()
    woken: list[int] = []
    backend.add_outbox_listener(lambda: woken.append(1))
    sent = await local_api.post(
        f"/v1/inboxes/{alice['id']}/send", json={"to": [bob["email"]], "subject": "hi bob", "text": "hello"}
    )
    assert sent.status_code in (200, 201), sent.text
    rows = await _outbox(backend)
    by_type = {r["event_type"]: r for r in rows}
    assert set(by_type) == {"message.received", "message.sent"} and {r["webhook_id"] for r in rows} == {hook["id"]}
    assert json.loads(by_type["message.sent"]["body"])["inboxId"] == alice["id"]
    assert json.loads(by_type["message.received"]["body"])["inboxId"] == bob["id"]
    assert len(woken) == 2
