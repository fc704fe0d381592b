"""The HTTP transports on a real loopback port with a real MCP client (DESIGN §6, §7).

The server is the guarded app of `mam_mcp.http_app` under uvicorn on an ephemeral 127.0.0.1
port; tools reach the strict fake hosted API in-process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.http_app import HttpOptions, HttpStartRefused, build_http_app
from mam_mcp.loopback import is_loopback
from tests.asgi_server import serve_asgi
from tests.conftest import FAKE_KEY, make_settings
from tests.fakes.hosted_api import FakeHostedAPI

TOKEN = "test-token-0123456789abcdef"
SENDING_TOOLS = {"send_email", "reply_to_email", "forward_email", "send_draft"}


@pytest.fixture
def fake() -> FakeHostedAPI:
    return FakeHostedAPI()


def _factory(fake: FakeHostedAPI):  # type: ignore[no-untyped-def]
    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://fake", api_key=FAKE_KEY, transport=fake.transport())

    return factory


@asynccontextmanager
async def serving(app: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on an ephemeral loopback port; yields http://127.0.0.1:PORT."""
    async with serve_asgi(app, lifespan=lifespan) as base_url:
        yield base_url


@asynccontextmanager
async def http_server(
    tmp_path: Path, fake: FakeHostedAPI, *, options: HttpOptions | None = None, **overrides: Any
) -> AsyncIterator[str]:
    settings = make_settings(tmp_path, auth_token=TOKEN, **overrides)
    options = options or HttpOptions()
    app = build_http_app(settings, options, client_factory=_factory(fake))
    try:
        async with serving(app, lifespan="on" if options.transport == "http" else "off") as base:
            yield base
    finally:
        await app.server.runtime.aclose()  # type: ignore[attr-defined]


