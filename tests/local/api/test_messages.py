"""REST: send / reply / reply-all / forward, messages, attachments, threads, idempotency, hostile input."""

from __future__ import annotations

import base64
import email
from email import policy
from typing import Any

import httpx2
import pytest

from mam_mcp.client.models import AttachmentList, Message, MessageList, SendResult, Thread, ThreadList
from mam_mcp.local.events.model import MailEvent
from tests.local.conftest import LocalBackendFixture, RecordingRelay

EXTERNAL_MAIL = (
    b"From: Jane Doe <jane@example.com>\r\nTo: scout@mam.localhost\r\nCc: boss@example.com, scout2@mam.localhost\r\n"
    b"Subject: Quick question\r\nMessage-ID: <q1@example.com>\r\nReferences: <root@example.com>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCan we talk?\r\n"
    b'--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename="leads.csv"\r\n\r\na,b\r\n1,2\r\n--b--\r\n'
)


@pytest.fixture
def events(local_backend: LocalBackendFixture) -> list[MailEvent]:
    received: list[MailEvent] = []
    local_backend[0].add_event_sink(received.append)
    return received


async def _inbound(
    local_backend: LocalBackendFixture, raw: bytes = EXTERNAL_MAIL, rcpt: str = "scout@mam.localhost"
) -> None:
    await local_backend[0].ingest(raw, "jane@example.com", [rcpt])


async def _only_message(api: httpx2.AsyncClient, inbox_id: str, **params: Any) -> dict[str, Any]:
    listed = (await api.get(f"/v1/inboxes/{inbox_id}/messages", params=params)).json()["messages"]
    assert len(listed) == 1, listed
    return listed[0]  # type: ignore[no-any-return]


async def test_local_send_is_delivered_and_both_sides_get_events(
    local_api: httpx2.AsyncClient, make_inbox: Any, events: list[MailEvent]
) -> None:
    alice, bob = await make_inbox("alice", displayName="Alice"), await make_inbox("bob")
    sent = await local_api.post(
        f"/v1/inboxes/{alice['id']}/send",
        json={"to": "bob@mam.localhost", "subject": "Hi", "text": "hello", "html": "<p>hello</p>"},
    )
    assert sent.status_code == 201
    result = SendResult.model_validate(sent.json())
    assert (
        result.status == "delivered" and result.message_id and result.message_id.endswith("@mam.localhost>")
    )
    received = Message.model_validate(await _only_message(local_api, bob["id"]))
    assert received.direction == "inbound" and received.from_address == "alice@mam.localhost"
    assert (
        received.from_name == "Alice"
        and received.plain_body is not None
        and received.plain_body.strip() == "hello"
    )
    assert received.html_body is not None and "<p>hello</p>" in received.html_body
    assert received.message_id == result.message_id
    outbound = Message.model_validate(await _only_message(local_api, alice["id"], direction="outbound"))
    assert outbound.status == "delivered" and outbound.to_addresses == ["bob@mam.localhost"]
    assert [(e.event_type, e.inbox_id) for e in events] == [
        ("message.received", bob["id"]),
        ("message.sent", alice["id"]),
    ]
    assert events[0].message["from"] == "Alice <alice@mam.localhost>"


async def test_a_local_send_to_a_plus_address_is_delivered_tagged_with_the_tag_in_the_event(
    local_api: httpx2.AsyncClient, make_inbox: Any, events: list[MailEvent]
) -> None:
    alice, bob = await make_inbox("alice"), await make_inbox("bob")
    sent = await local_api.post(
        f"/v1/inboxes/{alice['id']}/send", json={"to": "bob+job7@mam.localhost", "subject": "Hi", "text": "hello"}
    )
    assert sent.status_code == 201 and sent.json()["status"] == "delivered"  # local, not captured
    received = await _only_message(local_api, bob["id"])
    assert received["tag"] == "job7" and received["toAddresses"] == ["bob+job7@mam.localhost"]
    outbound = await _only_message(local_api, alice["id"], direction="outbound")
    assert outbound["tag"] is None
    assert events[0].event_type == "message.received" and events[0].message["tag"] == "job7"


