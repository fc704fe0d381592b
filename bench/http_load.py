"""Held under load: 200 concurrent MCP sessions over streamable HTTP doing reads for 30 s.

Starts the local daemon (launcher, temp data dir, free ports) with a few messages in one inbox,
then `mam-mcp serve --transport http` as a subprocess in local mode against it, and:

1. slow sockets: opens --slow-sockets connections that send half a request line and nothing
   more, and counts how many the server closes within its read timeout (--read-timeout, passed
   as --http-read-timeout) plus a margin;
2. load: --sessions sessions (initialize, notifications/initialized), each calling read tools in a
   closed loop (list_inboxes, list_messages, get_message, search) for --duration seconds, then
   DELETE. Every HTTP status other than 200/202, JSON-RPC error or tool error counts as an error.

Prints JSON: calls, calls/s, latency p50/p90/p99/max, errors (with samples), the server's RSS
before and after the sessions opened (from /proc), and the slow-socket count. Goal: no errors.

    python bench/http_load.py                                # 200 sessions, 30 s, 1,000 slow sockets
    python bench/http_load.py --sessions 50 --duration 10 --slow-sockets 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio
import httpx2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from mam_mcp.local.config import LocalConfig  # noqa: E402
from mam_mcp.local.daemon.launcher import DaemonHandle, ensure_daemon  # noqa: E402

INITIALIZE = {
    "jsonrpc": "2.0", "id": 0, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench-load", "version": "0"}},
}  # fmt: skip
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rpc_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a streamable HTTP response (JSON or an SSE stream of one event)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if "id" in message:
                    return dict(message)
        raise RuntimeError("no response in the event stream")
    return dict(response.json())


@contextlib.asynccontextmanager
async def local_daemon(work: Path) -> AsyncIterator[tuple[LocalConfig, DaemonHandle, str]]:
    """The launcher's daemon on free ports, with inbox `load` holding a few messages."""
    config = LocalConfig(data_dir=work / "local", http_port=free_port(), smtp_port=free_port(), idle_timeout_seconds=0)
    handle = await ensure_daemon(config, timeout=60)
    try:
        async with httpx2.AsyncClient(base_url=handle.base_url, headers={"X-API-Key": handle.api_key}) as http:
            inbox = (await http.post("/v1/inboxes", json={"username": "load"})).json()
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=handle.smtp_port, start_tls=False) as smtp:
            for index in range(30):
                body = f"Subject: Invoice {index} for your account\r\nFrom: billing@example.com\r\n\r\nHello {index}.\r\n"
                await smtp.sendmail("billing@example.com", [inbox["email"]], body)
        yield config, handle, inbox["id"]
    finally:
        async with httpx2.AsyncClient(timeout=30) as http:
            with contextlib.suppress(httpx2.HTTPError):
                await http.post(f"{handle.base_url}/_mam/shutdown", headers={"X-API-Key": handle.api_key})