def mcp_client(url: str, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Client:
    http = httpx2.AsyncClient(headers=dict(headers or {}), timeout=httpx2.Timeout(10, read=30))
    return Client(streamable_http_client(url, http_client=http), **kwargs)


def bearer(token: str = TOKEN, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


async def test_tools_work_over_http_with_the_right_token(tmp_path: Path, fake: FakeHostedAPI) -> None:
    inbox = fake.seed_inbox("scout")
    async with http_server(tmp_path, fake) as base:
        for mode in ("legacy", "2026-07-28"):
            async with mcp_client(f"{base}/mcp", bearer(), mode=mode) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {"list_inboxes", "send_email", "create_draft"} <= names
                result = await client.call_tool("list_inboxes", {})
                assert not result.is_error, result.content
                assert inbox["id"] in str(result.structured_content)


async def test_missing_or_wrong_token_is_401(tmp_path: Path, fake: FakeHostedAPI) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    async with http_server(tmp_path, fake) as base, httpx2.AsyncClient() as http:
        missing = await http.post(f"{base}/mcp", json=body, headers=accept)
        wrong = await http.post(
            f"{base}/mcp", json=body, headers={**accept, **bearer("not-the-token-at-all!!")}
        )
        basic = await http.post(
            f"{base}/mcp", json=body, headers={**accept, "Authorization": f"Basic {TOKEN}"}
        )
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == "AUTH_REQUIRED"
        assert TOKEN not in response.text


async def test_a_client_without_the_token_cannot_connect(tmp_path: Path, fake: FakeHostedAPI) -> None:
    async with http_server(tmp_path, fake) as base:
        with pytest.raises(BaseException) as caught:
            async with mcp_client(f"{base}/mcp", mode="legacy") as client:
                await client.list_tools()
    assert any(isinstance(leaf, MCPError) for leaf in _leaves(caught.value))
    assert fake.requests == []


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_foreign_origin_is_403_even_with_the_token(tmp_path: Path, fake: FakeHostedAPI) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", **bearer()}
    async with http_server(tmp_path, fake) as base, httpx2.AsyncClient() as http:
        foreign = await http.post(
            f"{base}/mcp", json=body, headers={**headers, "Origin": "http://evil.example"}
        )
        rebound = await http.post(f"{base}/mcp", json=body, headers={**headers, "Host": "evil.example:8000"})
    assert foreign.status_code == 403
    assert foreign.json()["code"] == "FORBIDDEN_ORIGIN"
    assert rebound.status_code == 421


async def test_allowed_origin_is_served(tmp_path: Path, fake: FakeHostedAPI) -> None:
    options = HttpOptions(allowed_origins=("https://app.example.com",))
    async with http_server(tmp_path, fake, options=options) as base:
        origin = {"Origin": "https://app.example.com"}
        async with mcp_client(f"{base}/mcp", bearer(**origin), mode="legacy") as client:
            assert (await client.list_tools()).tools
        local_page = {"Origin": f"http://localhost:{base.rsplit(':', 1)[1]}"}
        async with mcp_client(f"{base}/mcp", bearer(**local_page), mode="legacy") as client:
            assert (await client.list_tools()).tools


def test_non_loopback_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    for host in ("0.0.0.0", "::", "192.0.2.10", "mcp.example.com"):
        with pytest.raises(HttpStartRefused, match="bearer token"):
            build_http_app(settings, HttpOptions(host=host))
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    build_http_app(
        make_settings(tmp_path, auth_token=TOKEN), HttpOptions(host="0.0.0.0")
    )  # with a token it may


def test_serve_command_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "c"),
        "XDG_DATA_HOME": str(tmp_path / "d"),
        "PATH": "/usr/bin:/bin",
        "MAM_MCP_MODE": "local",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mam_mcp.cli",
            "serve",
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0" in done.stderr


async def test_read_only_header_hides_and_refuses_sending_tools(tmp_path: Path, fake: FakeHostedAPI) -> None:
    inbox = fake.seed_inbox("scout")
    async with http_server(tmp_path, fake) as base:
        for mode in ("legacy", "2026-07-28"):
            async with mcp_client(f"{base}/mcp", bearer(**{"X-MCP-Readonly": "true"}), mode=mode) as client:
                tools = (await client.list_tools()).tools
                assert tools and all(tool.annotations and tool.annotations.read_only_hint for tool in tools)
                assert not SENDING_TOOLS & {tool.name for tool in tools}
                refused = await client.call_tool(
                    "send_email",
                    {"inbox_id": inbox["id"], "to": ["a@example.com"], "subject": "x", "text": "y"},
                )
                assert refused.is_error
                assert refused.content[0].text.startswith("TOOL_NOT_AVAILABLE")
    assert fake.stored_messages(inbox["id"], "outbound") == []
    assert not [r for r in fake.requests if r.method == "POST"]


async def test_selection_headers_narrow_but_never_widen(tmp_path: Path, fake: FakeHostedAPI) -> None:
    async with http_server(tmp_path, fake, toolsets="email") as base:
        asks = {"X-MCP-Toolsets": "email,drafts"}  # drafts were not started: the header cannot add them
        async with mcp_client(f"{base}/mcp", bearer(**asks), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
        assert "list_inboxes" in names and not any("draft" in name for name in names)

        asks = {"X-MCP-Tools": "list_inboxes,get_message,create_draft"}
        async with mcp_client(f"{base}/mcp", bearer(**asks), mode="2026-07-28") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == {"list_inboxes", "get_message"}
            refused = await client.call_tool("list_messages", {"inbox_id": "x"})
            assert refused.is_error and "TOOL_NOT_AVAILABLE" in refused.content[0].text


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # resources/subscribe
async def test_selection_headers_narrow_the_mail_resources_too(tmp_path: Path, fake: FakeHostedAPI) -> None:
    inbox = fake.seed_inbox("agent")
    message = fake.deliver_inbound(
        inbox["id"], from_address="jane@example.com", subject="Hello", plain_body="Hi"
    )
    uri = f"myagentmail://inboxes/{inbox['id']}/messages/{message['id']}"
    async with http_server(tmp_path, fake) as base:
        narrowed = bearer(
            **{"X-MCP-Tools": "list_inboxes,list_messages"}
        )  # no get_message, no get_attachment
        async with mcp_client(f"{base}/mcp", narrowed, mode="legacy") as client:
            templates = (await client.list_resource_templates()).resource_templates
            # message and attachment templates follow the tools that read the same; the list, list_messages
            assert [t.name for t in templates] == ["inbox-messages"]
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert "needs the get_message tool" in str(refused.value)
            with pytest.raises(MCPError):
                await client.read_resource(f"{uri}/attachments/att_1")
            skill = await client.read_resource("myagentmail://skill/SKILL.md")  # the docs stay readable
            assert skill.contents

        reader = bearer(**{"X-MCP-Tools": "get_message"})
        async with mcp_client(f"{base}/mcp", reader, mode="legacy") as client:
            names = {t.name for t in (await client.list_resource_templates()).resource_templates}
            assert names == {"message"}
            inbox_list = f"myagentmail://inboxes/{inbox['id']}/messages"
            for refused_call in (client.read_resource(inbox_list), client.subscribe_resource(inbox_list)):
                with pytest.raises(MCPError) as refused:
                    await refused_call
                assert "needs the list_messages tool" in str(refused.value)
            result = await client.read_resource(uri)
            assert "Hello" in result.contents[0].text  # type: ignore[union-attr]

        async with mcp_client(f"{base}/mcp", bearer(), mode="legacy") as client:  # no narrowing asked
            names = {t.name for t in (await client.list_resource_templates()).resource_templates}
            assert names == {"message", "attachment", "inbox-messages"}

        async with mcp_client(f"{base}/mcp", reader, mode="2026-07-28") as client:
            with pytest.raises(MCPError) as refused:
                async with client.listen(resource_subscriptions=[f"myagentmail://inboxes/{inbox['id']}/messages"]):
                    pass
            assert "need the list_messages tool" in str(refused.value)


async def test_server_started_read_only_stays_read_only_whatever_the_headers(
    tmp_path: Path, fake: FakeHostedAPI
) -> None:
    async with http_server(tmp_path, fake, read_only=True) as base:
        asks = {"X-MCP-Toolsets": "all", "X-MCP-Readonly": "false"}
        async with mcp_client(f"{base}/mcp", bearer(**asks), mode="legacy") as client:
            tools = (await client.list_tools()).tools
            assert tools and all(tool.annotations.read_only_hint for tool in tools)  # type: ignore[union-attr]
            refused = await client.call_tool("send_email", {"inbox_id": "x", "to": ["a@example.com"]})
            assert refused.is_error


async def test_unknown_names_in_selection_headers_are_400(tmp_path: Path, fake: FakeHostedAPI) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", **bearer()}
    async with http_server(tmp_path, fake) as base, httpx2.AsyncClient() as http:
        response = await http.post(f"{base}/mcp", json=body, headers={**headers, "X-MCP-Toolsets": "nope"})
    assert response.status_code == 400
    assert "unknown toolset" in response.json()["error"]


async def test_stateless_http_works_across_several_server_processes(
    tmp_path: Path, fake: FakeHostedAPI
) -> None:
    """Two independent servers behind a round-robin 'load balancer': every request may land on either."""
    inbox = fake.seed_inbox("scout")
    options = HttpOptions(stateless=True)
    async with (
        http_server(tmp_path / "a", fake, options=options) as first,
        http_server(tmp_path / "b", fake, options=options) as second,
    ):
        balancer = _RoundRobin([first, second])
        for mode in ("legacy", "2026-07-28"):
            http = httpx2.AsyncClient(headers=bearer(), transport=balancer, timeout=10)
            async with Client(
                streamable_http_client("http://balancer/mcp", http_client=http), mode=mode
            ) as client:
                for _ in range(3):
                    assert (await client.list_tools()).tools
                    result = await client.call_tool("list_inboxes", {})
                    assert not result.is_error and inbox["id"] in str(result.structured_content)
        assert len(balancer.hits) == 2 and min(balancer.hits.values()) >= 3


class _RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next backend in turn, like a load balancer without stickiness."""

    def __init__(self, backends: list[str]) -> None:
        self._backends = backends
        self._next = 0
        self._inner = httpx2.AsyncHTTPTransport()
        self.hits: dict[str, int] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        backend = httpx2.URL(self._backends[self._next % len(self._backends)])
        self._next += 1
        self.hits[str(backend)] = self.hits.get(str(backend), 0) + 1
        request.url = request.url.copy_with(scheme=backend.scheme, host=backend.host, port=backend.port)
        request.headers["host"] = f"{backend.host}:{backend.port}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_sse_transport_with_token_and_selection(tmp_path: Path, fake: FakeHostedAPI) -> None:
    inbox = fake.seed_inbox("scout")
    async with http_server(tmp_path, fake, options=HttpOptions(transport="sse")) as base:
        headers = bearer(**{"X-MCP-Readonly": "1"})
        async with Client(sse_client(f"{base}/sse", headers=headers), mode="legacy") as client:
            tools = (await client.list_tools()).tools
            assert tools and not SENDING_TOOLS & {tool.name for tool in tools}
            result = await client.call_tool("list_inboxes", {})
            assert not result.is_error and inbox["id"] in str(result.structured_content)
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{base}/sse")).status_code == 401


@pytest.mark.parametrize("workers", [1, 2])
async def test_serve_command_over_http_end_to_end(tmp_path: Path, fake: FakeHostedAPI, workers: int) -> None:
    """`mam-mcp serve --transport http --port 0 --stateless [--workers 2]` as a real process: announce, serve
    (from each worker process), no secret in its log."""
    inbox = fake.seed_inbox("scout")
    async with fake.serving() as base_url:
        env = {
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "c"),
            "XDG_DATA_HOME": str(tmp_path / "d"),
            "PATH": "/usr/bin:/bin",
            "MYAGENTMAIL_API_KEY": FAKE_KEY,
            "MYAGENTMAIL_BASE_URL": base_url,
            "MAM_MCP_AUTH_TOKEN": TOKEN,
            "MAM_MCP_LOG_LEVEL": "DEBUG",
        }
        command = [
            sys.executable,
            "-m",
            "mam_mcp.cli",
            "serve",
            "--transport",
            "http",
            "--port",
            "0",
            "--stateless",
            "--workers",
            str(workers),
        ]
        process = await anyio.open_process(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        log = b""
        try:
            assert process.stderr is not None
            with anyio.fail_after(60):
                while (
                    b"/mcp (bearer token required" not in log
                    or log.count(b"Application startup complete") < workers
                ):
                    log += await process.stderr.receive()
            url = log.decode().split("serving http on ", 1)[1].split(" ", 1)[0]
            pids = set(re.findall(r"Started server process \[(\d+)\]", log.decode()))
            assert len(pids) == workers
            for mode in ("legacy", "2026-07-28", "2026-07-28"):  # each client opens its own connections
                async with mcp_client(url, bearer(), mode=mode) as client:
                    result = await client.call_tool("list_inboxes", {})
                    assert not result.is_error and inbox["id"] in str(result.structured_content)
            async with httpx2.AsyncClient() as http:
                assert (
                    await http.post(url, json={}, headers=bearer("wrong-token-wrong-token"))
                ).status_code == 401
        finally:
            process.terminate()
            with anyio.fail_after(10):
                await process.wait()
                assert process.stderr is not None
                async for chunk in process.stderr:
                    log += chunk
    text = log.decode()
    assert TOKEN not in text and FAKE_KEY not in text and "wrong-token-wrong-token" not in text


def test_workers_need_stateless_streamable_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mam_mcp.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("MAM_MCP_MODE", "local")
    for flags in (["--transport", "http"], ["--transport", "sse", "--stateless"]):
        assert main(["serve", *flags, "--workers", "2"]) == 2
        assert "--workers needs --transport http --stateless" in capsys.readouterr().err
