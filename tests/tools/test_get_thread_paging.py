"""get_thread is bounded: pages of `limit` messages with `next_offset`, and a cap on body characters
per result, on both backends (a thread of thousands of messages must not come back as megabytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from mam_mcp.tools.email import THREAD_PAGE_CHARS
from tests.conftest import FAKE_KEY, make_settings
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import LocalBackendFixture, local_backend, local_config  # noqa: F401


def _mail(n: int, body: str) -> bytes:
    subject = "Plan" if n == 0 else "Re: Plan"
    return (
        f"From: Jane <jane@example.com>\r\nTo: scout@mam.localhost\r\nSubject: {subject}\r\n"
        f"Message-ID: <m{n}@example.com>\r\n\r\n{body} #{n}\r\n"
    ).encode()


async def _pages(client: Client, inbox_id: str, thread_id: str, **args: Any) -> list[dict[str, Any]]:
    pages, offset = [], 0
    for _ in range(20):  # bounded
        result = await client.call_tool("get_thread", {"inbox_id": inbox_id, "thread_id": thread_id, "offset": offset, **args})
        assert not result.is_error, result.content[0].text
        page = dict(result.structured_content or {})
        pages.append(page)
        if "next_offset" not in page:
            break
        offset = page["next_offset"]
    return pages


async def test_local_thread_pages_by_count_and_by_characters(tmp_path: Path, local_backend: LocalBackendFixture) -> None:  # noqa: F811
    backend, app, key = local_backend
    async with MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app)) as api:
        inbox = await api.inboxes.create(username="scout")
    for n in range(45):
        await backend.ingest(_mail(n, "x" * (3000 if n >= 25 else 10)), "jane@example.com", ["scout@mam.localhost"])

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    server = build_server(make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"}), client_factory=factory)
    async with Client(server) as client:
        thread_id = (await client.call_tool("list_threads", {"inbox_id": inbox.id})).structured_content["threads"][0]["id"]  # type: ignore[index]
        pages = await _pages(client, inbox.id, thread_id, limit=20, max_chars=5000)
        first = await client.call_tool("get_thread", {"inbox_id": inbox.id, "thread_id": thread_id, "limit": 20})
    await server.runtime.aclose()  # type: ignore[attr-defined]
    counts = [p["count"] for p in pages]
    # 20 short ones, then 5 short and 13 long (13 x ~3,000 fit in 40,000 characters), then the last 7.
    assert counts == [20, 18, 7] and all(p["total"] == 45 for p in pages)
    assert [p.get("next_offset") for p in pages] == [20, 38, None]
    bodies = [m["body"]["text"] for p in pages for m in p["messages"]]
    assert [b.split("#")[-1] for b in bodies] == [str(n) for n in range(45)], "every message once, in order"
    assert all(sum(len(m["body"]["text"]) for m in p["messages"]) <= THREAD_PAGE_CHARS for p in pages)
    assert "messages 1-20 of 45, oldest first; more with offset=20" in first.content[0].text


async def test_hosted_thread_pages_the_same_way(tmp_path: Path) -> None:
    fake = FakeHostedAPI(api_key=FAKE_KEY)
    inbox = fake.seed_inbox("scout")
    root = fake.deliver_inbound(inbox["id"], from_address="jane@example.com", subject="Plan", plain_body="start #0")
    for n in range(1, 30):
        fake.deliver_inbound(
            inbox["id"], from_address="jane@example.com", subject="Re: Plan", plain_body=f"more #{n}", in_reply_to=root["id"]
        )

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://fake", api_key=FAKE_KEY, transport=fake.transport())

    server = build_server(make_settings(tmp_path), client_factory=factory)
    async with Client(server) as client:
        pages = await _pages(client, inbox["id"], root["threadId"], limit=12)
    assert [p["count"] for p in pages] == [12, 12, 6] and [p["total"] for p in pages] == [30, 30, 30]
    assert [m["body"]["text"].split("#")[-1] for p in pages for m in p["messages"]] == [str(n) for n in range(30)]