@contextlib.asynccontextmanager
async def mcp_http_server(work: Path, config: LocalConfig, args: argparse.Namespace) -> AsyncIterator[tuple[str, int]]:
    """`mam-mcp serve --transport http` in local mode: (URL of /mcp, pid)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL", "MAM_"))},
        "HOME": str(work / "home"), "XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "data"),
        "PYTHONPATH": str(REPO), "MAM_MCP_MODE": "local", "MAM_LOCAL_DATA_DIR": str(config.data_dir),
        "MAM_LOCAL_HTTP_PORT": str(config.http_port), "MAM_LOCAL_SMTP_PORT": str(config.smtp_port),
    }  # fmt: skip
    command = [
        sys.executable, "-m", "mam_mcp.cli", "serve", "--transport", "http", "--port", str(port),
        "--http-read-timeout", str(args.read_timeout), "--max-sessions", str(max(1000, args.sessions * 2)),
    ]  # fmt: skip
    process = await anyio.open_process(command, env=env, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(60):
            while b"serving http on" not in seen:
                seen += await process.stderr.receive()
        yield f"http://127.0.0.1:{port}/mcp", process.pid
    finally:
        process.terminate()
        with anyio.move_on_after(10, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()


async def slow_sockets(url: str, count: int, read_timeout: float) -> dict[str, Any]:
    """Open `count` connections that never finish their request; how many does the server close in time?"""
    port = int(url.split(":")[2].split("/")[0])
    closed = 0
    started = time.perf_counter()

    async def trickle(stream: Any) -> None:
        nonlocal closed
        async with stream:
            await stream.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            with anyio.move_on_after(read_timeout + 10):
                try:
                    while await stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                    closed += 1

    streams = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(count)]
    async with anyio.create_task_group() as tasks:
        for stream in streams:
            tasks.start_soon(trickle, stream)
    return {"opened": count, "closed_by_server": closed, "read_timeout_s": read_timeout,
            "all_closed_after_s": round(time.perf_counter() - started, 1)}  # fmt: skip


async def load(url: str, pid: int, inbox_id: str, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx2.Limits(max_connections=args.sessions * 2, max_keepalive_connections=args.sessions * 2)
    latencies: list[float] = []
    errors: list[str] = []
    rss_before = rss_mb(pid)
    async with httpx2.AsyncClient(headers=HEADERS, limits=limits, timeout=httpx2.Timeout(60), trust_env=False) as http:

        async def rpc(session: str, ident: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
            body = {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}
            response = await http.post(url, json=body, headers={"Mcp-Session-Id": session})
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            return rpc_result(response)

        sessions: list[str] = []

        async def open_session() -> None:
            response = await http.post(url, json=INITIALIZE)
            if response.status_code != 200:
                raise RuntimeError(f"initialize: HTTP {response.status_code}: {response.text[:200]}")
            session = response.headers["mcp-session-id"]
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            await http.post(url, json=note, headers={"Mcp-Session-Id": session})
            sessions.append(session)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tasks:
                for _ in range(args.sessions):
                    tasks.start_soon(open_session)
        rss_open = rss_mb(pid)
        first = await rpc(sessions[0], 1, "tools/call", {"name": "list_messages", "arguments": {"inbox_id": inbox_id, "limit": 5}})
        message_id = first["result"]["structuredContent"]["messages"][0]["id"]
        calls = [
            ("list_inboxes", {}),
            ("list_messages", {"inbox_id": inbox_id}),
            ("get_message", {"inbox_id": inbox_id, "message_id": message_id}),
            ("list_messages", {"inbox_id": inbox_id, "query": "invoice"}),
        ]
        deadline = time.monotonic() + args.duration

        async def drive(number: int, session: str) -> None:
            ident = 1
            while time.monotonic() < deadline:
                name, arguments = calls[(number + ident) % len(calls)]
                ident += 1
                started = time.perf_counter()
                try:
                    message = await rpc(session, ident, "tools/call", {"name": name, "arguments": arguments})
                    if "error" in message or message["result"].get("isError"):
                        raise RuntimeError(f"{name}: {json.dumps(message)[:200]}")
                except Exception as error:  # counted, not fatal: the point is to see every failure
                    errors.append(f"{type(error).__name__}: {error}"[:300])
                    continue
                latencies.append(time.perf_counter() - started)

        started, cpu_before = time.perf_counter(), cpu_seconds(pid)
        async with anyio.create_task_group() as tasks:
            for number, session in enumerate(sessions):
                tasks.start_soon(drive, number, session)
        elapsed, cpu_after = time.perf_counter() - started, cpu_seconds(pid)
        rss_busy = rss_mb(pid)
        async with anyio.create_task_group() as tasks:
            for session in sessions:
                tasks.start_soon(lambda s: http.delete(url, headers={"Mcp-Session-Id": s}), session)
    ms = [x * 1000 for x in latencies]
    return {
        "sessions": len(sessions),
        "duration_s": round(elapsed, 1),
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p90_ms": round(percentile(ms, 90), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
        "server_cpu_ms_per_call": (
            round((cpu_after - cpu_before) * 1000 / len(latencies), 2)
            if latencies and cpu_before is not None and cpu_after is not None
            else None
        ),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "server_rss_mb": {"before_sessions": rss_before, "sessions_open": rss_open, "after_load": rss_busy},
        "goal": "no errors",
        "met": not errors and bool(latencies),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mam-bench-load-") as tmp:
        work = Path(tmp)
        async with local_daemon(work) as (config, _, inbox_id), mcp_http_server(work, config, args) as (url, pid):
            slow = await slow_sockets(url, args.slow_sockets, args.read_timeout) if args.slow_sockets else None
            result = await load(url, pid, inbox_id, args)
    return {
        "benchmark": "http_load",
        **result,
        "slow_sockets": slow,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--slow-sockets", type=int, default=1000, help="connections that never finish a request (0: skip)")
    parser.add_argument("--read-timeout", type=float, default=5.0, help="the server's --http-read-timeout for this run")
    print(json.dumps(anyio.run(main_async, parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
