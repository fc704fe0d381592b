"""REST: address lists, domains, workspaces and their keys, webhooks, metrics, verify-email."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest

from mam_mcp.client.models import (
    AddressList,
    Domain,
    Metrics,
    VerifyEmailResult,
    Webhook,
    Workspace,
    WorkspaceKey,
)
from mam_mcp.local.api import admin as admin_routes_module
from mam_mcp.local.events.model import MailEvent
from tests.local.conftest import FAKE_TXT, LocalBackendFixture


async def test_lists_and_entries(local_api: httpx2.AsyncClient, make_inbox: Any) -> None:
    inbox = await make_inbox("scout")
    base = f"/v1/inboxes/{inbox['id']}/lists"
    created = await local_api.post(base, json={"name": "active leads", "description": "qualified"})
    assert created.status_code == 201
    lst = AddressList.model_validate(created.json())
    entry = await local_api.post(f"{base}/{lst.id}/entries",
                                 json={"email": "lead@example.com", "displayName": "Jane", "metadata": {"source": "li"}})  # fmt: skip
    assert entry.status_code == 201
    full = AddressList.model_validate((await local_api.get(f"{base}/{lst.id}")).json())
    assert [(e.email, e.display_name, e.metadata) for e in full.entries or []] == [
        ("lead@example.com", "Jane", {"source": "li"})
    ]
    assert (await local_api.post(f"{base}/{lst.id}/entries", json={"email": "nope"})).status_code == 400
    assert (await local_api.delete(f"{base}/{lst.id}/entries/{entry.json()['id']}")).json() == {"ok": True}
    assert [x["id"] for x in (await local_api.get(base)).json()["lists"]] == [lst.id]
    assert (await local_api.delete(f"{base}/{lst.id}")).json() == {"ok": True}
    assert (await local_api.get(f"{base}/{lst.id}")).status_code == 404


async def test_domains_records_verify_zone_file_and_alias(
    local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    created = await local_api.post("/v1/domains", json={"domain": "Mail.YourCo.example"})
    assert created.status_code == 201
    domain = Domain.model_validate(created.json()["domain"])
    assert domain.domain == "mail.yourco.example" and domain.status == "pending"
    txt = next(r for r in domain.records if r.type == "TXT")
    assert (await local_api.post("/v1/domains", json={"domain": "mail.yourco.example"})).status_code == 409
    inbox = await make_inbox("scout")
    alias = {"email": "scout@mail.yourco.example", "primary": True}
    early = await local_api.post(f"/v1/inboxes/{inbox['id']}/addresses", json=alias)
    assert early.status_code == 403 and early.json()["code"] == "DOMAIN_NOT_VERIFIED"
    failed = (await local_api.get("/v1/domains/mail.yourco.example/verify")).json()["domain"]
    assert failed["status"] == "failed"
    FAKE_TXT[txt.host] = [txt.value]
    try:
        verified = (await local_api.get("/v1/domains/mail.yourco.example/verify")).json()["domain"]
    finally:
        FAKE_TXT.clear()
    assert verified["status"] == "verified" and verified["verifiedAt"]
    assert (await local_api.post(f"/v1/inboxes/{inbox['id']}/addresses", json=alias)).status_code == 200
    zone = await local_api.get("/v1/domains/mail.yourco.example/zone-file")
    assert zone.headers["content-type"].startswith("text/plain") and txt.value in zone.text
    assert [d["domain"] for d in (await local_api.get("/v1/domains")).json()["domains"]] == [
        "mail.yourco.example"
    ]
    assert (await local_api.delete("/v1/domains/mail.yourco.example")).json() == {"ok": True}
    assert (await local_api.get("/v1/domains/mail.yourco.example")).status_code == 404


async def test_workspaces_keys_and_cascading_delete(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient
) -> None:
    ws = Workspace.model_validate((await local_api.post("/v1/workspaces", json={"name": "Acme"})).json())
    created = await local_api.post(f"/v1/workspaces/{ws.id}/keys", json={"name": "acme agent"})
    key = WorkspaceKey.model_validate(created.json())
    assert created.status_code == 201 and key.key is not None and key.key.startswith("wk_")
    listed = (await local_api.get(f"/v1/workspaces/{ws.id}/keys")).json()["keys"]
    assert [k["id"] for k in listed] == [key.id] and "key" not in listed[0]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=local_backend[1]), base_url="http://t",
                                  headers={"X-API-Key": key.key}) as acme:  # fmt: skip
        inbox = (await acme.post("/v1/inboxes", json={"username": "support"})).json()
        assert inbox["workspaceId"] == ws.id
        assert (await local_api.get("/v1/inboxes", params={"workspace": ws.id})).json()["inboxes"][0][
            "id"
        ] == inbox["id"]
        assert (await local_api.delete(f"/v1/workspaces/{ws.id}/keys/{key.id}")).json() == {"ok": True}
        assert (await acme.get("/v1/inboxes")).json()["code"] == "AUTH_INVALID"
    assert [w["name"] for w in (await local_api.get("/v1/workspaces")).json()["workspaces"]] == ["Acme"]
    assert (await local_api.delete(f"/v1/workspaces/{ws.id}")).json() == {"ok": True}
    assert (await local_api.get(f"/v1/inboxes/{inbox['id']}")).status_code == 404
    assert (await local_api.get(f"/v1/workspaces/{ws.id}")).status_code == 404


async def test_webhooks_secret_once_and_targets(local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient,
                                                make_inbox: Any) -> None:  # fmt: skip
    inbox = await make_inbox("scout")
    created = await local_api.post(
        "/v1/webhooks", json={"url": "https://hooks.example/x", "events": ["message.received"]}
    )
    assert created.status_code == 201
    hook = Webhook.model_validate(created.json())
    assert hook.secret and hook.secret.startswith("whsec_")
    fetched = (await local_api.get(f"/v1/webhooks/{hook.id}")).json()
    assert "secret" not in fetched and fetched["events"] == ["message.received"]
    assert all("secret" not in w for w in (await local_api.get("/v1/webhooks")).json()["webhooks"])
    bad = await local_api.post(
        "/v1/webhooks", json={"url": "https://hooks.example/x", "events": ["message.exploded"]}
    )
    assert bad.status_code == 400 and bad.json()["details"][0]["path"] == "events"
    assert (await local_api.post("/v1/webhooks", json={"url": "ftp://x.example/y"})).status_code == 400
    backend = local_backend[0]
    event = MailEvent("message.received", inbox_id=inbox["id"], tenant_id=backend.inbox_owner(inbox["id"])[0],  # type: ignore[index]
                       workspace_id=None, message={}, thread={})  # fmt: skip
    targets = await backend.webhook_targets(event)
    assert [(t.id, t.url, t.secret) for t in targets] == [(hook.id, "https://hooks.example/x", hook.secret)]
    paused = await local_api.patch(f"/v1/webhooks/{hook.id}", json={"isActive": False})
    assert paused.json()["isActive"] is False
    assert await backend.webhook_targets(event) == []
    assert (await local_api.delete(f"/v1/webhooks/{hook.id}")).json() == {"ok": True}
    assert (await local_api.get(f"/v1/webhooks/{hook.id}")).status_code == 404


async def test_metrics_counts_and_scope(local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient,
                                        make_inbox: Any) -> None:  # fmt: skip
    a, b = await make_inbox("a1"), await make_inbox("b1")
    await local_api.post(f"/v1/inboxes/{a['id']}/send", json={"to": b["email"], "subject": "s", "text": "t"})
    metrics = Metrics.model_validate((await local_api.get("/v1/metrics")).json())
    assert metrics.counts == {"sent": 1, "received": 1, "bounced": 0} and metrics.resources["inboxes"] == 2
    only_b = (await local_api.get("/v1/metrics", params={"inbox": b["id"]})).json()
    assert (
        only_b["counts"] == {"sent": 0, "received": 1, "bounced": 0} and only_b["scope"]["inboxId"] == b["id"]
    )
    future = (await local_api.get("/v1/metrics", params={"from": "2999-01-01T00:00:00Z"})).json()
    assert future["counts"] == {"sent": 0, "received": 0, "bounced": 0}


async def test_verify_email_single_batch_and_timeout(
    local_backend: LocalBackendFixture,
    local_api: httpx2.AsyncClient,
    make_inbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await make_inbox("scout")
    one = VerifyEmailResult.model_validate(
        (await local_api.post("/v1/verify-email", json={"email": "a@example.com"})).json()
    )
    assert one.valid and one.mx == ["mx1.example.com"]
    batch = (await local_api.post("/v1/verify-email", json={"emails": [
        "scout@mam.localhost", "ghost@mam.localhost", "x@no-mx.example", "not an address"]})).json()["results"]  # fmt: skip
    assert [(r["valid"], r["reason"]) for r in batch] == [
        (True, "local_inbox"),
        (False, "no_such_local_inbox"),
        (False, "no_mx_records"),
        (False, "invalid_syntax"),
    ]

    async def hanging(domain: str) -> list[str]:
        await anyio.sleep_forever()
        return []

    local_backend[0].mx_resolver = hanging
    monkeypatch.setattr(admin_routes_module, "VERIFY_TIMEOUT_SECONDS", 0.05)
    slow = (await local_api.post("/v1/verify-email", json={"email": "a@example.com"})).json()
    assert slow == {"email": "a@example.com", "valid": False, "reason": "dns_timeout", "mx": []}
