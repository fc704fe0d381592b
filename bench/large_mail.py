"""Large-mail memory benchmark: the daemon's peak RSS receiving one, then eight, 24 MB messages.

Starts a real daemon (`python -m mam_mcp.local`, via the launcher) in a temp dir, creates one
inbox, and measures the daemon's resident memory from /proc (Linux): VmRSS before each phase
(the base), then the peak (VmHWM, reset before each phase through /proc/PID/clear_refs, and a
VmRSS sampler as a fallback where the reset is refused). Each message is mostly one base64
attachment. The mail is sent with aiosmtplib from this process. Prints JSON to stdout.

    python bench/large_mail.py                          # 24 MB, one then eight at once
    python bench/large_mail.py --size-mb 10 --concurrent 4

Goal (issue 14): peak <= base + 3 x the message size for one message. With eight at once, the
daemon's cap on concurrent large ingests (`large_ingest_concurrency`) answers the excess 451 and
the client retries them, as a real sender would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.launcher import ensure_daemon

MB = 1_000_000
SAMPLE_SECONDS = 0.01
SEND_TIMEOUT_SECONDS = 600.0
MAX_RETRIES = 200  # a 451 (cap reached) is retried, as a sending MTA would, within this budget
RETRY_PAUSE_SECONDS = 0.2


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, own processes); False where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def make_message(recipient: str, size: int, index: int) -> bytes:
    """About `size` bytes: a short text part and one base64 attachment (76-column lines)."""
    payload_bytes = (size - 1024) * 3 // 4 // 78 * 76  # base64 of it, CRLF every 76 columns, fills `size`
    payload = os.urandom(payload_bytes)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    head = (
        f"From: Bench <bench@app.example>\r\nTo: {recipient}\r\nSubject: Large report {index}\r\n"
        f"Message-ID: {make_msgid(domain='app.example')}\r\nDate: Wed, 02 Dec 2026 12:00:00 +0000\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        "--b0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n"
        '--b0\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="r.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode("ascii")
    return head + encoded + b"--b0--\r\n"


async def send(port: int, recipient: str, raw: bytes) -> dict[str, int]:
    """Send until accepted; counts the 451 answers (the cap) on the way."""
    refused = 0
    for _ in range(MAX_RETRIES):
        try:
            await aiosmtplib.send(
                raw, sender="bench@app.example", recipients=[recipient], hostname="127.0.0.1", port=port,
                timeout=SEND_TIMEOUT_SECONDS,
            )  # fmt: skip
            return {"refused_451": refused}
        except aiosmtplib.SMTPResponseException as error:
            if error.code != 451:
                raise
            refused += 1
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
    raise RuntimeError(f"still refused after {MAX_RETRIES} tries")


async def phase(pid: int, port: int, recipient: str, messages: list[bytes]) -> dict[str, Any]:
    await asyncio.sleep(0.5)  # let the daemon settle (freed memory returned, timers idle)
    base_kb = status_kb(pid, "VmRSS")
    exact = reset_peak(pid)
    sampled_kb = base_kb
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal sampled_kb
        while not done.is_set():
            sampled_kb = max(sampled_kb, status_kb(pid, "VmRSS"))
            await asyncio.sleep(SAMPLE_SECONDS)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(send(port, recipient, raw) for raw in messages))
    finally:
        done.set()
        await sampler
    seconds = time.perf_counter() - started
    peak_kb = max(status_kb(pid, "VmHWM"), sampled_kb) if exact else sampled_kb
    size = max(len(m) for m in messages)
    return {
        "messages": len(messages),
        "message_mb": round(size / MB, 1),
        "base_mb": round(base_kb * 1024 / MB, 1),
        "peak_mb": round(peak_kb * 1024 / MB, 1),
        "growth_mb": round((peak_kb - base_kb) * 1024 / MB, 1),
        "growth_x_message": round((peak_kb - base_kb) * 1024 / size, 2),
        "peak_from": "VmHWM" if exact else "VmRSS sampled every 10 ms",
        "refused_451": sum(o["refused_451"] for o in outcomes),
        "seconds": round(seconds, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.size_mb * MB)
    with tempfile.TemporaryDirectory(prefix="mam-bench-large-") as work:
        overrides: dict[str, Any] = {}
        if args.cap is not None:
            overrides["large_ingest_concurrency"] = args.cap
        config = LocalConfig(data_dir=Path(work) / "local", http_port=0, smtp_port=0, idle_timeout_seconds=0,
                             **overrides)  # fmt: skip
        handle = await ensure_daemon(config, timeout=60)
        try:
            async with httpx2.AsyncClient(base_url=handle.base_url, headers={"X-API-Key": handle.api_key}) as http:
                response = await http.post("/v1/inboxes", json={"username": "bench"})
                response.raise_for_status()
                recipient = response.json()["email"]
                pid = (await http.get("/_mam/health")).json()["pid"]
            one = await phase(pid, handle.smtp_port, recipient, [make_message(recipient, size, 0)])
            many = await phase(
                pid, handle.smtp_port, recipient, [make_message(recipient, size, i + 1) for i in range(args.concurrent)]
            )
        finally:
            async with httpx2.AsyncClient(timeout=30) as http:
                with contextlib.suppress(httpx2.HTTPError):
                    await http.post(f"{handle.base_url}/_mam/shutdown", headers={"X-API-Key": handle.api_key})
    return {
        "one": one,
        "concurrent": many,
        "large_message_bytes": getattr(config, "large_message_bytes", None),  # None: a build without the cap
        "large_ingest_concurrency": getattr(config, "large_ingest_concurrency", None),
        "goal": {"one_peak_le_base_plus_3x": one["growth_x_message"] <= 3.0},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=24.0, help="size of each message (default 24)")
    parser.add_argument("--concurrent", type=int, default=8, help="messages sent at once in the second phase")
    parser.add_argument("--cap", type=int, help="the daemon's large_ingest_concurrency (default: its default)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=1))


if __name__ == "__main__":
    main()