async def test_get_marks_read_mark_delete_raw_and_attachments(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    await _inbound(local_backend)
    listed = MessageList.model_validate((await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json())
    message = listed.messages[0]
    assert message.is_read is False and message.has_attachments is True
    base = f"/v1/inboxes/{inbox['id']}/messages/{message.id}"
    assert (await local_api.get(base, params={"peek": "true"})).json()["isRead"] is False
    detail = Message.model_validate((await local_api.get(base)).json())
    assert detail.is_read is True and detail.cc_addresses == ["boss@example.com", "scout2@mam.localhost"]
    assert detail.attachments and detail.attachments[0].filename == "leads.csv"
    unread = await local_api.patch(base, json={"isRead": False})
    assert unread.json()["isRead"] is False
    assert (
        len(
            (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"unread": "true"})).json()[
                "messages"
            ]
        )
        == 1
    )
    raw = await local_api.get(base + "/raw")
    assert raw.headers["content-type"].startswith("message/rfc822") and raw.content == EXTERNAL_MAIL
    attachments = AttachmentList.model_validate(
        (await local_api.get(base + "/attachments")).json()
    ).attachments
    assert [(a.filename, a.content_type, a.size) for a in attachments] == [("leads.csv", "text/csv", 8)]
    download = await local_api.get(f"{base}/attachments/{attachments[0].id}")
    assert (
        download.content == b"a,b\r\n1,2"
        and 'filename="leads.csv"' in download.headers["content-disposition"]
    )
    assert (await local_api.delete(base)).json() == {"ok": True}
    assert (await local_api.get(base)).status_code == 404
    assert (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"] == []


async def test_list_filters_search_after_and_paging(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    for i in range(5):
        raw = f"From: sender{i}@example.com\r\nSubject: note {i}\r\n\r\nbody word{i}".encode()
        await _inbound(local_backend, raw)
    url = f"/v1/inboxes/{inbox['id']}/messages"
    page = (await local_api.get(url, params={"limit": 2, "offset": 1})).json()["messages"]
    assert [m["subject"] for m in page] == ["note 3", "note 2"]
    assert [m["subject"] for m in (await local_api.get(url, params={"q": "word4"})).json()["messages"]] == [
        "note 4"
    ]
    assert [
        m["subject"] for m in (await local_api.get(url, params={"from": "sender1"})).json()["messages"]
    ] == ["note 1"]
    assert [
        m["subject"] for m in (await local_api.get(url, params={"subject": "note 0"})).json()["messages"]
    ] == ["note 0"]
    third = page[1]
    newer = (await local_api.get(url, params={"after": third["receivedAt"]})).json()["messages"]
    # Strictly later: two inserts may share a millisecond, so compare with the stored times.
    everything = (await local_api.get(url, params={"limit": 10})).json()["messages"]
    expected = {m["subject"] for m in everything if m["receivedAt"] > third["receivedAt"]}
    assert "note 4" in expected and "note 2" not in expected
    assert {m["subject"] for m in newer} == expected
    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"direction": "sideways"},
        {"after": "yesterday"},
    ):
        response = await local_api.get(url, params=bad)
        assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR", bad


async def test_reply_threads_with_in_reply_to_and_references(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout", displayName="Scout")
    await _inbound(local_backend)
    parent = await _only_message(local_api, inbox["id"])
    reply = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/reply/{parent['id']}", json={"plainBody": "Sure!"}
    )
    assert reply.status_code == 201
    result = SendResult.model_validate(reply.json())
    assert result.thread_id == parent["threadId"] and result.status == "sent"
    mail_from, rcpts, raw = relay.sent[0]
    assert mail_from == "scout@mam.localhost" and rcpts == ["jane@example.com"]
    sent = email.message_from_bytes(raw, policy=policy.default)
    assert sent["In-Reply-To"] == "<q1@example.com>"
    assert sent["References"] == "<root@example.com> <q1@example.com>"
    assert sent["Subject"] == "Re: Quick question" and str(sent["From"]) == "Scout <scout@mam.localhost>"
    thread = Thread.model_validate(
        (await local_api.get(f"/v1/inboxes/{inbox['id']}/threads/{result.thread_id}")).json()
    )
    assert thread.message_count == 2 and [m.direction for m in thread.messages or []] == [
        "inbound",
        "outbound",
    ]
    threads = ThreadList.model_validate((await local_api.get(f"/v1/inboxes/{inbox['id']}/threads")).json())
    assert [t.id for t in threads.threads] == [result.thread_id]


