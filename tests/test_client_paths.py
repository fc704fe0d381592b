"""Ids from tool arguments or resource URIs stay one path segment: they can never reach another endpoint."""

from __future__ import annotations

import httpx2
import pytest

from mam_mcp.client import MamClient


@pytest.mark.parametrize("inbox_id", ["..", ".", "a/b", "a?b=c", "a#b"])
async def test_an_id_never_leaves_its_path_segment(inbox_id: str) -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.raw_path.decode("ascii"))
        return httpx2.Response(200, json={"messages": []})

    async with MamClient(base_url="http://api.test", api_key="tk_test", transport=httpx2.MockTransport(handler)) as client:
        await client.messages.list(inbox_id)
    path = seen[0].partition("?")[0]
    assert path.startswith("/v1/inboxes/") and path.endswith("/messages")
    assert path.count("/") == 4, path
