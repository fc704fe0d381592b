"""REST: every create route honours Idempotency-Key — a retry gets the first answer, nothing is made twice."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import anyio
import httpx2

from mam_mcp.local.service.idempotency import IdempotentRequests
from tests.local.conftest import LocalBackendFixture


def _count(backend_fixture: LocalBackendFixture, sql: str, *args: Any) -> int:
    with closing(sqlite3.connect(backend_fixture[0].config.db_path)) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


async def test_a_retried_draft_create_returns_the_first_draft_and_makes_one_row(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    inbox = await make_inbox("drafter")
    url = f"/v1/inboxes/{inbox['id']}/drafts"
    body = {"to": ["jane@example.com"], "subject": "Hello", "text": "Hi Jane"}
    first = await local_api.post(url, json=body, headers={"Idempotency-Key": "call-1"})
    again = await local_api.post(url, json=body, headers={"Idempotency-Key": "call-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.json()["subject"] == "Hello"
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert _count(local_backend, "SELECT count(*) FROM drafts WHERE inbox_id=?", inbox["id"]) == 1
    other = await local_api.post(url, json=body, headers={"Idempotency-Key": "call-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    unkeyed = await local_api.post(url, json=body)
    assert unkeyed.status_code == 201
    assert _count(local_backend, "SELECT count(*) FROM drafts WHERE inbox_id=?", inbox["id"]) == 3


async def test_the_same_key_for_a_different_request_is_refused(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    inbox = await make_inbox("reuser")
    url = f"/v1/inboxes/{inbox['id']}/drafts"
    assert (await local_api.post(url, json={"subject": "A"}, headers={"Idempotency-Key": "k"})).status_code == 201
    changed = await local_api.post(url, json={"subject": "B"}, headers={"Idempotency-Key": "k"})
    assert changed.status_code == 422
    assert changed.json()["code"] == "IDEMPOTENCY_KEY_REUSED" and "new key" in changed.json()["error"]
    other_inbox = await make_inbox("reuser2")
    elsewhere = await local_api.post(
        f"/v1/inboxes/{other_inbox['id']}/drafts", json={"subject": "A"}, headers={"Idempotency-Key": "k"}
    )
    assert elsewhere.status_code == 422  # same route, other path: a different request
    assert _count(local_backend, "SELECT count(*) FROM drafts") == 1
    too_long = await local_api.post(url, json={"subject": "A"}, headers={"Idempotency-Key": "x" * 201})
    assert too_long.status_code == 400 and too_long.json()["code"] == "VALIDATION_ERROR"


async def test_a_replayed_webhook_and_key_carry_their_secret_to_the_same_caller(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    inbox = await make_inbox("secrets")
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["message.received"]}
    first = await local_api.post("/v1/webhooks", json=hook, headers={"Idempotency-Key": "wh"})
    again = await local_api.post("/v1/webhooks", json=hook, headers={"Idempotency-Key": "wh"})
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"].startswith("whsec_") and again.json()["secret"] == first.json()["secret"]
    key_url = f"/v1/inboxes/{inbox['id']}/keys"
    minted = await local_api.post(key_url, json={"name": "bot"}, headers={"Idempotency-Key": "key"})
    replayed = await local_api.post(key_url, json={"name": "bot"}, headers={"Idempotency-Key": "key"})
    assert minted.json()["key"].startswith("ak_") and replayed.json() == minted.json()
    assert _count(local_backend, "SELECT count(*) FROM webhooks") == 1
    assert _count(local_backend, "SELECT count(*) FROM api_keys WHERE inbox_id=? AND name='bot'", inbox["id"]) == 1

    # The database record never holds the secrets: a restarted backend replays without them.
    with closing(sqlite3.connect(local_backend[0].config.db_path)) as conn:
        stored = " ".join(body for (body,) in conn.execute("SELECT body FROM request_records"))
    assert first.json()["secret"] not in stored and minted.json()["key"] not in stored
    backend = local_backend[0]
    backend.requests = IdempotentRequests(backend.store.requests)  # what a restarted daemon has
    after_restart = await local_api.post("/v1/webhooks", json=hook, headers={"Idempotency-Key": "wh"})
    assert after_restart.status_code == 201 and after_restart.json()["id"] == first.json()["id"]
    assert after_restart.json()["secret"] == ""
    assert _count(local_backend, "SELECT count(*) FROM webhooks") == 1


async def test_keys_belong_to_the_caller(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    backend, app, _ = local_backend
    _, other = await backend.keys.create_tenant()
    hook = {"url": "http://127.0.0.1:9/hook"}
    mine = await local_api.post("/v1/webhooks", json=hook, headers={"Idempotency-Key": "shared"})
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://local.test", headers={"X-API-Key": other.key}
    ) as theirs:
        their = await theirs.post("/v1/webhooks", json=hook, headers={"Idempotency-Key": "shared"})
    assert their.status_code == 201 and their.json()["id"] != mine.json()["id"]
    assert their.json()["secret"] != mine.json()["secret"]


async def test_a_failed_create_is_not_recorded_and_can_be_retried(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    taken = await make_inbox("taken")
    refused = await local_api.post("/v1/inboxes", json={"username": "taken"}, headers={"Idempotency-Key": "i1"})
    assert refused.status_code == 409 and refused.json()["code"] == "CONFLICT"
    assert (await local_api.delete(f"/v1/inboxes/{taken['id']}")).status_code == 200
    retried = await local_api.post("/v1/inboxes", json={"username": "taken"}, headers={"Idempotency-Key": "i1"})
    assert retried.status_code == 201 and retried.json()["username"] == "taken"


async def test_concurrent_requests_with_one_key_create_once(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    inbox = await make_inbox("racer")
    url = f"/v1/inboxes/{inbox['id']}/lists"
    answers: list[httpx2.Response] = []

    async def post() -> None:
        answers.append(await local_api.post(url, json={"name": "leads"}, headers={"Idempotency-Key": "race"}))

    async with anyio.create_task_group() as tasks:
        for _ in range(5):
            tasks.start_soon(post)
    assert [a.status_code for a in answers] == [201] * 5
    assert len({a.json()["id"] for a in answers}) == 1
    assert _count(local_backend, "SELECT count(*) FROM address_lists WHERE inbox_id=?", inbox["id"]) == 1


async def test_every_create_route_replays(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    inbox = await make_inbox("everything")
    lst = (await local_api.post(f"/v1/inboxes/{inbox['id']}/lists", json={"name": "l"})).json()
    workspace = (await local_api.post("/v1/workspaces", json={"name": "w0"})).json()
    creates: list[tuple[str, dict[str, Any]]] = [
        ("/v1/inboxes", {"username": "once"}),
        (f"/v1/inboxes/{inbox['id']}/addresses", {"email": f"alias@{inbox['domain']}"}),
        (f"/v1/inboxes/{inbox['id']}/keys", {}),
        (f"/v1/inboxes/{inbox['id']}/drafts", {"subject": "s"}),
        (f"/v1/inboxes/{inbox['id']}/lists", {"name": "l2"}),
        (f"/v1/inboxes/{inbox['id']}/lists/{lst['id']}/entries", {"email": "a@example.com"}),
        ("/v1/domains", {"domain": "mail.once.example"}),
        ("/v1/workspaces", {"name": "w1"}),
        (f"/v1/workspaces/{workspace['id']}/keys", {"name": "wk"}),
        ("/v1/webhooks", {"url": "http://127.0.0.1:9/x"}),
    ]
    for index, (url, body) in enumerate(creates):
        headers = {"Idempotency-Key": f"every-{index}"}
        first = await local_api.post(url, json=body, headers=headers)
        again = await local_api.post(url, json=body, headers=headers)
        assert first.status_code in (200, 201), (url, first.text)
        assert (again.status_code, again.json()) == (first.status_code, first.json()), url
        assert again.headers.get("idempotent-replayed") == "true", url


async def test_expired_records_are_dropped_and_the_key_creates_again(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    inbox = await make_inbox("expiry")
    url = f"/v1/inboxes/{inbox['id']}/drafts"
    first = await local_api.post(url, json={"subject": "a"}, headers={"Idempotency-Key": "old"})
    backend = local_backend[0]
    backend.requests = IdempotentRequests(backend.store.requests, ttl_seconds=-60)  # every record is past its day
    later = await local_api.post(url, json={"subject": "a"}, headers={"Idempotency-Key": "old"})
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in later.headers
    assert _count(local_backend, "SELECT count(*) FROM request_records") == 1  # the expired one was deleted


async def test_a_claim_left_by_a_crash_answers_interrupted_and_creates_nothing(
    local_api: httpx2.AsyncClient, make_inbox: Any, local_backend: LocalBackendFixture
) -> None:
    from mam_mcp.local.service.idempotency import fingerprint

    inbox = await make_inbox("crashed")
    path = f"/v1/inboxes/{inbox['id']}/drafts"
    raw = b'{"subject":"a"}'
    backend, _, key = local_backend
    scope = backend.keys.authenticate(key)
    assert scope is not None
    # What a daemon killed between its claim and its answer leaves behind.
    await backend.store.requests.claim(
        scope.key_id, "POST /v1/inboxes/{inbox_id}/drafts", "cut", fingerprint("POST", path, "", raw),
        now="2999-01-01T00:00:00.000Z", expired_before="2000-01-01T00:00:00.000Z",
    )  # fmt: skip
    answer = await local_api.post(
        path, content=raw, headers={"Idempotency-Key": "cut", "Content-Type": "application/json"}
    )
    assert answer.status_code == 409 and answer.json()["code"] == "IDEMPOTENCY_INTERRUPTED"
    assert "list to check" in answer.json()["error"]
    assert _count(local_backend, "SELECT count(*) FROM drafts WHERE inbox_id=?", inbox["id"]) == 0
