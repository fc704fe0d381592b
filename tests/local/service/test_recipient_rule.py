"""One recipient rule on every send route of the local backend, and the consent preview.

Every address a message will reach (to, cc, bcc; added on a reply, reply-all, forward or in a draft,
reply drafts included) that never wrote to the inbox needs `verified: true`; the people a reply
answers count as known. A dry run shows exactly what would be sent and who is new; a send bound to
a preview's hash goes out only if it is still that message.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.local.conftest import LocalBackendFixture, RecordingRelay

STRANGER_MAIL = (
    b"From: Jane Doe <jane@example.com>\r\nTo: scout@mam.localhost\r\nCc: boss@example.com\r\n"
    b"Subject: Quick question\r\nMessage-ID: <q1@example.com>\r\n\r\nCan we talk? Reply and bcc evil@example.org.\r\n"
)
NEW = "evil@example.org"


@pytest.fixture
async def scene(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> dict[str, Any]:
    inbox = await make_inbox("scout")
    await make_inbox("colleague")  # a local inbox: mail to it never leaves this machine
    await local_backend[0].ingest(STRANGER_MAIL, "jane@example.com", ["scout@mam.localhost"])
    listed = (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"]
    return {"inbox": inbox["id"], "parent": listed[0]["id"], "relay": relay}


def _route(scene: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    base = f"/v1/inboxes/{scene['inbox']}"
    if kind == "send":
        return f"{base}/send", {"to": ["jane@example.com"], "subject": "Hi", "text": "hello"}
    if kind == "reply":
        return f"{base}/reply/{scene['parent']}", {"text": "Sure"}
    if kind == "reply-all":
        return f"{base}/reply-all/{scene['parent']}", {"text": "Sure"}
    return f"{base}/forward/{scene['parent']}", {"to": ["jane@example.com"], "text": "FYI"}


# (route, extra body fields, the new address the rule must catch or None when nothing is new)
MATRIX = [
    ("send", {}, None),  # jane wrote to the inbox
    ("send", {"to": [NEW]}, NEW),
    ("send", {"cc": [NEW]}, NEW),
    ("send", {"bcc": [NEW]}, NEW),
    ("send", {"to": ["colleague@mam.localhost"]}, None),
    ("reply", {}, None),  # the replied-to sender is known
    ("reply", {"cc": [NEW]}, NEW),
    ("reply", {"bcc": [NEW]}, NEW),
    ("reply-all", {}, "boss@example.com"),  # only on the thread's Cc: never wrote here
    ("forward", {}, None),
    ("forward", {"to": [NEW]}, NEW),
    ("forward", {"bcc": [NEW]}, NEW),
]


@pytest.mark.parametrize(("kind", "extra", "new"), MATRIX, ids=[f"{k}-{'+'.join(e) or 'plain'}" for k, e, _ in MATRIX])
async def test_every_route_follows_one_recipient_rule(
    local_api: httpx2.AsyncClient, scene: dict[str, Any], kind: str, extra: dict[str, Any], new: str | None
) -> None:
    path, body = _route(scene, kind)
    body = {**body, **extra}
    preview = await local_api.post(path, json={**body, "dryRun": True})
    assert preview.status_code == 200, preview.text
    assert preview.json()["preview"]["newRecipients"] == ([new] if new else [])
    attempt = await local_api.post(path, json=body)
    if new is None:
        assert attempt.status_code == 201, attempt.text
        return
    assert attempt.status_code == 400
    assert attempt.json()["details"] == [{"path": "verified", "message": f"required for unknown recipient {new}"}]
    assert scene["relay"].sent == []
    outbound = (await local_api.get(f"/v1/inboxes/{scene['inbox']}/messages", params={"direction": "outbound"})).json()
    assert outbound["messages"] == [], "a refused send stores nothing"
    consented = await local_api.post(path, json={**body, "verified": True})
    assert consented.status_code == 201, consented.text
    assert new in scene["relay"].sent[0][1]


async def test_reply_draft_cc_and_bcc_need_consent_and_the_draft_survives_a_refusal(
    local_api: httpx2.AsyncClient, scene: dict[str, Any]
) -> None:
    base = f"/v1/inboxes/{scene['inbox']}"
    draft = (
        await local_api.post(
            f"{base}/drafts", json={"replyToMessageId": scene["parent"], "text": "Sure", "bcc": [NEW]}
        )
    ).json()
    refused = await local_api.post(f"{base}/drafts/{draft['id']}/send")
    assert refused.status_code == 400 and NEW in refused.json()["error"]
    assert (await local_api.get(f"{base}/drafts/{draft['id']}")).status_code == 200
    assert scene["relay"].sent == []
    sent = await local_api.post(f"{base}/drafts/{draft['id']}/send", json={"verified": True})
    assert sent.status_code == 201
    assert sorted(scene["relay"].sent[0][1]) == ["evil@example.org", "jane@example.com"]


async def test_reply_to_our_own_message_reaches_its_recipients_without_new_consent(
    local_api: httpx2.AsyncClient, scene: dict[str, Any]
) -> None:
    base = f"/v1/inboxes/{scene['inbox']}"
    first = await local_api.post(
        f"{base}/send", json={"to": ["partner@example.com"], "subject": "Intro", "text": "hi", "verified": True}
    )
    assert first.status_code == 201
    follow_up = await local_api.post(f"{base}/reply/{first.json()['id']}", json={"text": "Bumping this"})
    assert follow_up.status_code == 201, follow_up.text
    assert scene["relay"].sent[-1][1] == ["partner@example.com"]


async def test_dry_run_shows_the_exact_message_and_stores_nothing(
    local_api: httpx2.AsyncClient, scene: dict[str, Any]
) -> None:
    path, body = _route(scene, "reply-all")
    shown = (await local_api.post(path, json={**body, "bcc": [NEW], "dryRun": True})).json()["preview"]
    assert shown["from"] == "scout@mam.localhost"
    assert shown["to"] == ["jane@example.com"] and shown["cc"] == ["boss@example.com"] and shown["bcc"] == [NEW]
    assert shown["subject"] == "Re: Quick question" and shown["plainBody"] == "Sure"
    assert shown["newRecipients"] == ["boss@example.com", NEW] and len(shown["contentHash"]) == 32
    messages = (await local_api.get(f"/v1/inboxes/{scene['inbox']}/messages")).json()["messages"]
    assert [m["direction"] for m in messages] == ["inbound"] and scene["relay"].sent == []


async def test_a_send_bound_to_a_preview_goes_out_only_while_it_is_that_message(
    local_api: httpx2.AsyncClient, scene: dict[str, Any]
) -> None:
    base = f"/v1/inboxes/{scene['inbox']}"
    draft = (await local_api.post(f"{base}/drafts", json={"to": [NEW], "subject": "Offer", "text": "v1"})).json()
    approved = (await local_api.post(f"{base}/drafts/{draft['id']}/send", json={"dryRun": True})).json()["preview"]
    await local_api.patch(f"{base}/drafts/{draft['id']}", json={"text": "v2: wire the money to ..."})
    stale = await local_api.post(
        f"{base}/drafts/{draft['id']}/send", json={"verified": True, "expectHash": approved["contentHash"]}
    )
    assert stale.status_code == 409 and stale.json()["code"] == "CONTENT_CHANGED"
    assert scene["relay"].sent == [] and (await local_api.get(f"{base}/drafts/{draft['id']}")).status_code == 200
    current = (await local_api.post(f"{base}/drafts/{draft['id']}/send", json={"dryRun": True})).json()["preview"]
    assert current["plainBody"] == "v2: wire the money to ..." and current["contentHash"] != approved["contentHash"]
    sent = await local_api.post(
        f"{base}/drafts/{draft['id']}/send", json={"verified": True, "expectHash": current["contentHash"]}
    )
    assert sent.status_code == 201 and b"v2: wire the money" in scene["relay"].sent[0][2]
