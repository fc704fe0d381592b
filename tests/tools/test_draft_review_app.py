"""Draft review as an MCP App, through the SDK client: the ui:// resource and its metadata, the
tools' `_meta.ui`, approval through the app-only tool (bound to the preview shown), and a client
without apps that sees today's tools/list and today's results. Real local backend and SQLite."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from mam_mcp.tools.draft_review import RESOURCE_URI, REVIEW_APP_TOOLS, app_tools
from tests.conftest import make_settings
from tests.local.conftest import LocalBackendFixture, RecordingRelay, local_backend, local_config  # noqa: F401

APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
KNOWN = "jane@example.com"


@pytest.fixture
async def inbox(local_backend: LocalBackendFixture) -> dict[str, Any]:  # noqa: F811
    backend, app, key = local_backend
    backend.relay = RecordingRelay()
    async with MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app)) as client:
        created = (await client.inboxes.create(username="scout")).wire()
    raw = f"From: Jane <{KNOWN}>\r\nTo: scout@mam.localhost\r\nSubject: Quote\r\n\r\nHow much?\r\n".encode()
    await backend.ingest(raw, KNOWN, ["scout@mam.localhost"])
    return created


@asynccontextmanager
async def mcp(
    tmp_path: Path, fixture: LocalBackendFixture, *, apps: bool, **env: str
) -> AsyncIterator[Client]:
    _, app, key = fixture

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local", **env})
    server = build_server(settings, client_factory=factory)
    async with Client(server, extensions=[APPS] if apps else None) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


def data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return dict(result.structured_content)


async def test_the_view_is_an_app_resource_and_the_draft_tools_point_at_it(
    tmp_path: Path, local_backend: LocalBackendFixture  # noqa: F811
) -> None:
    async with mcp(tmp_path, local_backend, apps=True) as client:
        assert EXTENSION_ID in (client.server_capabilities.extensions or {})
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name in ("create_draft", "update_draft"):
            assert tools[name].meta == {"ui": {"resourceUri": RESOURCE_URI}}
        assert {spec.name for spec in app_tools.specs} == REVIEW_APP_TOOLS == {"review_draft", "approve_draft"}
        for name in REVIEW_APP_TOOLS:
            assert tools[name].meta == {"ui": {"resourceUri": RESOURCE_URI, "visibility": ["app"]}}
        assert "ui" not in (tools["send_draft"].meta or {})  # the model's own send is unchanged
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert listed[RESOURCE_URI].mime_type == APP_MIME_TYPE

        read = await client.read_resource(RESOURCE_URI)
        content = read.contents[0]
        assert content.mime_type == APP_MIME_TYPE
        assert content.meta == {"ui": {"csp": {}, "prefersBorder": True}}  # no outside origin at all
        page = content.text
        assert page.startswith("<!DOCTYPE html>") and "{{" not in page
        assert "MamDraftReview" in page and "ui/initialize" in page  # the shared review and the host bridge
        assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # everything inline, nothing fetched


async def test_approval_through_the_app_only_tool_sends_exactly_the_revision_shown(
    tmp_path: Path, local_backend: LocalBackendFixture, inbox: dict[str, Any]  # noqa: F811
) -> None:
    store = local_backend[0].store
    async with mcp(tmp_path, local_backend, apps=True) as client:
        created = data(
            await client.call_tool(
                "create_draft",
                {"inbox_id": inbox["id"], "to": ["new@example.org"], "subject": "Offer", "body": "100 EUR"},
            )
        )
        ids = {"inbox_id": inbox["id"], "draft_id": created["id"]}
        shown = data(await client.call_tool("review_draft", ids))
        assert shown["preview"]["plainBody"] == "100 EUR"
        assert shown["preview"]["newRecipients"] == ["new@example.org"]

        await client.call_tool("update_draft", {**ids, "body": "1,000 EUR"})  # the agent changes it meanwhile
        stale = data(await client.call_tool("approve_draft", {**ids, "content_hash": shown["preview"]["contentHash"]}))
        assert stale["approved"] is False and stale["code"] == "CONTENT_CHANGED"
        assert stale["preview"]["plainBody"] == "1,000 EUR"
        assert await store.mail.list_messages(inbox["id"], direction="outbound") == []

        sent = data(await client.call_tool("approve_draft", {**ids, "content_hash": stale["preview"]["contentHash"]}))
        assert sent["approved"] is True and sent["status"] == "sent" and sent["draft_id"] == created["id"]
        outbound = await store.mail.list_messages(inbox["id"], direction="outbound")
        assert [(m["plain_body"], m["status"]) for m in outbound] == [("1,000 EUR", "sent")]
        assert local_backend[0].relay.sent[0][1] == ["new@example.org"]  # the person's approval was the consent
        assert await store.mail.get_draft(inbox["id"], created["id"]) is None


async def test_the_outbound_policy_still_applies_to_an_approval_in_the_view(
    tmp_path: Path, local_backend: LocalBackendFixture, inbox: dict[str, Any]  # noqa: F811
) -> None:
    async with mcp(tmp_path, local_backend, apps=True, MAM_OUTBOUND_BLOCK="example.org") as client:
        created = data(
            await client.call_tool("create_draft", {"inbox_id": inbox["id"], "to": ["x@example.org"], "body": "Hi"})
        )
        ids = {"inbox_id": inbox["id"], "draft_id": created["id"]}
        shown = data(await client.call_tool("review_draft", ids))
        refused = await client.call_tool("approve_draft", {**ids, "content_hash": shown["preview"]["contentHash"]})
        assert refused.is_error and refused.content[0].text.startswith("POLICY_DENIED")
        assert await local_backend[0].store.mail.list_messages(inbox["id"], direction="outbound") == []


async def test_a_client_without_apps_sees_todays_tools_and_results(
    tmp_path: Path, local_backend: LocalBackendFixture, inbox: dict[str, Any]  # noqa: F811
) -> None:
    args = {"inbox_id": inbox["id"], "to": [KNOWN], "subject": "Re: Quote", "body": "It is 100 EUR."}
    async with mcp(tmp_path, local_backend, apps=False) as plain:
        tools = (await plain.list_tools()).tools
        names = {t.name for t in tools}
        assert {"create_draft", "update_draft", "send_draft"} <= names
        assert not names & {"review_draft", "approve_draft"}
        assert all("ui" not in (t.meta or {}) for t in tools)
        assert RESOURCE_URI not in {r.uri for r in (await plain.list_resources()).resources}
        without = await plain.call_tool("create_draft", args)
        refused = await plain.call_tool(
            "approve_draft", {"inbox_id": inbox["id"], "draft_id": without.structured_content["id"], "content_hash": "0" * 32}
        )
        assert refused.is_error and "only the draft review view" in refused.content[0].text
        assert await local_backend[0].store.mail.list_messages(inbox["id"], direction="outbound") == []
    async with mcp(tmp_path, local_backend, apps=True) as app_host:
        with_apps = await app_host.call_tool("create_draft", args)

    def same(result: Any) -> tuple[str, dict[str, Any]]:
        text = re.sub(r"[0-9a-f-]{36}|UNTRUSTED [0-9a-f]{8}", "ID", result.content[0].text)
        fields = {k: v for k, v in result.structured_content.items() if k not in ("id", "updated_at")}
        return text, fields

    assert same(without) == same(with_apps)  # the result itself is the same text and data either way
    assert without.content[0].text.startswith("Created draft")


def test_per_request_narrowing_keeps_the_view_tools_only_beside_send_draft(tmp_path: Path) -> None:
    from mam_mcp.http_app import ToolNarrowing

    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"})
    server = build_server(settings)
    narrowing = ToolNarrowing(settings, [t.name for t in server._tool_manager.list_tools()])
    assert REVIEW_APP_TOOLS <= narrowing.allowed({"x-mcp-toolsets": "drafts"})  # type: ignore[operator]
    assert not REVIEW_APP_TOOLS & narrowing.allowed({"x-mcp-toolsets": "email"})  # type: ignore[operator]
    read_only = narrowing.allowed({"x-mcp-toolsets": "drafts", "x-mcp-readonly": "1"})
    assert read_only is not None and not REVIEW_APP_TOOLS & read_only  # approving is a send
