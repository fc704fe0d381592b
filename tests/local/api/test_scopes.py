"""Scope isolation: tk_/wk_/ak_ keys of two tenants and two workspaces against each other's resources.

A key gets 403 AUTH_FORBIDDEN for a resource type it may never use, and 404 NOT_FOUND for a
resource outside its scope (existence is never revealed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest
import pytest_asyncio

from tests.local.conftest import LocalBackendFixture


@dataclass
class World:
    app: object
    keys: dict[str, str]  # tkA, tkB, wk1, wk2, ak1
    inboxes: dict[str, str]  # A0 (tenant A, no workspace), A1 (workspace 1), A2 (workspace 2), B0 (tenant B)
    workspaces: dict[str, str]  # W1, W2
    messages: dict[str, str]  # inbox name -> one message id in it
    drafts: dict[str, str]
    webhooks: dict[str, str]

    def client(self, key: str) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=self.app),  # type: ignore[arg-type]
            base_url="http://local.test",
            headers={"X-API-Key": self.keys[key]},
        )


@pytest_asyncio.fixture
async def world(local_backend: LocalBackendFixture) -> AsyncIterator[World]:
    backend, app, tk_a = local_backend
    _, minted_b = await backend.keys.create_tenant()
    w = World(app, {"tkA": tk_a, "tkB": minted_b.key}, {}, {}, {}, {}, {})
    async with w.client("tkA") as a, w.client("tkB") as b:
        for name in ("W1", "W2"):
            w.workspaces[name] = (await a.post("/v1/workspaces", json={"name": name})).json()["id"]
        for index, name in ((1, "W1"), (2, "W2")):
            w.keys[f"wk{index}"] = (
                await a.post(f"/v1/workspaces/{w.workspaces[name]}/keys", json={})
            ).json()["key"]
        specs = [
            ("A0", a, None),
            ("A1", a, w.workspaces["W1"]),
            ("A2", a, w.workspaces["W2"]),
            ("B0", b, None),
        ]
        for name, client, workspace in specs:
            body = {"username": name.lower(), **({"workspaceId": workspace} if workspace else {})}
            created = (await client.post("/v1/inboxes?reveal=true", json=body)).json()
            w.inboxes[name] = created["id"]
            if name == "A1":
                w.keys["ak1"] = created["apiKey"]
            await backend.ingest(
                b"From: x@example.com\r\nSubject: s\r\n\r\nb", "x@example.com", [created["email"]]
            )
            listed = (await client.get(f"/v1/inboxes/{created['id']}/messages")).json()["messages"]
            w.messages[name] = listed[0]["id"]
            w.drafts[name] = (
                await client.post(f"/v1/inboxes/{created['id']}/drafts", json={"subject": "d"})
            ).json()["id"]
        w.webhooks["A"] = (await a.post("/v1/webhooks", json={"url": "https://h.example/a"})).json()["id"]
        w.webhooks["W1"] = (
            await a.post(
                "/v1/webhooks", json={"url": "https://h.example/w1", "workspaceId": w.workspaces["W1"]}
            )
        ).json()["id"]
    yield w


VISIBLE = {
    "tkA": {"A0", "A1", "A2"},
    "tkB": {"B0"},
    "wk1": {"A1"},
    "wk2": {"A2"},
    "ak1": {"A1"},
}


@pytest.mark.parametrize("key", sorted(VISIBLE))
async def test_inbox_resources_are_visible_only_inside_the_scope(world: World, key: str) -> None:
    async with world.client(key) as client:
        listed = {i["id"] for i in (await client.get("/v1/inboxes")).json()["inboxes"]}
        assert listed == {world.inboxes[n] for n in VISIBLE[key]}
        for name, inbox_id in world.inboxes.items():
            expected = 200 if name in VISIBLE[key] else 404
            base = f"/v1/inboxes/{inbox_id}"
            responses = [
                await client.get(base),
                await client.get(f"{base}/messages"),
                await client.get(f"{base}/messages/{world.messages[name]}"),
                await client.get(f"{base}/messages/{world.messages[name]}/raw"),
                await client.get(f"{base}/threads"),
                await client.get(f"{base}/drafts/{world.drafts[name]}"),
                await client.get(f"{base}/lists"),
                await client.patch(f"{base}/messages/{world.messages[name]}", json={"isRead": False}),
            ]
            for response in responses:
                assert response.status_code == expected, (key, name, response.request.url, response.text)
                if expected == 404:
                    assert response.json()["code"] == "NOT_FOUND"
            if expected == 404:
                send = await client.post(
                    f"{base}/send", json={"to": "a@example.com", "subject": "s", "verified": True}
                )
                assert send.status_code == 404
                assert (await client.delete(f"{base}/drafts/{world.drafts[name]}")).status_code == 404


async def test_message_ids_do_not_cross_inboxes(world: World) -> None:
    async with world.client("tkA") as client:
        foreign = f"/v1/inboxes/{world.inboxes['A0']}/messages/{world.messages['A1']}"
        assert (await client.get(foreign)).status_code == 404
        assert (
            await client.get(f"/v1/inboxes/{world.inboxes['A0']}/drafts/{world.drafts['A1']}")
        ).status_code == 404
        reply = await client.post(
            f"/v1/inboxes/{world.inboxes['A0']}/reply/{world.messages['A1']}", json={"text": "x"}
        )
        assert reply.status_code == 404


@pytest.mark.parametrize(
    ("key", "method", "path_template"),
    [
        ("ak1", "POST", "/v1/inboxes"),
        ("ak1", "DELETE", "/v1/inboxes/{A1}"),
        ("ak1", "POST", "/v1/inboxes/{A1}/keys"),
        ("ak1", "GET", "/v1/workspaces"),
        ("ak1", "POST", "/v1/workspaces"),
        ("ak1", "GET", "/v1/domains"),
        ("ak1", "POST", "/v1/domains"),
        ("ak1", "GET", "/v1/webhooks"),
        ("ak1", "POST", "/v1/webhooks"),
        ("wk1", "POST", "/v1/workspaces"),
        ("wk1", "DELETE", "/v1/workspaces/{W1}"),
        ("wk1", "POST", "/v1/workspaces/{W1}/keys"),
        ("wk1", "GET", "/v1/workspaces/{W1}/keys"),
    ],
)
async def test_forbidden_resource_types_get_403(
    world: World, key: str, method: str, path_template: str
) -> None:
    path = path_template.format(**world.inboxes, **world.workspaces)
    async with world.client(key) as client:
        response = await client.request(
            method, path, json={"name": "x", "domain": "x.example", "url": "https://x.example/h"}
        )
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "AUTH_FORBIDDEN"


async def test_workspaces_and_webhooks_are_scoped(world: World) -> None:
    w1, w2 = world.workspaces["W1"], world.workspaces["W2"]
    async with world.client("wk1") as wk1, world.client("tkB") as tk_b, world.client("tkA") as tk_a:
        assert (await wk1.get(f"/v1/workspaces/{w1}")).status_code == 200
        assert (await wk1.get(f"/v1/workspaces/{w2}")).status_code == 404
        assert [w["id"] for w in (await wk1.get("/v1/workspaces")).json()["workspaces"]] == [w1]
        assert (await tk_b.get(f"/v1/workspaces/{w1}")).status_code == 404
        assert (await tk_b.delete(f"/v1/workspaces/{w1}")).status_code == 404
        assert (await tk_b.get("/v1/workspaces")).json()["workspaces"] == []
        assert [h["id"] for h in (await wk1.get("/v1/webhooks")).json()["webhooks"]] == [world.webhooks["W1"]]
        assert (await wk1.get(f"/v1/webhooks/{world.webhooks['A']}")).status_code == 404
        assert (await tk_b.get(f"/v1/webhooks/{world.webhooks['A']}")).status_code == 404
        assert (await tk_b.delete(f"/v1/webhooks/{world.webhooks['W1']}")).status_code == 404
        assert len((await tk_a.get("/v1/webhooks")).json()["webhooks"]) == 2
        # a wk_ key cannot place an inbox in another workspace, nor see another tenant's in metrics
        other = await wk1.post("/v1/inboxes", json={"username": "sneaky", "workspaceId": w2})
        assert other.status_code == 404
        assert (await tk_b.get("/v1/metrics", params={"inbox": world.inboxes["A0"]})).status_code == 404
        assert (await tk_b.get("/v1/metrics", params={"workspace": w1})).status_code == 404
        assert (await wk1.get("/v1/metrics")).json()["resources"]["inboxes"] == 1
        # nor hang a webhook or a domain on another scope's inbox or workspace
        hook = {"url": "https://h.example/x"}
        assert (await tk_b.post("/v1/webhooks", json={**hook, "inboxId": world.inboxes["A0"]})).status_code == 404
        assert (await tk_b.post("/v1/webhooks", json={**hook, "workspaceId": w1})).status_code == 404
        assert (await wk1.post("/v1/webhooks", json={**hook, "inboxId": world.inboxes["A2"]})).status_code == 404
        assert (await tk_b.post("/v1/domains", json={"domain": "b.example", "workspaceId": w1})).status_code == 404


async def test_domains_are_scoped(world: World) -> None:
    async with world.client("tkA") as tk_a, world.client("tkB") as tk_b, world.client("wk1") as wk1:
        assert (await tk_a.post("/v1/domains", json={"domain": "a.example"})).status_code == 201
        assert (await wk1.post("/v1/domains", json={"domain": "w1.example"})).status_code == 201
        assert (await tk_b.get("/v1/domains/a.example")).status_code == 404
        assert (await wk1.get("/v1/domains/a.example")).status_code == 404
        assert [d["domain"] for d in (await wk1.get("/v1/domains")).json()["domains"]] == ["w1.example"]
        assert {d["domain"] for d in (await tk_a.get("/v1/domains")).json()["domains"]} == {
            "a.example",
            "w1.example",
        }
        assert (await tk_b.post("/v1/domains", json={"domain": "a.example"})).status_code == 409


async def test_every_inbox_route_answers_an_unseen_inbox_as_a_missing_one(world: World) -> None:
    """One route helper resolves the inbox: another tenant's inbox is indistinguishable from none."""
    from starlette.routing import Route

    routes = [
        (method, route.path)
        for route in world.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and "{inbox_id}" in route.path
        for method in sorted(route.methods or ()) if method != "HEAD"
    ]
    assert len(routes) >= 25  # the check covers every inbox route, not a few
    async with world.client("tkA") as client:
        for method, template in routes:
            answers = []
            for inbox_id in (world.inboxes["B0"], "00000000-0000-7000-8000-000000000000"):
                path = template.replace("{inbox_id}", inbox_id)
                for name in ("message_id", "attachment_id", "thread_id", "draft_id", "list_id", "entry_id", "address"):
                    path = path.replace("{" + name + "}", "x")
                response = await client.request(method, path, json={} if method in ("POST", "PATCH") else None)
                answers.append((response.status_code, response.json()))
            assert answers[0] == answers[1] == (404, {"error": "inbox not found", "code": "NOT_FOUND"}), (method, template)
