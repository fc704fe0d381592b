"""The launcher: lazy start, reuse, stale-version replacement, one daemon under a start race."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import mam_mcp
from mam_mcp.local.launcher import DaemonHandle, DaemonStartError, ensure_daemon, probe_daemon
from tests.local.fixtures_c import (
    REPO_ROOT,
    STALE_DAEMON_PRELUDE,
    STALE_VERSION,
    child_env,
    daemon_config,
    daemon_process,
    kill_pid,
)


async def _serve_http_reply(reply: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def stopper() -> AsyncIterator[list[int]]:
    """Pids of daemons a launcher started during the test; killed at the end whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill_pid(pid)


def _state_pid(data_dir: Path) -> int | None:
    try:
        return int(json.loads((data_dir / "daemon.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


async def test_a_foreign_program_on_the_http_port_is_a_clear_error(tmp_path: Path) -> None:
    body = b'{"service": "something-else"}'
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    server, port = await _serve_http_reply(reply)
    try:
        config = daemon_config(tmp_path / "data", http_port=port)
        with pytest.raises(DaemonStartError) as caught:
            await ensure_daemon(config, timeout=10)
    finally:
        server.close()
    message = str(caught.value)
    assert f"port {port}" in message and "MAM_LOCAL_HTTP_PORT" in message
    assert not config.state_path.exists()  # nothing was started


async def test_a_non_http_listener_on_the_port_is_reported_as_foreign(tmp_path: Path) -> None:
    server, port = await _serve_http_reply(b"220 not http at all\r\n")
    try:
        probe = await probe_daemon(daemon_config(tmp_path, http_port=port))
    finally:
        server.close()
    assert probe.kind == "foreign" and probe.port == port
