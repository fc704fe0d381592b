"""Held under load: both HTTP servers drop silent, slow and idle connections, and streamable HTTP
sessions expire and are capped (mam_mcp/http_limits.py, Settings, http_app.SessionLimit).

Real servers on ephemeral 127.0.0.1 ports with small configured timeouts (0.3 s), raw sockets for
the misbehaving clients; every wait is bounded.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream

from mam_mcp.config import Settings
from mam_mcp.http_app import HttpOptions, build_http_app
from mam_mcp.http_limits import uvicorn_config
from tests.asgi_server import serve_asgi
from tests.conftest import make_settings
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.daemon_process import daemon_config
from tests.test_http_transport import _factory, mcp_client

SHORT = 0.3  # the read and idle timeouts the servers get here
BOUND = 10.0  # how long a test waits for the server to act before failing
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}  # fmt: skip
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def closed_by_server(stream: SocketStream) -> bool:
    """Read (and drop) whatever comes until the server closes the connection; False if it never does."""
    with anyio.move_on_after(BOUND):
        try:
            while True:
                await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return True
    return False


async def check_connection_limits(port: int, path: str) -> None:
    """A silent connection, one trickling its headers, and a kept-alive idle one are all closed."""
    async with await anyio.connect_tcp("127.0.0.1", port) as silent:
        assert await closed_by_server(silent), "a connection that sent nothing stayed open"
    async with await anyio.connect_tcp("127.0.0.1", port) as slow:
        await slow.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())  # never finishes its headers
        assert await closed_by_server(slow), "a connection trickling its headers stayed open"
    async with await anyio.connect_tcp("127.0.0.1", port) as idle:
        await idle.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        with anyio.fail_after(BOUND):
            assert (await idle.receive()).startswith(b"HTTP/1.1 ")  # answered, then kept alive...
        assert await closed_by_server(idle), "an idle kept-alive connection stayed open"  # ...until idle


@asynccontextmanager
async def running_daemon(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The daemon in process with short HTTP timeouts and 0.4 s WebSocket pings: (base URL, key)."""
    from mam_mcp.local.daemon.run import run_daemon

    config = daemon_config(
        tmp_path / "data",
        http_read_timeout_seconds=SHORT,
        http_idle_timeout_seconds=SHORT,
        ws_ping_interval_seconds=0.4,
    )
    ready = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: run_daemon(config, ready=ready))
            await ready.wait()
            state = json.loads(config.state_path.read_text())
            key = config.key_path.read_text().strip()
            base = f"http://127.0.0.1:{state['httpPort']}"
            try:
                yield base, key
            finally:
                async with httpx2.AsyncClient() as http:
                    await http.post(f"{base}/_mam/shutdown", headers={"X-API-Key": key})


