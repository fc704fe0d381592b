"""REST: inboxes, addresses, inbox keys, auth errors, lockout and health."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

import mam_mcp
from mam_mcp.client.models import Inbox, InboxKey, InboxList
from mam_mcp.local.auth.keys import LOCKOUT_FAILURES, FailedAuthLockout
from tests.local.conftest import LocalBackendFixture, RecordingRelay


def _client(app: Any, key: str | None = None, **headers: str) -> httpx2.AsyncClient:
    if key is not None:
        headers["X-API-Key"] = key
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://local.test", headers=headers
    )


async def test_create_redacts_credentials_unless_revealed(local_api: httpx2.AsyncClient) -> None:
    plain = await local_api.post("/v1/inboxes", json={"username": "scout", "displayName": "Scout"})
    assert plain.status_code == 201
    body = plain.json()
    assert body["apiKey"] == "" and body["imapPassword"] == "" and body["credentialsRevealed"] is False
    assert body["email"] == "scout@mam.localhost" and body["displayName"] == "Scout"
    Inbox.model_validate(body)
    revealed = (await local_api.post("/v1/inboxes?reveal=true", json={"username": "scout2"})).json()
    assert revealed["credentialsRevealed"] is True and revealed["apiKey"].startswith("ak_")
    listed = InboxList.model_validate((await local_api.get("/v1/inboxes")).json())
    assert {i.email for i in listed.inboxes} == {"scout@mam.localhost", "scout2@mam.localhost"}
    assert all(i.api_key is None for i in listed.inboxes)


async def test_revealed_inbox_key_reaches_only_its_inbox(
    local_backend: LocalBackendFixture, make_inbox: Any
) -> None:
    _, app, _ = local_backend
    mine = await make_inbox("mine")
    other = await make_inbox("other")
    async with _client(app, mine["apiKey"]) as client:
        assert (await client.get(f"/v1/inboxes/{mine['id']}")).status_code == 200
        assert (await client.get(f"/v1/inboxes/{other['id']}")).json()["code"] == "NOT_FOUND"
        assert [i["id"] for i in (await client.get("/v1/inboxes")).json()["inboxes"]] == [mine["id"]]


async def test_get_update_and_delete_inbox(local_api: httpx2.AsyncClient, make_inbox: Any) -> None:
    inbox = await make_inbox("scout")
    detail = (await local_api.get(f"/v1/inboxes/{inbox['id']}")).json()
    assert detail["addresses"] == [
        {"email": "scout@mam.localhost", "primary": True, "createdAt": detail["createdAt"]}
    ]
    assert detail["smtp"]["password"] == "" and "apiKey" not in detail
    patched = await local_api.patch(
        f"/v1/inboxes/{inbox['id']}", json={"displayName": "Scout v2", "metadata": {"a": 1}}
    )
    assert patched.status_code == 200 and patched.json()["displayName"] == "Scout v2"
    assert patched.json()["metadata"] == {"a": 1}
    assert (await local_api.delete(f"/v1/inboxes/{inbox['id']}")).json() == {"ok": True}
    assert (await local_api.get(f"/v1/inboxes/{inbox['id']}")).status_code == 404


async def test_deleted_inbox_key_stops_working(local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient,
                                               make_inbox: Any) -> None:  # fmt: skip
    inbox = await make_inbox("gone")
    await local_api.delete(f"/v1/inboxes/{inbox['id']}")
    async with _client(local_backend[1], inbox["apiKey"]) as client:
        assert (await client.get("/v1/inboxes")).json()["code"] == "AUTH_INVALID"


async def test_aliases_primary_and_conflicts(local_api: httpx2.AsyncClient, make_inbox: Any) -> None:
    a = await make_inbox("alpha")
    b = await make_inbox("beta")
    added = await local_api.post(
        f"/v1/inboxes/{a['id']}/addresses", json={"email": "Sales@mam.localhost", "primary": True}
    )
    assert added.status_code == 200
    addresses = {x["email"]: x["primary"] for x in added.json()["addresses"]}
    assert addresses == {"alpha@mam.localhost": False, "sales@mam.localhost": True}
    clash = await local_api.post(f"/v1/inboxes/{b['id']}/addresses", json={"email": "sales@mam.localhost"})
    assert clash.status_code == 409 and clash.json()["code"] == "CONFLICT"
    taken = await local_api.post("/v1/inboxes", json={"username": "alpha"})
    assert taken.status_code == 409
    foreign = await local_api.post(f"/v1/inboxes/{a['id']}/addresses", json={"email": "x@unverified.example"})
    assert foreign.status_code == 403 and foreign.json()["code"] == "DOMAIN_NOT_VERIFIED"
    canonical = await local_api.delete(f"/v1/inboxes/{a['id']}/addresses/alpha@mam.localhost")
    assert canonical.status_code == 400 and canonical.json()["code"] == "VALIDATION_ERROR"
    removed = await local_api.delete(f"/v1/inboxes/{a['id']}/addresses/sales@mam.localhost")
    assert [x["email"] for x in removed.json()["addresses"]] == ["alpha@mam.localhost"]
    assert removed.json()["addresses"][0]["primary"] is True


async def test_inbox_keys_are_shown_once(local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient,
                                         make_inbox: Any) -> None:  # fmt: skip
    inbox = await make_inbox("keyed")
    created = await local_api.post(f"/v1/inboxes/{inbox['id']}/keys", json={"name": "ci"})
    assert created.status_code == 201
    key = InboxKey.model_validate(created.json())
    assert key.key is not None and key.key.startswith("ak_") and key.prefix == key.key[:10]
    async with _client(local_backend[1], key.key) as client:
        assert (await client.get(f"/v1/inboxes/{inbox['id']}/messages")).status_code == 200


async def test_validation_errors_have_details(local_api: httpx2.AsyncClient) -> None:
    unknown = await local_api.post("/v1/inboxes", json={"username": "x", "colour": "red"})
    assert unknown.status_code == 400
    assert unknown.json()["details"] == [{"path": "colour", "message": "unknown field"}]
    bad_name = await local_api.post("/v1/inboxes", json={"username": "no spaces"})
    assert bad_name.json()["details"][0]["path"] == "username"
    crlf = await local_api.post("/v1/inboxes", json={"username": "x", "displayName": "Evil\r\nBcc: a@b.c"})
    assert crlf.status_code == 400 and crlf.json()["details"][0]["path"] == "displayName"
    not_json = await local_api.post(
        "/v1/inboxes", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.json()["code"] == "VALIDATION_ERROR"
    missing = await local_api.get("/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json() == {"error": "not found", "code": "NOT_FOUND"}


async def test_auth_missing_invalid_and_bearer(local_backend: LocalBackendFixture) -> None:
    _, app, key = local_backend
    async with _client(app) as client:
        assert (await client.get("/v1/inboxes")).json()["code"] == "AUTH_MISSING"
        invalid = await client.get("/v1/inboxes", headers={"X-API-Key": "tk_wrong"})
        assert invalid.status_code == 401 and invalid.json()["code"] == "AUTH_INVALID"
        assert "tk_wrong" not in invalid.text
        bearer = await client.get("/v1/inboxes", headers={"Authorization": f"Bearer {key}"})
        assert bearer.status_code == 200


async def test_repeated_failures_of_one_key_lock_it_out(local_backend: LocalBackendFixture) -> None:
    _, app, key = local_backend
    async with _client(app) as client:
        for _ in range(LOCKOUT_FAILURES):
            assert (await client.get("/v1/inboxes", headers={"X-API-Key": "tk_guess"})).status_code == 401
        locked = await client.get("/v1/inboxes", headers={"X-API-Key": "tk_guess"})
        assert locked.status_code == 429 and locked.json()["code"] == "AUTH_LOCKOUT"
        assert 890 <= int(locked.headers["retry-after"]) <= 900
        # keyed by the presented key: the real key from the same address still works
        assert (await client.get("/v1/inboxes", headers={"X-API-Key": key})).status_code == 200


async def test_health_needs_no_auth(local_backend: LocalBackendFixture) -> None:
    backend, app, _ = local_backend
    async with _client(app) as client:
        health = (await client.get("/_mam/health")).json()
    assert health["ok"] is True and health["service"] == "mam-mcp-local"
    assert health["version"] == mam_mcp.__version__ and health["smtpPort"] == backend.smtp_port
    assert isinstance(health["pid"], int)


def test_lockout_expires_and_counts_only_recent_failures() -> None:
    now = [1000.0]
    lockout = FailedAuthLockout(clock=lambda: now[0])
    for _ in range(LOCKOUT_FAILURES - 1):
        lockout.record_failure("h")
    now[0] += 61  # the earlier failures fall out of the 60 s window
    lockout.record_failure("h")
    assert lockout.locked_for("h") == 0
    for _ in range(LOCKOUT_FAILURES - 1):
        lockout.record_failure("h")
    assert lockout.locked_for("h") == 15 * 60
    assert lockout.locked_for("other") == 0
    now[0] += 15 * 60
    assert lockout.locked_for("h") == 0


async def test_primary_alias_is_the_from_address(
    local_api: httpx2.AsyncClient, make_inbox: Any, relay: RecordingRelay
) -> None:
    inbox = await make_inbox("alpha", displayName="Alpha")
    await local_api.post(
        f"/v1/inboxes/{inbox['id']}/addresses", json={"email": "hello@mam.localhost", "primary": True}
    )
    sent = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/send",
        json={"to": "x@example.com", "subject": "s", "text": "t", "verified": True},
    )
    assert sent.status_code == 201
    mail_from, _, raw = relay.sent[0]
    assert mail_from == "hello@mam.localhost" and b"From: Alpha <hello@mam.localhost>" in raw


async def test_unexpected_errors_are_opaque(
    local_backend: LocalBackendFixture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend, app, key = local_backend

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"database exploded near {key}")

    monkeypatch.setattr(backend.store.accounts, "list_inboxes", broken)
    transport = httpx2.ASGITransport(app=app)  # raises if anything escapes the app
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://t", headers={"X-API-Key": key}
    ) as client:
        response = await client.get("/v1/inboxes")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error", "code": "INTERNAL_ERROR"}
    assert "RuntimeError" in caplog.text and key not in caplog.text
