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


def test_loopback_backend_ignores_proxy_settings_but_remote_api_honours_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from mam_mcp.client.http import HttpCore

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    local = HttpCore(base_url="http://127.0.0.1:8725", api_key="tk_x")
    hosted = HttpCore(base_url="https://myagentmail.com", api_key="tk_x")
    # The local daemon is reached directly (a proxy cannot reach this machine and would see the key).
    assert local.async_client.trust_env is False
    assert hosted.async_client.trust_env is True
