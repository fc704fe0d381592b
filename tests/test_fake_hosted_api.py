"""Self-tests of the strict fake of the hosted API (tests/fakes/hosted_api.py)."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from httpx2.websockets import WebSocketDisconnect, WebSocketUpgradeError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match

from mam_mcp.client.models import (
    AddressList,
    AttachmentList,
    Domain,
    Draft,
    DraftList,
    Inbox,
    InboxKey,
    InboxList,
    ListEntry,
    Message,
    MessageList,
    Metrics,
    SendResult,
    Thread,
    ThreadList,
    VerifyEmailResult,
    Webhook,
    Workspace,
    WorkspaceKey,
)
from tests.fakes.hosted_api import FakeHostedAPI

pytestmark = pytest.mark.timeout(30)

SENDER = "jane@acme.example"


@pytest.fixture
def fake() -> FakeHostedAPI:
    return FakeHostedAPI()


@pytest.fixture
async def api(fake: FakeHostedAPI) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=fake.transport(), base_url="http://fake/v1", headers={"X-API-Key": fake.api_key}
    ) as client:
        yield client


async def _inbox(api: httpx2.AsyncClient, username: str = "scout") -> dict[str, Any]:
    response = await api.post("/inboxes", json={"username": username, "displayName": "Scout"})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and isinstance(body["error"], str) and body["error"]
    return body


# --- strictness ---------------------------------------------------------------------------------------


async def test_unknown_path_is_404_and_recorded_as_violation(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    _error(await api.get("/inboxes/x/mesages"), 404, "NOT_FOUND")
    assert fake.violations == ["GET /v1/inboxes/x/mesages: no such endpoint"]


async def test_wrong_method_is_405_and_recorded(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    # The reference's verify is a GET; a POST is drift.
    _error(await api.post("/domains/acme.example/verify", json={}), 405, "METHOD_NOT_ALLOWED")
    assert fake.violations and "method not allowed" in fake.violations[0]


async def test_auth_missing_invalid_and_bearer(fake: FakeHostedAPI) -> None:
    async with httpx2.AsyncClient(transport=fake.transport(), base_url="http://fake/v1") as bare:
        _error(await bare.get("/inboxes"), 401, "AUTH_MISSING")
        _error(await bare.get("/inboxes", headers={"X-API-Key": "tk_wrong"}), 401, "AUTH_INVALID")
        assert fake.violations == []
        bearer = await bare.get("/inboxes", headers={"Authorization": f"Bearer {fake.api_key}"})
        _error(bearer, 401, "AUTH_MISSING")
    assert len(fake.violations) == 1 and "Bearer" in fake.violations[0]
    assert fake.api_key not in fake.violations[0]


async def test_text_and_html_body_fields_are_violations(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    response = await api.post(
        f"/inboxes/{inbox['id']}/send",
        json={"to": SENDER, "subject": "Hi", "text": "hello", "verified": True},
    )
    body = _error(response, 400, "VALIDATION_ERROR")
    paths = {d["path"] for d in body["details"]}
    assert "text" in paths
    assert fake.violations and "plainBody/htmlBody" in fake.violations[-1]
    assert fake.stored_messages(inbox["id"]) == []


async def test_snake_case_and_coerced_types_are_rejected(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    inbox = await _inbox(api)
    _error(await api.post("/inboxes", json={"display_name": "x"}), 400, "VALIDATION_ERROR")
    message = fake.deliver_inbound(inbox["id"], from_address=SENDER, subject="s", plain_body="b")
    url = f"/inboxes/{inbox['id']}/messages/{message['id']}"
    body = _error(await api.patch(url, json={"isRead": "true"}), 400, "VALIDATION_ERROR")
    assert body["details"][0]["path"] == "isRead"
    assert len(fake.violations) == 2


async def test_only_documented_message_list_params(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    ok = await api.get(
        f"/inboxes/{inbox['id']}/messages", params={"direction": "inbound", "limit": 5, "offset": 0}
    )
    assert ok.status_code == 200 and fake.violations == []
    body = _error(
        await api.get(f"/inboxes/{inbox['id']}/messages", params={"unread": "true"}), 400, "VALIDATION_ERROR"
    )
    assert body["details"] == [{"path": "unread", "message": "unknown query parameter"}]
    _error(await api.get(f"/inboxes/{inbox['id']}/messages", params={"limit": 101}), 400, "VALIDATION_ERROR")
    assert len(fake.violations) == 1


async def test_body_on_get_and_non_json_body_rejected(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    _error(await api.request("GET", "/inboxes", json={"x": 1}), 400, "VALIDATION_ERROR")
    _error(
        await api.post(
            "/inboxes", content=b"username=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert len(fake.violations) == 2


async def test_requests_are_recorded_in_wire_shape(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    await api.post("/inboxes?reveal=false", json={"username": "rec"})
    recorded = fake.requests[-1]
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/inboxes", {"reveal": "false"})
    assert recorded.json == {"username": "rec"}
    assert recorded.headers["x-api-key"] == fake.api_key
    assert recorded.handler_ran and not recorded.scripted and recorded.status == 201


# --- semantics ----------------------------------------------------------------------------------------


async def test_inbox_create_redacts_secrets_unless_revealed(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    plain = await _inbox(api, "quiet")
    assert plain["credentialsRevealed"] is False
    assert (
        plain["apiKey"]
        == plain["imapPassword"]
        == plain["imap"]["password"]
        == plain["smtp"]["password"]
        == ""
    )
    Inbox.model_validate(plain)
    revealed = (await api.post("/inboxes?reveal=true", json={"username": "loud"})).json()
    assert revealed["credentialsRevealed"] is True and revealed["apiKey"].startswith("ak_")
    assert revealed["imap"]["password"] == revealed["imapPassword"] != ""
    # The inbox key sees its own inbox only.
    own = {"X-API-Key": revealed["apiKey"]}
    assert (await api.get(f"/inboxes/{revealed['id']}", headers=own)).status_code == 200
    _error(await api.get(f"/inboxes/{plain['id']}", headers=own), 404, "NOT_FOUND")
    _error(await api.get("/domains", headers=own), 403, "AUTH_FORBIDDEN")
    listed = InboxList.model_validate((await api.get("/inboxes", headers=own)).json())
    assert [i.id for i in listed.inboxes] == [revealed["id"]]


async def test_inbox_key_given_to_init_belongs_to_first_inbox() -> None:
    fake = FakeHostedAPI(inbox_key="ak_preset_key")
    async with httpx2.AsyncClient(
        transport=fake.transport(), base_url="http://fake/v1", headers={"X-API-Key": fake.api_key}
    ) as api:
        inbox = await _inbox(api)
        detail = await api.get(f"/inboxes/{inbox['id']}", headers={"X-API-Key": "ak_preset_key"})
        assert detail.status_code == 200
        detail_body = Inbox.model_validate(detail.json())
        assert detail_body.addresses and detail_body.addresses[0].primary
        minted = await api.post(f"/inboxes/{inbox['id']}/keys", json={"name": "ci"})
        key = InboxKey.model_validate(minted.json())
        assert minted.status_code == 201 and key.key and key.key.startswith("ak_") and key.name == "ci"
        assert fake.add_inbox_key(inbox["id"]).startswith("ak_")


async def test_send_to_unknown_address_needs_verified(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    send = {"to": "new@else.example", "subject": "Hello", "plainBody": "Hi there"}
    body = _error(await api.post(f"/inboxes/{inbox['id']}/send", json=send), 400, "VALIDATION_ERROR")
    assert body["details"][0]["path"] == "verified"
    assert fake.violations == []  # a business rule, not contract drift
    response = await api.post(
        f"/inboxes/{inbox['id']}/send", json={**send, "verified": True, "cc": ["c@x.example"]}
    )
    assert response.status_code == 201
    sent = SendResult.model_validate(response.json())
    assert sent.status == "sent" and sent.thread_id and sent.message_id
    outbound = MessageList.model_validate(
        (await api.get(f"/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()
    ).messages
    assert [(m.id, m.to_addresses, m.cc_addresses, m.plain_body) for m in outbound] == [
        (sent.id, ["new@else.example"], ["c@x.example"], "Hi there")
    ]


async def test_inbound_read_reply_and_thread(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    base = f"/inboxes/{inbox['id']}"
    delivered = fake.deliver_inbound(
        inbox["id"], from_address=SENDER, from_name="Jane", subject="Question", plain_body="Can we talk?"
    )
    listed = MessageList.model_validate((await api.get(f"{base}/messages")).json()).messages
    assert [(m.id, m.is_read, m.direction) for m in listed] == [(delivered["id"], False, "inbound")]
    got = Message.model_validate((await api.get(f"{base}/messages/{delivered['id']}")).json())
    assert got.is_read and got.from_name == "Jane" and got.attachments == []
    # A reply goes to a known sender: no `verified` needed, and it stays in the thread.
    reply = SendResult.model_validate(
        (await api.post(f"{base}/reply/{delivered['id']}", json={"plainBody": "Sure."})).json()
    )
    assert reply.thread_id == delivered["threadId"]
    thread = Thread.model_validate((await api.get(f"{base}/threads/{reply.thread_id}")).json())
    assert thread.message_count == 2 and thread.messages
    assert [m.direction for m in thread.messages] == ["inbound", "outbound"]
    assert thread.messages[1].subject == "Re: Question" and thread.messages[1].to_addresses == [SENDER]
    assert thread.messages[1].in_reply_to == got.message_id
    threads = ThreadList.model_validate((await api.get(f"{base}/threads")).json()).threads
    assert [t.id for t in threads] == [thread.id]
    # Mark unread, then soft-delete.
    marked = await api.patch(f"{base}/messages/{delivered['id']}", json={"isRead": False})
    assert Message.model_validate(marked.json()).is_read is False
    assert (await api.delete(f"{base}/messages/{delivered['id']}")).json() == {"ok": True}
    _error(await api.get(f"{base}/messages/{delivered['id']}"), 404, "NOT_FOUND")


async def test_reply_all_and_forward(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    base = f"/inboxes/{inbox['id']}"
    delivered = fake.deliver_inbound(inbox["id"], from_address=SENDER, subject="Team", plain_body="all")
    fake.state.messages[delivered["id"]].cc = ["bob@acme.example"]
    # bob is only on the thread: reaching him needs `verified`, like any unknown recipient.
    _error(await api.post(f"{base}/reply-all/{delivered['id']}", json={"plainBody": "ack"}), 400, "VALIDATION_ERROR")
    reply_all = SendResult.model_validate(
        (await api.post(f"{base}/reply-all/{delivered['id']}", json={"plainBody": "ack", "verified": True})).json()
    )
    sent = fake.state.messages[reply_all.id]
    assert sent.to == [SENDER, "bob@acme.example"]
    forward = await api.post(
        f"{base}/forward/{delivered['id']}", json={"to": "boss@else.example", "plainBody": "FYI"}
    )
    _error(forward, 400, "VALIDATION_ERROR")
    forward = await api.post(
        f"{base}/forward/{delivered['id']}",
        json={"to": "boss@else.example", "plainBody": "FYI", "verified": True},
    )
    forwarded = fake.state.messages[forward.json()["id"]]
    assert forwarded.subject == "Fwd: Team" and "FYI" in (forwarded.plain_body or "")


async def test_attachments_and_raw(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    base = f"/inboxes/{inbox['id']}"
    delivered = fake.deliver_inbound(
        inbox["id"],
        from_address=SENDER,
        subject="Invoice",
        plain_body="attached",
        attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.4 fake")],
    )
    assert delivered["hasAttachments"] is True
    listed = AttachmentList.model_validate(
        (await api.get(f"{base}/messages/{delivered['id']}/attachments")).json()
    )
    [attachment] = listed.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "invoice.pdf",
        "application/pdf",
        13,
    )
    download = await api.get(f"{base}/messages/{delivered['id']}/attachments/{attachment.id}")
    assert download.content == b"%PDF-1.4 fake"
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == 'attachment; filename="invoice.pdf"'
    raw = await api.get(f"{base}/messages/{delivered['id']}/raw")
    assert raw.headers["content-type"].startswith("message/rfc822") and b"Subject: Invoice" in raw.content
    sent = (await api.post(f"{base}/reply/{delivered['id']}", json={"plainBody": "thanks"})).json()
    _error(await api.get(f"{base}/messages/{sent['id']}/raw"), 404, "NOT_FOUND")


async def test_drafts_round_trip_and_send_deletes(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    base = f"/inboxes/{inbox['id']}/drafts"
    created = await api.post(base, json={"to": "ceo@acme.example", "subject": "Quick question"})
    draft = Draft.model_validate(created.json())
    assert created.status_code == 201 and draft.to == ["ceo@acme.example"] and draft.plain_body is None
    patched = Draft.model_validate((await api.patch(f"{base}/{draft.id}", json={"plainBody": "Hey"})).json())
    assert (patched.subject, patched.plain_body) == ("Quick question", "Hey")
    assert [d.id for d in DraftList.model_validate((await api.get(base)).json()).drafts] == [draft.id]
    _error(await api.post(f"{base}/{draft.id}/send"), 400, "VALIDATION_ERROR")  # unknown recipient
    sent = await api.post(f"{base}/{draft.id}/send", json={"verified": True})
    result = SendResult.model_validate(sent.json())
    assert sent.status_code == 201 and result.draft_id == draft.id
    _error(await api.get(f"{base}/{draft.id}"), 404, "NOT_FOUND")
    assert [m["id"] for m in fake.stored_messages(inbox["id"], "outbound")] == [result.id]


async def test_reply_draft_threads_onto_original(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    delivered = fake.deliver_inbound(inbox["id"], from_address=SENDER, subject="Ping", plain_body="?")
    base = f"/inboxes/{inbox['id']}/drafts"
    draft = (await api.post(base, json={"replyToMessageId": delivered["id"], "plainBody": "pong"})).json()
    result = SendResult.model_validate((await api.post(f"{base}/{draft['id']}/send")).json())
    assert result.thread_id == delivered["threadId"]
    assert (await api.delete(f"{base}/{draft['id']}")).status_code == 404


async def test_aliases_conflict_and_canonical(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    first, second = await _inbox(api, "one"), await _inbox(api, "two")
    added = await api.post(
        f"/inboxes/{first['id']}/addresses", json={"email": "sales@myagentmail.com", "primary": True}
    )
    inbox = Inbox.model_validate(added.json())
    assert inbox.email == "sales@myagentmail.com"
    _error(
        await api.post(f"/inboxes/{second['id']}/addresses", json={"email": "sales@myagentmail.com"}),
        409,
        "CONFLICT",
    )
    _error(await api.post("/inboxes", json={"username": "one"}), 409, "CONFLICT")
    _error(await api.delete(f"/inboxes/{first['id']}/addresses/one@myagentmail.com"), 400, "VALIDATION_ERROR")
    removed = Inbox.model_validate(
        (await api.delete(f"/inboxes/{first['id']}/addresses/sales@myagentmail.com")).json()
    )
    assert removed.email == "one@myagentmail.com"
    _error(
        await api.post(f"/inboxes/{first['id']}/addresses", json={"email": "me@unregistered.example"}),
        404,
        "NOT_FOUND",
    )


async def test_inbox_update_and_delete(api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    updated = await api.patch(
        f"/inboxes/{inbox['id']}", json={"displayName": "Scout v2", "metadata": {"a": 1}}
    )
    assert Inbox.model_validate(updated.json()).display_name == "Scout v2"
    assert (await api.delete(f"/inboxes/{inbox['id']}")).json() == {"ok": True}
    _error(await api.get(f"/inboxes/{inbox['id']}"), 404, "NOT_FOUND")


async def test_lists(api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    base = f"/inboxes/{inbox['id']}/lists"
    created = AddressList.model_validate((await api.post(base, json={"name": "leads"})).json())
    entry = ListEntry.model_validate(
        (
            await api.post(
                f"{base}/{created.id}/entries",
                json={"email": "lead@acme.example", "displayName": "Lead", "metadata": {"s": "x"}},
            )
        ).json()
    )
    full = AddressList.model_validate((await api.get(f"{base}/{created.id}")).json())
    assert full.entries and [e.email for e in full.entries] == ["lead@acme.example"]
    assert (await api.delete(f"{base}/{created.id}/entries/{entry.id}")).json() == {"ok": True}
    assert [x["id"] for x in (await api.get(base)).json()["lists"]] == [created.id]
    assert (await api.delete(f"{base}/{created.id}")).json() == {"ok": True}


async def test_domains_verify_is_get_and_gates_aliases(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    created = await api.post("/domains", json={"domain": "mail.acme.example"})
    domain = Domain.model_validate(created.json()["domain"])
    assert created.status_code == 201 and domain.status == "pending" and domain.records
    alias = {"email": "scout@mail.acme.example"}
    _error(await api.post(f"/inboxes/{inbox['id']}/addresses", json=alias), 403, "DOMAIN_NOT_VERIFIED")
    assert (
        Domain.model_validate((await api.get("/domains/mail.acme.example/verify")).json()["domain"]).status
        == "failed"
    )
    fake.mark_domain_dns_ready("mail.acme.example")
    verified = Domain.model_validate((await api.get("/domains/mail.acme.example/verify")).json()["domain"])
    assert verified.status == "verified" and verified.verified_at
    assert (await api.post(f"/inboxes/{inbox['id']}/addresses", json=alias)).status_code == 200
    zone = await api.get("/domains/mail.acme.example/zone-file")
    assert zone.headers["content-type"].startswith("text/plain") and "MX" in zone.text
    assert [d["domain"] for d in (await api.get("/domains")).json()["domains"]] == ["mail.acme.example"]
    assert (await api.delete("/domains/mail.acme.example")).json() == {"ok": True}
    _error(await api.get("/domains/mail.acme.example"), 404, "NOT_FOUND")


async def test_workspaces_keys_scope_and_cascade(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    workspace = Workspace.model_validate((await api.post("/workspaces", json={"name": "Acme"})).json())
    created = await api.post(f"/workspaces/{workspace.id}/keys", json={"name": "agent"})
    key = WorkspaceKey.model_validate(created.json())
    assert created.status_code == 201 and key.key and key.key.startswith("wk_")
    listed = (await api.get(f"/workspaces/{workspace.id}/keys")).json()["keys"]
    assert [k["id"] for k in listed] == [key.id] and "key" not in listed[0]
    scoped = {"X-API-Key": key.key}
    inbox = (await api.post("/inboxes", json={"username": "support"}, headers=scoped)).json()
    assert inbox["workspaceId"] == workspace.id
    outside = await _inbox(api, "outside")
    _error(await api.get(f"/inboxes/{outside['id']}", headers=scoped), 404, "NOT_FOUND")
    _error(await api.post("/workspaces", json={"name": "x"}, headers=scoped), 403, "AUTH_FORBIDDEN")
    assert (await api.delete(f"/workspaces/{workspace.id}/keys/{key.id}")).json() == {"ok": True}
    _error(await api.get("/inboxes", headers=scoped), 401, "AUTH_INVALID")
    assert (await api.get(f"/workspaces/{workspace.id}")).status_code == 200
    assert (await api.delete(f"/workspaces/{workspace.id}")).json() == {"ok": True}
    _error(await api.get(f"/inboxes/{inbox['id']}"), 404, "NOT_FOUND")
    assert (await api.get("/workspaces")).json() == {"workspaces": []}


async def test_webhooks_secret_shown_once(api: httpx2.AsyncClient) -> None:
    created = await api.post(
        "/webhooks", json={"url": "https://app.example/hook", "events": ["message.received"]}
    )
    hook = Webhook.model_validate(created.json())
    assert created.status_code == 201 and hook.secret and hook.is_active
    fetched = (await api.get(f"/webhooks/{hook.id}")).json()
    assert "secret" not in fetched
    patched = Webhook.model_validate(
        (await api.patch(f"/webhooks/{hook.id}", json={"isActive": False})).json()
    )
    assert patched.is_active is False
    _error(
        await api.post("/webhooks", json={"url": "https://a.example", "events": ["message.opened"]}),
        400,
        "VALIDATION_ERROR",
    )
    assert [h["id"] for h in (await api.get("/webhooks")).json()["webhooks"]] == [hook.id]
    assert (await api.delete(f"/webhooks/{hook.id}")).json() == {"ok": True}


async def test_metrics_and_verify_email(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    fake.deliver_inbound(inbox["id"], from_address=SENDER, subject="a", plain_body="b")
    metrics = Metrics.model_validate((await api.get("/metrics", params={"inbox": inbox["id"]})).json())
    assert metrics.counts == {"sent": 0, "received": 1, "bounced": 0} and metrics.resources["inboxes"] == 1
    one = VerifyEmailResult.model_validate((await api.post("/verify-email", json={"email": SENDER})).json())
    assert one.valid and one.mx
    many = (await api.post("/verify-email", json={"emails": ["bad", "x@example.invalid"]})).json()["results"]
    assert [(r["valid"], r["reason"]) for r in many] == [(False, "invalid_syntax"), (False, "no_mx")]
    _error(await api.post("/verify-email", json={}), 400, "VALIDATION_ERROR")


# --- scripting ----------------------------------------------------------------------------------------


async def test_scripted_429_with_retry_after_then_normal(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    fake.script("GET", "/v1/inboxes", status=429, times=2)
    for _ in range(2):
        limited = await api.get("/inboxes")
        _error(limited, 429, "RATE_LIMITED")
        assert limited.headers["retry-after"] == "1" and limited.headers["x-ratelimit-bucket"] == "default"
    assert (await api.get("/inboxes")).status_code == 200
    assert [r.scripted for r in fake.requests] == [True, True, False]
    assert fake.pending_scripts == []


async def test_scripted_5xx_on_send_sends_nothing(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    fake.script("POST", "/v1/inboxes/*/send", status=502, code="PROVIDER_ERROR")
    send = {"to": "a@b.example", "subject": "s", "plainBody": "p", "verified": True}
    _error(await api.post(f"/inboxes/{inbox['id']}/send", json=send), 502, "PROVIDER_ERROR")
    assert fake.requests[-1].scripted and not fake.requests[-1].handler_ran
    assert fake.stored_messages(inbox["id"]) == []


async def test_scripted_failure_after_handler_means_sent(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    inbox = await _inbox(api)
    fake.script("POST", "/v1/inboxes/*/send", status=500, after_handler=True)
    send = {"to": "a@b.example", "subject": "s", "plainBody": "p", "verified": True}
    _error(await api.post(f"/inboxes/{inbox['id']}/send", json=send), 500, "INTERNAL_ERROR")
    assert fake.requests[-1].handler_ran
    assert len(fake.stored_messages(inbox["id"], "outbound")) == 1


async def test_scripted_custom_json_and_method_mismatch(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    fake.script("POST", "/v1/inboxes", status=403, json={"error": "cap", "code": "PLAN_LIMIT_REACHED"})
    assert (await api.get("/inboxes")).status_code == 200  # GET does not match a POST script
    _error(await api.post("/inboxes", json={}), 403, "PLAN_LIMIT_REACHED")


async def test_scripted_drop_in_process_is_a_transport_error(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    fake.script("GET", "/v1/inboxes", status=0, drop=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        await api.get("/inboxes")
    assert fake.requests[-1].scripted and fake.requests[-1].status is None
    assert (await api.get("/inboxes")).status_code == 200


async def test_scripted_delay_times_out_in_process(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    fake.script("GET", "/v1/inboxes", status=200, json={"inboxes": []}, delay=5.0)
    with pytest.raises(httpx2.ReadTimeout):
        await api.get("/inboxes", timeout=0.1)
    fake.script("GET", "/v1/inboxes", status=200, json={"inboxes": []}, delay=0.01)
    assert (await api.get("/inboxes", timeout=1)).json() == {"inboxes": []}


async def test_served_delay_times_out_and_drop_closes(fake: FakeHostedAPI) -> None:
    async with (
        fake.serving() as base_url,
        httpx2.AsyncClient(base_url=base_url + "/v1", headers={"X-API-Key": fake.api_key}) as api,
    ):
        assert (await api.get("/inboxes")).json() == {"inboxes": []}
        fake.script("GET", "/v1/inboxes", status=200, json={"inboxes": []}, delay=2.0)
        with pytest.raises(httpx2.ReadTimeout):
            await api.get("/inboxes", timeout=0.2)
        fake.script("GET", "/v1/inboxes", status=0, drop=True)
        with pytest.raises(httpx2.TransportError):
            await api.get("/inboxes")
        assert (await api.get("/inboxes")).status_code == 200


# --- WebSocket ----------------------------------------------------------------------------------------


async def _frame(ws: Any) -> dict[str, Any]:
    with anyio.fail_after(5):
        frame: dict[str, Any] = await ws.receive_json()
        return frame


async def test_websocket_in_process_subscribe_and_events(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    inbox = await _inbox(api)
    async with api.websocket("/ws", headers={"X-API-Key": fake.api_key}) as ws:
        assert await _frame(ws) == {"type": "connected", "inboxId": None, "email": None}
        await ws.send_json(
            {
                "type": "subscribe",
                "event_types": ["message.received", "message.sent"],
                "inbox_ids": [inbox["id"]],
            }
        )
        assert await _frame(ws) == {
            "type": "subscribed",
            "event_types": ["message.received", "message.sent"],
            "inbox_ids": [inbox["id"]],
            "workspace_ids": [],
        }
        await ws.send_json({"type": "pong"})
        delivered = fake.deliver_inbound(
            inbox["id"],
            from_address=SENDER,
            subject="Code 483921",
            plain_body="Your code: 483921",
            html_body="<p>483921</p>",
        )
        event = await _frame(ws)
        assert event["type"] == "event" and event["event_type"] == "message.received"
        assert event["event_id"].startswith("evt_")
        assert event["message"] == {
            "inbox_id": inbox["id"],
            "thread_id": delivered["threadId"],
            "message_id": delivered["id"],
            "from": SENDER,
            "to": [inbox["email"]],
            "subject": "Code 483921",
            "plain_body": "Your code: 483921",
            "html_body": "<p>483921</p>",
            "timestamp": delivered["receivedAt"],
        }
        assert event["thread"] == {"thread_id": delivered["threadId"], "subject": "Code 483921"}
        await api.post(f"/inboxes/{inbox['id']}/reply/{delivered['id']}", json={"plainBody": "thanks"})
        sent = await _frame(ws)
        assert sent["event_type"] == "message.sent" and sent["message"]["to"] == [SENDER]
    assert fake.violations == []


async def test_websocket_subscribe_errors(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    async with api.websocket("/ws", params={"api_key": fake.api_key}) as ws:
        await _frame(ws)
        await ws.send_json({"type": "subscribe", "inbox_ids": [f"i{n}" for n in range(11)]})
        assert (await _frame(ws))["type"] == "error"
        await ws.send_json({"type": "subscribe", "inbox_ids": ["nope"]})
        assert await _frame(ws) == {"type": "error", "message": "Forbidden inbox_id: nope"}
        await ws.send_text("not json")
        assert (await _frame(ws))["type"] == "error"


async def test_websocket_before_subscribe_gets_nothing_then_pings() -> None:
    fake = FakeHostedAPI(ws_ping_interval=0.05)
    async with httpx2.AsyncClient(
        transport=fake.transport(), base_url="http://fake/v1", headers={"X-API-Key": fake.api_key}
    ) as local_api:
        inbox = await _inbox(local_api)
        async with local_api.websocket("/ws") as ws:
            await _frame(ws)
            fake.deliver_inbound(inbox["id"], from_address=SENDER, subject="early", plain_body="x")
            assert await _frame(ws) == {"type": "ping"}


async def test_legacy_inbox_socket_is_auto_subscribed(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox, other = await _inbox(api, "mine"), await _inbox(api, "other")
    async with api.websocket(f"/inboxes/{inbox['id']}/ws") as ws:
        assert await _frame(ws) == {"type": "connected", "inboxId": inbox["id"], "email": inbox["email"]}
        fake.deliver_inbound(other["id"], from_address=SENDER, subject="not mine", plain_body="x")
        fake.deliver_inbound(inbox["id"], from_address=SENDER, subject="mine", plain_body="x")
        assert (await _frame(ws))["message"]["subject"] == "mine"


async def test_websocket_refusals(fake: FakeHostedAPI) -> None:
    async with httpx2.AsyncClient(transport=fake.transport(), base_url="http://fake/v1") as bare:
        with pytest.raises(WebSocketUpgradeError) as denied:
            async with bare.websocket("/ws"):
                pass
        assert denied.value.response.status_code == 401
        fake.refuse_websockets = True
        with pytest.raises(WebSocketDisconnect):
            async with bare.websocket("/ws", headers={"X-API-Key": fake.api_key}):
                pass


async def test_server_side_disconnect_then_refused_reconnect(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    async with api.websocket("/ws") as ws:
        await _frame(ws)
        fake.disconnect_websockets()
        with anyio.fail_after(5), pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
        assert closed.value.code == 1012
    assert fake.hub.subscriber_count == 0
    fake.refuse_websockets = True
    with pytest.raises(WebSocketDisconnect):
        async with api.websocket("/ws"):
            pass


async def test_websocket_under_uvicorn(fake: FakeHostedAPI) -> None:
    inbox_id = fake.seed_inbox("served")["id"]
    async with fake.serving() as base_url, httpx2.AsyncClient(base_url=base_url + "/v1") as client:
        async with client.websocket("/ws", headers={"X-API-Key": fake.api_key}) as ws:
            assert (await _frame(ws))["type"] == "connected"
            await ws.send_json({"type": "subscribe", "event_types": ["message.received"]})
            assert (await _frame(ws))["type"] == "subscribed"
            fake.deliver_inbound(
                inbox_id,
                from_address=SENDER,
                subject="big",
                plain_body="x",
                html_body="<p>" + "y" * 50_000 + "</p>",
            )
            event = await _frame(ws)
            assert event["message"]["subject"] == "big" and event["message"]["inbox_id"] == inbox_id
        fake.refuse_websockets = True
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with client.websocket("/ws", headers={"X-API-Key": fake.api_key}):
                pass
        assert refused.value.response.status_code == 403


# --- LinkedIn hook ------------------------------------------------------------------------------------


async def test_linkedin_routes_are_mounted_under_v1_linkedin(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("tests.fakes.hosted_linkedin")
    module.__spec__ = importlib.machinery.ModuleSpec("tests.fakes.hosted_linkedin", None)

    def linkedin_routes(fake: FakeHostedAPI) -> list[BaseRoute]:
        async def sessions(request: Request) -> JSONResponse:
            fake.key_scope(request)
            return JSONResponse({"sessions": []})

        return [fake.route("GET", "/sessions", sessions)]

    module.linkedin_routes = linkedin_routes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests.fakes.hosted_linkedin", module)
    fake = FakeHostedAPI()
    async with httpx2.AsyncClient(
        transport=fake.transport(), base_url="http://fake/v1", headers={"X-API-Key": fake.api_key}
    ) as api:
        assert (await api.get("/linkedin/sessions")).json() == {"sessions": []}
        _error(await api.get("/linkedin/sessions", params={"x": 1}), 400, "VALIDATION_ERROR")
        _error(await api.delete("/linkedin/sessions"), 405, "METHOD_NOT_ALLOWED")


# --- coverage of the reference and state switches ------------------------------------------------------

CHEATSHEET = """
POST /v1/inboxes
GET /v1/inboxes
GET /v1/inboxes/:id
PATCH /v1/inboxes/:id
DELETE /v1/inboxes/:id
POST /v1/inboxes/:id/addresses
DELETE /v1/inboxes/:id/addresses/:address
POST /v1/inboxes/:id/keys
POST /v1/inboxes/:id/send
POST /v1/inboxes/:id/reply/:mid
POST /v1/inboxes/:id/reply-all/:mid
POST /v1/inboxes/:id/forward/:mid
GET /v1/inboxes/:id/messages
GET /v1/inboxes/:id/messages/:mid
PATCH /v1/inboxes/:id/messages/:mid
DELETE /v1/inboxes/:id/messages/:mid
GET /v1/inboxes/:id/messages/:mid/raw
GET /v1/inboxes/:id/messages/:mid/attachments
GET /v1/inboxes/:id/messages/:mid/attachments/:aid
GET /v1/inboxes/:id/threads
GET /v1/inboxes/:id/threads/:tid
POST /v1/inboxes/:id/drafts
GET /v1/inboxes/:id/drafts
GET /v1/inboxes/:id/drafts/:did
PATCH /v1/inboxes/:id/drafts/:did
DELETE /v1/inboxes/:id/drafts/:did
POST /v1/inboxes/:id/drafts/:did/send
GET /v1/inboxes/:id/lists
POST /v1/inboxes/:id/lists
GET /v1/inboxes/:id/lists/:lid
DELETE /v1/inboxes/:id/lists/:lid
POST /v1/inboxes/:id/lists/:lid/entries
DELETE /v1/inboxes/:id/lists/:lid/entries/:eid
POST /v1/domains
GET /v1/domains
GET /v1/domains/:domain
GET /v1/domains/:domain/verify
GET /v1/domains/:domain/zone-file
DELETE /v1/domains/:domain
POST /v1/workspaces
GET /v1/workspaces
GET /v1/workspaces/:id
DELETE /v1/workspaces/:id
POST /v1/workspaces/:id/keys
GET /v1/workspaces/:id/keys
DELETE /v1/workspaces/:id/keys/:kid
POST /v1/webhooks
GET /v1/webhooks
GET /v1/webhooks/:id
PATCH /v1/webhooks/:id
DELETE /v1/webhooks/:id
GET /v1/metrics
POST /v1/verify-email
"""


def test_every_cheatsheet_endpoint_has_a_route(fake: FakeHostedAPI) -> None:
    missing = []
    for line in CHEATSHEET.strip().splitlines():
        method, path = line.split()
        concrete = "/".join("x1" if part.startswith(":") else part for part in path.split("/"))
        scope = {"type": "http", "method": method, "path": concrete, "root_path": ""}
        if not any(route.matches(scope)[0] == Match.FULL for route in fake.routes):
            missing.append(line)
    assert missing == []
    ws_scope = {"type": "websocket", "path": "/v1/inboxes/x1/ws", "root_path": ""}
    assert any(route.matches(ws_scope)[0] == Match.FULL for route in fake.routes)


async def test_paused_inbox_plan_limit_and_bounce(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    inbox = await _inbox(api)
    send = {"to": "a@b.example", "subject": "s", "plainBody": "p", "verified": True}
    sent = (await api.post(f"/inboxes/{inbox['id']}/send", json=send)).json()
    fake.bounce(sent["id"])
    metrics = Metrics.model_validate((await api.get("/metrics")).json())
    assert metrics.counts == {"sent": 1, "received": 0, "bounced": 1}
    assert [e.event_type for e in fake.hub.published] == ["message.sent", "message.bounced"]
    fake.pause_inbox(inbox["id"])
    _error(await api.post(f"/inboxes/{inbox['id']}/send", json=send), 403, "INBOX_PAUSED")
    fake.limit_inboxes(1)
    _error(await api.post("/inboxes", json={"username": "more"}), 403, "PLAN_LIMIT_REACHED")
    assert fake.violations == []


async def test_workspace_key_socket_is_locked_to_its_workspace(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    workspace = (await api.post("/workspaces", json={"name": "Acme"})).json()
    other = (await api.post("/workspaces", json={"name": "Other"})).json()
    key = (await api.post(f"/workspaces/{workspace['id']}/keys", json={})).json()["key"]
    inside = (await api.post("/inboxes", json={"username": "in"}, headers={"X-API-Key": key})).json()
    outside = await _inbox(api, "out")
    async with api.websocket("/ws", headers={"X-API-Key": key}) as ws:
        await _frame(ws)
        await ws.send_json({"type": "subscribe", "pod_ids": [other["id"]]})
        assert await _frame(ws) == {"type": "error", "message": f"Forbidden workspace_id: {other['id']}"}
        await ws.send_json({"type": "subscribe", "pod_ids": [workspace["id"]]})
        assert (await _frame(ws))["workspace_ids"] == [workspace["id"]]
        fake.deliver_inbound(outside["id"], from_address=SENDER, subject="outside", plain_body="x")
        fake.deliver_inbound(inside["id"], from_address=SENDER, subject="inside", plain_body="x")
        assert (await _frame(ws))["message"]["subject"] == "inside"


async def test_resubscribe_replaces_filters(fake: FakeHostedAPI, api: httpx2.AsyncClient) -> None:
    first, second = await _inbox(api, "first"), await _inbox(api, "second")
    async with api.websocket("/ws") as ws:
        await _frame(ws)
        await ws.send_json({"type": "subscribe", "inbox_ids": [first["id"]]})
        await _frame(ws)
        fake.deliver_inbound(second["id"], from_address=SENDER, subject="filtered out", plain_body="x")
        await ws.send_json({"type": "subscribe"})
        assert (await _frame(ws))["inbox_ids"] == []
        fake.deliver_inbound(second["id"], from_address=SENDER, subject="now seen", plain_body="x")
        assert (await _frame(ws))["message"]["subject"] == "now seen"


async def test_drop_after_handler_means_sent_but_answer_lost(
    fake: FakeHostedAPI, api: httpx2.AsyncClient
) -> None:
    inbox = await _inbox(api)
    fake.script("POST", "/v1/inboxes/*/send", status=0, drop=True, after_handler=True)
    send = {"to": "a@b.example", "subject": "s", "plainBody": "p", "verified": True}
    with pytest.raises(httpx2.RemoteProtocolError):
        await api.post(f"/inboxes/{inbox['id']}/send", json=send)
    assert len(fake.stored_messages(inbox["id"], "outbound")) == 1