async def test_daemon_drops_silent_slow_and_idle_connections_but_keeps_websockets(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as (base, key):
        await check_connection_limits(int(base.rsplit(":", 1)[1]), "/_mam/health")
        async with httpx2.AsyncClient(base_url=base, headers={"X-API-Key": key}) as http:
            assert (await http.get("/v1/inboxes")).status_code == 200  # ordinary requests are unaffected
            # A WebSocket outlives both timeouts: the server's pings keep coming past them.
            async with http.websocket(f"{base}/v1/ws") as ws:
                await ws.send_text(json.dumps({"type": "subscribe"}))
                pings = 0
                with anyio.fail_after(BOUND):
                    while pings < 2:
                        pings += json.loads(await ws.receive_text()).get("type") == "ping"


@asynccontextmanager
async def mcp_http_server(tmp_path: Path, fake: FakeHostedAPI, **overrides: Any) -> AsyncIterator[tuple[str, Settings]]:
    """`serve --transport http` in process, with the uvicorn settings `serve` uses: (URL of /mcp, settings)."""
    settings = make_settings(
        tmp_path, http_read_timeout=SHORT, http_idle_timeout=SHORT, **overrides
    )
    app = build_http_app(settings, HttpOptions(), client_factory=_factory(fake))
    make_config = functools.partial(
        uvicorn_config,
        read_timeout_seconds=settings.http_read_timeout_seconds,
        idle_timeout_seconds=settings.http_idle_timeout_seconds,
    )
    try:
        async with serve_asgi(app, make_config=make_config, lifespan="on") as base:
            yield f"{base}/mcp", settings
    finally:
        await app.server.runtime.aclose()  # type: ignore[attr-defined]


async def test_http_transport_drops_silent_slow_and_idle_connections_but_not_long_calls(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    async with mcp_http_server(tmp_path, fake) as (url, _):
        await check_connection_limits(int(url.split(":")[2].split("/")[0]), "/mcp")
        # A call answered after longer than the read timeout is not cut: the deadline is for reading requests.
        async with mcp_client(url) as client:
            with anyio.fail_after(BOUND):
                result = await client.call_tool("wait_for_email", {"inbox_id": inbox["id"], "timeout_seconds": 1})
        assert not result.is_error
        assert result.structured_content["found"] is False and result.structured_content["waited_seconds"] >= 1


async def test_sessions_beyond_the_cap_get_an_explained_503_and_idle_sessions_expire(tmp_path: Path) -> None:
    async with (
        mcp_http_server(tmp_path, FakeHostedAPI(), max_sessions=2, session_idle_timeout=0.5) as (url, settings),
        httpx2.AsyncClient(headers=MCP_HEADERS, timeout=BOUND) as http,
    ):
        assert settings.max_sessions == 2
        opened = []
        for _ in range(2):
            response = await http.post(url, json=INITIALIZE)
            assert response.status_code == 200, response.text
            opened.append(response.headers["mcp-session-id"])
        refused = await http.post(url, json=INITIALIZE)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        error = refused.json()["error"]
        assert refused.json()["jsonrpc"] == "2.0" and error["data"]["code"] == "TOO_MANY_SESSIONS"
        assert "at most 2" in error["message"] and "MAM_MCP_MAX_SESSIONS" in error["message"]
        # Untouched, both sessions expire after 0.5 s: then a new one is admitted and the old ids are gone.
        with anyio.fail_after(BOUND):
            while (retry := await http.post(url, json=INITIALIZE)).status_code == 503:
                await anyio.sleep(0.05)
        assert retry.status_code == 200
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        for session in opened:
            gone = await http.post(url, json=ping, headers={"Mcp-Session-Id": session})
            assert gone.status_code == 404


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (30.0, 15.0, 1800.0, 1000)),
        (
            {"MAM_MCP_HTTP_READ_TIMEOUT": "5", "MAM_MCP_HTTP_IDLE_TIMEOUT": "2.5",
             "MAM_MCP_SESSION_IDLE_TIMEOUT": "60", "MAM_MCP_MAX_SESSIONS": "10"},
            (5.0, 2.5, 60.0, 10),
        ),
    ],
)  # fmt: skip
def test_http_limits_come_from_the_environment_with_defaults(
    tmp_path: Path, env: dict[str, str], expected: tuple[float, float, float, int]
) -> None:
    settings = make_settings(tmp_path, hosted=False, env=env)
    got = (
        settings.http_read_timeout_seconds,
        settings.http_idle_timeout_seconds,
        settings.session_idle_timeout_seconds,
        settings.max_sessions,
    )
    assert got == expected
    local = settings.local_config()  # the daemon gets the same connection timeouts
    assert (local.http_read_timeout_seconds, local.http_idle_timeout_seconds) == expected[:2]


def test_http_limit_flags_win_over_the_environment(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, env={"MAM_MCP_MAX_SESSIONS": "10"}, max_sessions=3, http_read_timeout=1.5
    )
    assert settings.max_sessions == 3 and settings.http_read_timeout_seconds == 1.5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAM_MCP_HTTP_READ_TIMEOUT": "0"}, "MAM_MCP_HTTP_READ_TIMEOUT"),
        ({"MAM_MCP_SESSION_IDLE_TIMEOUT": "soon"}, "MAM_MCP_SESSION_IDLE_TIMEOUT"),
        ({"MAM_MCP_MAX_SESSIONS": "2.5"}, "MAM_MCP_MAX_SESSIONS"),
        ({"MAM_MCP_HTTP_IDLE_TIMEOUT": "inf"}, "MAM_MCP_HTTP_IDLE_TIMEOUT"),
    ],
)
def test_a_bad_http_limit_is_an_error_naming_the_setting(tmp_path: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        make_settings(tmp_path, hosted=False, env=env)