async def test_reply_all_includes_others_but_not_ourselves(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    await make_inbox("scout2")
    await _inbound(local_backend)
    parent = await _only_message(local_api, inbox["id"])
    unverified = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/reply-all/{parent['id']}", json={"text": "All: yes"}
    )
    # boss@ is only on the thread (the mail's Cc), he never wrote here: reaching him needs consent.
    assert unverified.status_code == 400 and unverified.json()["details"] == [
        {"path": "verified", "message": "required for unknown recipient boss@example.com"}
    ]
    assert relay.sent == []
    reply = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/reply-all/{parent['id']}", json={"text": "All: yes", "verified": True}
    )
    assert reply.status_code == 201
    _, rcpts, raw = relay.sent[0]
    assert sorted(rcpts) == ["boss@example.com", "jane@example.com"]  # scout2 is local: delivered internally
    sent = email.message_from_bytes(raw, policy=policy.default)
    assert "scout@mam.localhost" not in str(sent["To"]) + str(sent["Cc"])
    assert "scout2@mam.localhost" in str(sent["Cc"])


async def test_forward_quotes_original_and_reattaches(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    await _inbound(local_backend)
    parent = await _only_message(local_api, inbox["id"])
    unverified = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/forward/{parent['id']}", json={"to": "colleague@example.org"}
    )
    assert unverified.status_code == 400 and unverified.json()["details"][0]["path"] == "verified"
    forwarded = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/forward/{parent['id']}",
        json={"to": "colleague@example.org", "plainBody": "FYI", "verified": True},
    )
    assert forwarded.status_code == 201
    sent = email.message_from_bytes(relay.sent[0][2], policy=policy.default)
    assert sent["Subject"] == "Fwd: Quick question"
    body = sent.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert (
        text.startswith("FYI")
        and "---------- Forwarded message ----------" in text
        and "Can we talk?" in text
    )
    assert [(p.get_filename(), p.get_content()) for p in sent.iter_attachments()] == [
        ("leads.csv", "a,b\r\n1,2")
    ]


async def test_verified_rule_and_captured_without_relay(
    local_backend: LocalBackendFixture,
    local_api: httpx2.AsyncClient,
    make_inbox: Any,
    events: list[MailEvent],
) -> None:
    inbox = await make_inbox("scout")
    send = f"/v1/inboxes/{inbox['id']}/send"
    rejected = await local_api.post(send, json={"to": "new@example.com", "subject": "s", "text": "t"})
    assert rejected.status_code == 400
    assert rejected.json()["details"] == [
        {"path": "verified", "message": rejected.json()["details"][0]["message"]}
    ]
    captured = await local_api.post(
        send, json={"to": "new@example.com", "subject": "s", "text": "t", "verified": True}
    )
    assert captured.status_code == 201 and captured.json()["status"] == "captured"
    await _inbound(local_backend)  # jane@example.com writes in: she is known from now on
    known = await local_api.post(
        send, json={"to": ["Jane <jane@example.com>"], "subject": "s", "plainBody": "t"}
    )
    assert known.status_code == 201
    assert [e.event_type for e in events] == ["message.sent", "message.received", "message.sent"]


async def test_permanent_relay_rejection_is_relay_rejected_not_a_bounce(
    local_backend: LocalBackendFixture,
    local_api: httpx2.AsyncClient,
    make_inbox: Any,
    events: list[MailEvent],
) -> None:
    local_backend[0].relay = RecordingRelay(reject=True)
    inbox = await make_inbox("scout")
    result = await local_api.post(f"/v1/inboxes/{inbox['id']}/send",
                                  json={"to": "dead@example.com", "subject": "s", "text": "t", "verified": True})  # fmt: skip
    assert result.status_code == 502 and result.json()["code"] == "RELAY_REJECTED"
    assert "550 no such user" in result.json()["error"] and "not sent" in result.json()["error"]
    kept = await _only_message(local_api, inbox["id"], direction="outbound")
    assert kept["status"] == "failed" and kept["id"] in result.json()["error"]
    assert events == [], "a relay refusal is not a bounce report"
    metrics = (await local_api.get("/v1/metrics")).json()
    assert metrics["counts"] == {"sent": 0, "received": 0, "bounced": 0}


