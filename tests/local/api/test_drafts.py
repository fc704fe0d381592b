"""REST: drafts — create, merge-patch, list, get, delete, send (atomic delete, replies thread)."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import httpx2

from mam_mcp.client.models import Draft, DraftList, SendResult
from tests.local.conftest import LocalBackendFixture, RecordingRelay


async def test_draft_lifecycle_and_send_deletes_it(
    local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    base = f"/v1/inboxes/{inbox['id']}/drafts"
    created = await local_api.post(base, json={"to": "ceo@example.com", "subject": "Quick question"})
    assert created.status_code == 201
    draft = Draft.model_validate(created.json())
    assert draft.to == ["ceo@example.com"] and draft.plain_body is None
    patched = Draft.model_validate(
        (await local_api.patch(f"{base}/{draft.id}", json={"plainBody": "Hey"})).json()
    )
    assert (
        patched.plain_body == "Hey"
        and patched.subject == "Quick question"
        and patched.to == ["ceo@example.com"]
    )
    assert [d.id for d in DraftList.model_validate((await local_api.get(base)).json()).drafts] == [draft.id]
    unverified = await local_api.post(f"{base}/{draft.id}/send")
    assert unverified.status_code == 400 and unverified.json()["details"][0]["path"] == "verified"
    assert (await local_api.get(f"{base}/{draft.id}")).status_code == 200  # a failed send keeps the draft
    sent = await local_api.post(f"{base}/{draft.id}/send", json={"verified": True})
    assert sent.status_code == 201
    result = SendResult.model_validate(sent.json())
    assert result.draft_id == draft.id and result.status == "sent"
    assert (await local_api.get(f"{base}/{draft.id}")).status_code == 404
    assert (await local_api.post(f"{base}/{draft.id}/send", json={"verified": True})).status_code == 404
    assert len(relay.sent) == 1


async def test_reply_draft_sends_as_reply(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    await local_backend[0].ingest(
        b"From: jane@example.com\r\nSubject: Pricing\r\nMessage-ID: <p1@example.com>\r\n\r\nHow much?",
        "jane@example.com",
        ["scout@mam.localhost"],
    )
    parent = (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"][0]
    base = f"/v1/inboxes/{inbox['id']}/drafts"
    draft = (
        await local_api.post(base, json={"replyToMessageId": parent["id"], "text": "It is free."})
    ).json()
    result = (await local_api.post(f"{base}/{draft['id']}/send")).json()
    assert result["threadId"] == parent["threadId"]
    sent = email.message_from_bytes(relay.sent[0][2], policy=policy.default)
    assert sent["In-Reply-To"] == "<p1@example.com>" and sent["Subject"] == "Re: Pricing"
    assert relay.sent[0][1] == ["jane@example.com"]


async def test_draft_validation_and_delete(local_api: httpx2.AsyncClient, make_inbox: Any) -> None:
    inbox = await make_inbox("scout")
    base = f"/v1/inboxes/{inbox['id']}/drafts"
    bad_target = await local_api.post(base, json={"replyToMessageId": "nope"})
    assert bad_target.status_code == 400 and bad_target.json()["details"][0]["path"] == "replyToMessageId"
    crlf = await local_api.post(base, json={"subject": "a\r\nBcc: x@example.com"})
    assert crlf.status_code == 400
    empty = (await local_api.post(base, json={})).json()
    no_rcpt = await local_api.post(f"{base}/{empty['id']}/send", json={"verified": True})
    assert no_rcpt.status_code == 400 and no_rcpt.json()["details"][0]["path"] == "to"
    assert (await local_api.delete(f"{base}/{empty['id']}")).json() == {"ok": True}
    assert (await local_api.delete(f"{base}/{empty['id']}")).status_code == 404


async def test_retried_draft_send_with_idempotency_key_returns_first_result(
    local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    base = f"/v1/inboxes/{inbox['id']}/drafts"
    draft = (await local_api.post(base, json={"to": "ceo@example.com", "subject": "s", "text": "t"})).json()
    headers = {"Idempotency-Key": "draft-send-1"}
    first = await local_api.post(f"{base}/{draft['id']}/send", json={"verified": True}, headers=headers)
    again = await local_api.post(f"{base}/{draft['id']}/send", json={"verified": True}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["draftId"] == draft["id"]
    assert len(relay.sent) == 1


async def test_draft_send_caps_recipients_in_to_cc_and_bcc_together(
    local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("scout")
    base = f"/v1/inboxes/{inbox['id']}/drafts"
    many = [f"r{i}@example.com" for i in range(40)]
    draft = (await local_api.post(base, json={"to": many, "cc": many, "subject": "s", "text": "b"})).json()
    refused = await local_api.post(f"{base}/{draft['id']}/send", json={"verified": True})
    assert refused.status_code == 400 and refused.json()["details"][0]["path"] == "to", refused.json()
    assert relay.sent == [] and (await local_api.get(f"{base}/{draft['id']}")).status_code == 200
