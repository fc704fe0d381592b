"""SMTP ingest benchmark: messages/s and DATA->250 latency, 1 and 8 connections, 5 KB messages.

Measures side by side, in one run, with rounds interleaved:
- durable: our daemon (`python -m mam_mcp.local`, real store: the message is committed before 250);
- ceiling: a bare aiosmtpd handler that answers 250 without doing any work;
- maildev: MailDev (npm `maildev`, installed into --maildev-dir when absent).
Each server runs in its own process; the load generator is a minimal asyncio SMTP client
(one message per MAIL/RCPT/DATA, connections kept open). Prints JSON to stdout.

    python bench/smtp_ingest.py                      # all three targets, 5 rounds
    python bench/smtp_ingest.py --targets durable,ceiling --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.launcher import ensure_daemon

CONNECT_TIMEOUT_SECONDS = 30.0
REPLY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    recipient: str
    pid: int | None = None  # the server process, for its CPU time per message


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc): robust to a busy machine, unlike msgs/s."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_message(index: int, size: int, recipient: str) -> bytes:
    """A plausible app-generated message of about `size` bytes (CRLF line ends, no dot lines)."""
    header = (
        f"From: App <noreply@app.example>\r\nTo: {recipient}\r\nSubject: Your sign-in code {index:06d}\r\n"
        f"Message-ID: <bench-{index}-{time.time_ns()}@app.example>\r\nDate: Wed, 25 Nov 2026 03:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    body = f"Your code is {index:06d}.\r\n" + line * max(1, (size - len(header)) // len(line))
    return (header + body).encode("ascii")


class SmtpClient:
    """The least work a client can do per message, so the server is what gets measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> SmtpClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_SECONDS
        )
        client = cls(reader, writer)
        await client.reply("220")
        writer.write(b"EHLO bench.example\r\n")
        await client.reply("250")
        return client

    async def reply(self, expected: str) -> str:
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT_SECONDS)).decode(
                "ascii", "replace"
            )
            if not line:
                raise ConnectionError("server closed the connection")
            if len(line) < 4 or line[3] != "-":
                break
        if not line.startswith(expected):
            raise RuntimeError(f"expected {expected}, got {line.strip()!r}")
        return line

    async def send(self, mail_from: str, rcpt: str, raw: bytes) -> float:
        """Send one message; returns the DATA->250 latency in seconds."""
        self.writer.write(f"MAIL FROM:<{mail_from}>\r\n".encode())
        await self.reply("250")
        self.writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        await self.reply("250")
        started = time.perf_counter()
        self.writer.write(b"DATA\r\n")
        await self.reply("354")
        self.writer.write(raw + b"\r\n.\r\n")
        await self.reply("250")
        return time.perf_counter() - started

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"QUIT\r\n")
            await self.reply("221")
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def run_load(
    target: Target, connections: int, total: int, size: int, first_index: int
) -> dict[str, Any]:
    per_connection = total // connections
    messages = [
        [
            make_message(first_index + c * per_connection + i, size, target.recipient)
            for i in range(per_connection)
        ]
        for c in range(connections)
    ]
    clients = [await SmtpClient.connect(target.port) for _ in range(connections)]
    latencies: list[float] = []
    cpu_before = cpu_seconds(target.pid)

    async def drive(client: SmtpClient, batch: list[bytes]) -> None:
        for raw in batch:
            latencies.append(await client.send("noreply@app.example", target.recipient, raw))

    started = time.perf_counter()
    await asyncio.gather(*(drive(client, batch) for client, batch in zip(clients, messages, strict=True)))
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(target.pid)
    for client in clients:
        await client.close()
    latencies.sort()
    cpu_ms = (
        round((cpu_after - cpu_before) * 1000 / len(latencies), 3)
        if cpu_before is not None and cpu_after is not None
        else None
    )
    return {
        "messages": len(latencies),
        "msgs_per_s": round(len(latencies) / elapsed, 1),
        "server_cpu_ms_per_msg": cpu_ms,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 3),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            client = await SmtpClient.connect(port)
        except (TimeoutError, OSError, RuntimeError):
            await asyncio.sleep(0.1)
            continue
        await client.close()
        return
    raise TimeoutError(f"nothing answered SMTP on port {port}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.asynccontextmanager
async def durable_target(work: Path) -> AsyncIterator[Target]:
    config = LocalConfig(data_dir=work / "durable", http_port=0, smtp_port=0, idle_timeout_seconds=0)
    handle = await ensure_daemon(config, timeout=60)
    try:
        async with httpx2.AsyncClient(
            base_url=handle.base_url, headers={"X-API-Key": handle.api_key}
        ) as http:
            response = await http.post("/v1/inboxes", json={"username": "bench"})
            response.raise_for_status()
            recipient = response.json()["email"]
            pid = (await http.get("/_mam/health")).json()["pid"]
        yield Target("durable", handle.smtp_port, recipient, pid)
    finally:
        async with httpx2.AsyncClient(timeout=30) as http:
            with contextlib.suppress(httpx2.HTTPError):
                await http.post(f"{handle.base_url}/_mam/shutdown", headers={"X-API-Key": handle.api_key})


CEILING_SERVER = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
class Accept:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Accept(), hostname="localhost", decode_data=False),
                                      "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def ceiling_target(work: Path) -> AsyncIterator[Target]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", CEILING_SERVER, str(port)])  # noqa: ASYNC220 - returns at once
    try:
        await wait_for_port(port, process)
        yield Target("ceiling", port, "someone@bench.example", process.pid)
    finally:
        stop_process(process)