async def test_temporary_relay_failure_is_queued_for_a_retry(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    local_backend[0].relay = RecordingRelay(reject=False)
    inbox = await make_inbox("scout")
    result = await local_api.post(f"/v1/inboxes/{inbox['id']}/send",
                                  json={"to": "slow@example.com", "subject": "s", "text": "t", "verified": True})  # fmt: skip
    assert result.status_code == 201, result.text
    body = result.json()
    assert body["status"] == "queued" and body["relayReply"] == "451 try later"
    assert body["nextAttemptAt"] < body["retryUntil"]
    kept = await _only_message(local_api, inbox["id"], direction="outbound")
    assert kept["status"] == "queued"


async def test_idempotency_key_returns_first_result_and_sends_once(
    local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    body = {"to": "x@example.com", "subject": "once", "text": "t", "verified": True}
    url = f"/v1/inboxes/{inbox['id']}/send"
    first = await local_api.post(url, json=body, headers={"Idempotency-Key": "k1"})
    again = await local_api.post(url, json=body, headers={"Idempotency-Key": "k1"})
    other = await local_api.post(url, json=body, headers={"Idempotency-Key": "k2"})
    assert first.json() == again.json() and other.json()["id"] != first.json()["id"]
    assert len(relay.sent) == 2
    assert (
        len(
            (await local_api.get(url.replace("/send", "/messages"), params={"direction": "outbound"})).json()[
                "messages"
            ]
        )
        == 2
    )


async def test_a_send_key_reused_for_a_different_mail_is_refused_on_every_send_route(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    """Answering a reused key with the first send's result would tell the caller a different mail
    went out. The same request (its JSON value, whatever the key order or spacing) is answered again;
    a different one is 422 IDEMPOTENCY_KEY_REUSED with nothing sent, on send, reply, forward and a
    draft's send."""
    inbox = await make_inbox("scout")
    await _inbound(local_backend)
    parent = await _only_message(local_api, inbox["id"])
    base = f"/v1/inboxes/{inbox['id']}"
    headers = {"Idempotency-Key": "reused", "Content-Type": "application/json"}

    first = await local_api.post(
        f"{base}/send",
        content='{"to": "x@example.com", "subject": "once", "text": "Grüße 🎉", "verified": true}'.encode(),
        headers=headers,
    )
    assert first.status_code == 201, first.text
    same = await local_api.post(  # the same JSON value: other key order, no spaces, escaped characters
        f"{base}/send",
        content=b'{"verified":true,"text":"Gr\\u00fc\\u00dfe \\ud83c\\udf89","subject":"once","to":"x@example.com"}',
        headers=headers,
    )
    assert same.status_code == 201 and same.json() == first.json()
    assert len(relay.sent) == 1

    different = [
        (f"{base}/send", {"to": "x@example.com", "subject": "once", "text": "another text", "verified": True}),
        (f"{base}/send", {"to": "y@example.com", "subject": "once", "text": "t", "verified": True}),
        (f"{base}/reply/{parent['id']}", {"text": "t"}),
        (f"{base}/reply-all/{parent['id']}", {"text": "t", "verified": True}),
        (f"{base}/forward/{parent['id']}", {"to": "x@example.com", "text": "t", "verified": True}),
    ]
    draft = (await local_api.post(f"{base}/drafts", json={"to": "x@example.com", "subject": "d", "text": "t"})).json()
    different.append((f"{base}/drafts/{draft['id']}/send", {"verified": True}))
    for url, body in different:
        refused = await local_api.post(url, json=body, headers={"Idempotency-Key": "reused"})
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["code"] == "IDEMPOTENCY_KEY_REUSED", refused.json()
    assert len(relay.sent) == 1  # nothing more left
    outbound = (await local_api.get(f"{base}/messages", params={"direction": "outbound"})).json()["messages"]
    assert [m["id"] for m in outbound] == [first.json()["id"]]
    assert (await local_api.get(f"{base}/drafts/{draft['id']}")).status_code == 200  # the draft is still there

    # A draft's send retried with its key is answered again (the draft is gone by then) ...
    sent_draft = await local_api.post(
        f"{base}/drafts/{draft['id']}/send", json={"verified": True}, headers={"Idempotency-Key": "draft-key"}
    )
    again = await local_api.post(
        f"{base}/drafts/{draft['id']}/send", json={"verified": True}, headers={"Idempotency-Key": "draft-key"}
    )
    assert sent_draft.status_code == again.status_code == 201 and again.json() == sent_draft.json()
    assert len(relay.sent) == 2

    # A retried reply or forward is answered from its record even if the original is deleted since.
    await _inbound(local_backend, EXTERNAL_MAIL.replace(b"<q1@example.com>", b"<q2@example.com>"))
    second = (await local_api.get(f"{base}/messages", params={"direction": "inbound"})).json()["messages"][0]
    assert second["id"] != parent["id"]
    answers = {}
    for route, body in (("reply", {"text": "On it."}), ("forward", {"to": "x@example.com", "verified": True})):
        answers[route] = await local_api.post(
            f"{base}/{route}/{second['id']}", json=body, headers={"Idempotency-Key": f"{route}-key"}
        )
        assert answers[route].status_code == 201, answers[route].text
    assert (await local_api.delete(f"{base}/messages/{second['id']}")).status_code == 200
    for route, body in (("reply", {"text": "On it."}), ("forward", {"to": "x@example.com", "verified": True})):
        retried = await local_api.post(
            f"{base}/{route}/{second['id']}", json=body, headers={"Idempotency-Key": f"{route}-key"}
        )
        assert retried.status_code == 201 and retried.json() == answers[route].json(), retried.text
    assert len(relay.sent) == 4

    # ... and a record written before fingerprints were kept, or in a format this release does not
    # know, answers any request with its key, as before.
    for recorded in (None, "json0:" + "0" * 64):
        await local_backend[0].store.mail._db.write(
            lambda c, recorded=recorded: c.execute("UPDATE idempotency SET fingerprint=? WHERE key='reused'", (recorded,))
        )
        old = await local_api.post(
            f"{base}/send", json={"to": "z@example.com", "subject": "x", "text": "x", "verified": True},
            headers={"Idempotency-Key": "reused"},
        )  # fmt: skip
        assert old.status_code == 201 and old.json() == first.json()
    assert len(relay.sent) == 4


async def test_failing_event_sink_does_not_break_sending(
    local_backend: LocalBackendFixture,
    local_api: httpx2.AsyncClient,
    make_inbox: Any,
    events: list[MailEvent],
) -> None:
    async def broken(event: MailEvent) -> None:
        raise RuntimeError("subscriber bug")

    local_backend[0]._sinks.insert(0, broken)
    a, b = await make_inbox("a1"), await make_inbox("b1")
    sent = await local_api.post(
        f"/v1/inboxes/{a['id']}/send", json={"to": b["email"], "subject": "s", "text": "t"}
    )
    assert sent.status_code == 201
    assert [e.event_type for e in events] == ["message.received", "message.sent"]


@pytest.mark.parametrize(
    "body",
    [
        {"to": "x@example.com", "subject": "hi\r\nBcc: victim@example.com"},
        {"to": "x@example.com", "subject": "hi\nX-Injected: 1"},
        {"to": "x@example.com\r\nBcc: victim@example.com", "subject": "hi"},
        {"to": ["Evil\r\nBcc: victim@example.com <x@example.com>"], "subject": "hi"},
        {"to": "x@example.com", "cc": ["y@example.com\nBcc: z@example.com"], "subject": "hi"},
    ],
)
async def test_crlf_injection_is_rejected_and_nothing_stored_or_sent(
    local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay, body: dict[str, Any]
) -> None:
    inbox = await make_inbox("scout")
    response = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/send", json={**body, "text": "t", "verified": True}
    )
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"
    assert relay.sent == []
    assert (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"] == []


async def test_crlf_in_display_name_cannot_reach_a_send(
    local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    patched = await local_api.patch(
        f"/v1/inboxes/{inbox['id']}", json={"displayName": "Scout\r\nBcc: x@example.com"}
    )
    assert patched.status_code == 400 and patched.json()["details"][0]["path"] == "displayName"


async def test_send_validation_limits(local_api: httpx2.AsyncClient, make_inbox: Any) -> None:
    inbox = await make_inbox("scout")
    url = f"/v1/inboxes/{inbox['id']}/send"
    cases = [
        ({"subject": "no recipient", "text": "t"}, "to"),
        ({"to": "not-an-address", "subject": "s"}, "to"),
        ({"to": [f"r{i}@example.com" for i in range(51)], "subject": "s"}, "to"),
        ({"to": "a@example.com", "subject": "x" * 999}, "subject"),
        ({"to": "a@example.com", "subject": "s", "unknownField": 1}, "unknownField"),
    ]
    for body, path in cases:
        response = await local_api.post(url, json=body)
        assert response.status_code == 400, body
        assert response.json()["details"][0]["path"] == path, response.json()


async def test_ingest_of_hostile_mime_keeps_the_raw_source(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    hostile = (
        b"Subject: =?bogus-charset?B?////?=\r\nFrom: \xff\xfe <weird@@example.com>\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n\x00\x01 no boundary"
    )
    await _inbound(local_backend, hostile)
    message = await _only_message(local_api, inbox["id"])
    raw = await local_api.get(f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/raw")
    assert raw.content == hostile


async def test_oversized_request_body_is_refused(local_api: httpx2.AsyncClient, make_inbox: Any) -> None:
    inbox = await make_inbox("scout")
    huge = {"to": "a@example.com", "subject": "s", "text": "x" * (13 * 1024 * 1024), "verified": True}
    response = await local_api.post(f"/v1/inboxes/{inbox['id']}/send", json=huge)
    assert response.status_code == 413 and response.json()["code"] == "PAYLOAD_TOO_LARGE"
    too_long = {"to": "a@example.com", "subject": "s", "text": "x" * (5 * 1024 * 1024 + 1), "verified": True}
    response = await local_api.post(f"/v1/inboxes/{inbox['id']}/send", json=too_long)
    assert response.status_code == 400 and response.json()["details"][0]["path"] == "text"


async def test_folded_attachment_content_type_is_stored_clean_so_download_and_forward_work(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    raw = (
        b"From: jane@example.com\r\nTo: scout@mam.localhost\r\nSubject: report\r\n"
        b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nsee pdf\r\n"
        b"--BB\r\nContent-Type: application/pdf\r\n X-Injected: 1\r\n"
        b"Content-Disposition: attachment; filename=report.pdf\r\n\r\n%PDF-1.4\r\n--BB--\r\n"
    )
    await _inbound(local_backend, raw)
    message = await _only_message(local_api, inbox["id"])
    listed = (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/attachments")).json()
    attachment = listed["attachments"][0]
    assert attachment["contentType"] == "application/pdf"
    download = await local_api.get(
        f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/attachments/{attachment['id']}"
    )
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    assert "x-injected" not in download.headers
    forwarded = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/forward/{message['id']}", json={"to": "boss@example.org", "verified": True}
    )
    assert forwarded.status_code == 201, forwarded.json()


async def test_chunked_body_without_length_is_refused_once_past_the_cap(
    local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    mib = 1024 * 1024
    sent = 0

    async def endless_json() -> Any:  # no Content-Length: the server must count as it reads
        nonlocal sent
        yield b'{"to": "a@example.com", "subject": "s", "text": "'
        for _ in range(64):
            sent += 1
            yield b"x" * mib

    response = await local_api.post(f"/v1/inboxes/{inbox['id']}/send", content=endless_json())
    assert response.status_code == 413 and response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert sent <= 13, f"read {sent} MiB before refusing"


def _nested(depth: int) -> bytes:
    head = b"".join(
        f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n'.encode() for i in range(depth)
    )
    tail = b"".join(f"\r\n--n{i}--\r\n".encode() for i in reversed(range(depth)))
    return b"Subject: nested\r\n" + head + b"Content-Type: text/plain\r\n\r\ndeep inside" + tail


BIG_BLOB = bytes(range(256)) * (10 * 1024 * 1024 // 256)


@pytest.mark.parametrize(
    ("raw", "subject"),
    [
        (
            b"Subject: =?koi8-r?B?8NLJ18XU?=\r\nContent-Type: text/plain; charset=no-such\r\n\r\n\xff\xfe",
            "Привет",
        ),
        (b"Subject: " + b"H" * 100_000 + b"\r\n" + b"X-Junk: y\r\n" * 3000 + b"\r\nbody", "H" * 16_384),
        (_nested(100), "nested"),
    ],
    ids=["charsets", "huge-headers", "nested-100"],
)
async def test_hostile_mail_is_stored_and_listed(
    local_backend: LocalBackendFixture,
    local_api: httpx2.AsyncClient,
    make_inbox: Any,
    raw: bytes,
    subject: str,
) -> None:
    inbox = await make_inbox("scout")
    await _inbound(local_backend, raw)
    message = await _only_message(local_api, inbox["id"])
    assert message["subject"] == subject
    raw_back = await local_api.get(f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/raw")
    assert raw_back.content == raw


async def test_ten_megabyte_attachment_over_rest(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    inbox = await make_inbox("scout")
    encoded = base64.encodebytes(BIG_BLOB)
    raw = (
        b'Subject: big\r\nContent-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\n'
        b"see attached\r\n--z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n' + encoded + b"--z--\r\n"
    )
    await _inbound(local_backend, raw)
    message = await _only_message(local_api, inbox["id"])
    base = f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/attachments"
    listed = (await local_api.get(base)).json()["attachments"]
    assert [(a["filename"], a["size"]) for a in listed] == [("big.bin", len(BIG_BLOB))]
    assert (await local_api.get(f"{base}/{listed[0]['id']}")).content == BIG_BLOB