def ensure_maildev(directory: Path) -> Path:
    binary = directory / "node_modules" / ".bin" / "maildev"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install maildev")
        directory.mkdir(parents=True, exist_ok=True)
        manifest = directory / "package.json"
        if not manifest.exists():  # npm installs into the project it finds: make DIR one, or it may look upwards
            manifest.write_text(json.dumps({"name": "mam-bench-maildev", "private": True}) + "\n")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(directory), "maildev"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
    return binary


def maildev_versions(directory: Path) -> dict[str, str | None]:
    """The installed MailDev's version and the Node.js that runs it (recorded with the results)."""
    try:
        version = json.loads((directory / "node_modules" / "maildev" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = None
    node = shutil.which("node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip() if node else None
    return {"maildev": version, "node": node_version}


@contextlib.asynccontextmanager
async def maildev_target(work: Path, maildev_dir: Path) -> AsyncIterator[Target]:
    binary = ensure_maildev(maildev_dir)
    port, web = free_port(), free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [str(binary), "--smtp", str(port), "--web", str(web), "--ip", "127.0.0.1", "--web-ip", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    try:
        await wait_for_port(port, process)
        yield Target("maildev", port, "someone@bench.example", process.pid)
    finally:
        stop_process(process)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "msgs_per_s": statistics.median(r["msgs_per_s"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "server_cpu_ms_per_msg": (
            statistics.median(r["server_cpu_ms_per_msg"] for r in rounds)
            if all(r["server_cpu_ms_per_msg"] is not None for r in rounds)
            else None
        ),
        "rounds": rounds,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    factories: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[Target]]] = {
        "durable": durable_target,
        "ceiling": ceiling_target,
        "maildev": lambda work: maildev_target(work, args.maildev_dir),
    }
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {"1": [], "8": []} for name in names}
    index = 0
    with tempfile.TemporaryDirectory(prefix="mam-bench-smtp-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            targets = [await stack.enter_async_context(factories[name](Path(tmp))) for name in names]
            for target in targets:  # warm-up: imports, JIT, SQLite pages
                await run_load(target, 1, 50, args.size, index)
                index += 50
            for _ in range(args.rounds):
                for target in targets:
                    for connections, total in ((1, args.messages_single), (8, args.messages_concurrent)):
                        results[target.name][str(connections)].append(
                            await run_load(target, connections, total, args.size, index)
                        )
                        index += total
    return {
        "benchmark": "smtp_ingest",
        **({"maildev_version": maildev_versions(args.maildev_dir)} if "maildev" in names else {}),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "message_bytes": len(make_message(0, args.size, "bench@mam.localhost")),
        "rounds": args.rounds,
        "results": {
            name: {
                f"{conns}_connection{'s' if conns != '1' else ''}": summarize(r)
                for conns, r in by_conns.items()
            }
            for name, by_conns in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", default="durable,ceiling,maildev")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages-single", type=int, default=300, help="messages per round on 1 connection")
    parser.add_argument(
        "--messages-concurrent", type=int, default=1600, help="messages per round over 8 connections"
    )
    parser.add_argument("--size", type=int, default=5 * 1024, help="message size in bytes")
    parser.add_argument(
        "--maildev-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mam-bench-maildev",
        help="npm prefix holding maildev (installed there when absent)",
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
