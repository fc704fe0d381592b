"""wait_for_email latency: SMTP 250 -> tool result, while the tool is waiting (push path vs polling only).

The real topology of local mode: the MCP server (in this process, reached through the SDK's
in-memory client) talks to the local backend daemon (`python -m mam_mcp.local`, its own
process, started by the launcher on a temp data dir) over loopback HTTP + WebSocket; mail
goes into the daemon's SMTP listener over loopback. For each message the benchmark calls
`wait_for_email` (subject filter unique to the message, `received_after` = the previous
cursor), waits until the tool has looked at existing mail and is waiting, sends the mail
over one kept-open SMTP connection, and measures from the moment the 250 reply arrives to
the moment the tool result arrives (negative when the result arrived before this process had
read the 250: the daemon publishes the event when the message is committed, then answers), and
from the start of the SMTP send (transfer, parse, durable commit, event, tool) to the result.

- push: the tool as shipped (WebSocket `/v1/ws`);
- polling: the same tool with the WebSocket turned off, so it polls
  `GET /v1/inboxes/:id/messages` every `--poll-interval` seconds (0.5 s is what the tool uses in
  local mode; 2 s in hosted mode). Each mail is sent at a random moment of the polling cycle
  (uniform over one interval, fixed seed), as real mail arrives.

Two bench-only patches, both in this file: the tool's `_existing_matches` is wrapped to say
"now waiting" after its second look (the one made once subscribed), and for the polling run
`open_event_stream` gets `use_websocket=False`.

    python bench/wait_latency.py                            # 200 push + 200 polling at 0.5 s
    python bench/wait_latency.py --count 300 --poll-count 100 --poll-interval 2
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.client import event_stream as events_module
from mam_mcp.config import Settings
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.launcher import DaemonHandle, ensure_daemon
from mam_mcp.server import build_server
from mam_mcp.tools import wait as wait_module

GOAL_PUSH_P50_MS, GOAL_PUSH_P99_MS = 25.0, 100.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies_ms: list[float]) -> dict[str, Any]:
    return {
        "count": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 2),
        "p90_ms": round(percentile(latencies_ms, 90), 2),
        "p99_ms": round(percentile(latencies_ms, 99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
    }


def mail(sender: str, to: str, tag: str, number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Acme <{sender}>"
    message["To"] = to
    message["Subject"] = f"Your Acme code [{tag}]"
    code = f"{(number * 7919) % 1_000_000:06d}"
    message.set_content(f"Your Acme verification code is {code}. It expires in 10 minutes.")
    message.add_alternative(f"<p>Your Acme verification code is <b>{code}</b>.</p>", subtype="html")
    return message.as_bytes()


@contextlib.asynccontextmanager
async def daemon(work: Path) -> AsyncIterator[tuple[DaemonHandle, dict[str, Any]]]:
    config = LocalConfig(data_dir=work / "local", http_port=0, smtp_port=0, idle_timeout_seconds=0)
    handle = await ensure_daemon(config, timeout=60)
    try:
        async with httpx2.AsyncClient(
            base_url=handle.base_url, headers={"X-API-Key": handle.api_key}
        ) as http:
            response = await http.post("/v1/inboxes", json={"username": "bench"})
            response.raise_for_status()
            yield handle, response.json()
    finally:
        async with httpx2.AsyncClient(timeout=30) as http:
            with contextlib.suppress(httpx2.HTTPError):
                await http.post(f"{handle.base_url}/_mam/shutdown", headers={"X-API-Key": handle.api_key})


async def measure(
    handle: DaemonHandle, inbox: dict[str, Any], work: Path, *, count: int, mode: str
) -> dict[str, Any]:
    waiting = anyio.Event()
    original_existing = wait_module._existing_matches

    looks = [0]

    async def existing_then_waiting(*args: Any, **kwargs: Any) -> Any:
        found = await original_existing(*args, **kwargs)
        looks[0] += 1
        if looks[0] % 2 == 0:  # the second look of a call is made subscribed: next, the tool waits
            waiting.set()
        return found

    original_open = events_module.open_event_stream  # wait_for_email imports it when a call has to wait
    wait_module._existing_matches = existing_then_waiting  # type: ignore[assignment]
    if mode == "polling":
        events_module.open_event_stream = functools.partial(  # type: ignore[assignment]
            original_open, use_websocket=False
        )

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url=handle.base_url, api_key=handle.api_key)

    env = {"HOME": str(work / "home"), "MAM_LOCAL_DATA_DIR": str(work / "local"), "MAM_MCP_MODE": "local"}
    server = build_server(Settings.load(env=env, platform="linux"), client_factory=factory)
    from_250: list[float] = []
    from_send: list[float] = []
    vias: dict[str, int] = {}
    cursor = None
    phase = random.Random(7)  # mail arrives at a random moment of the polling cycle, reproducibly
    try:
        async with (
            Client(server) as client,
            aiosmtplib.SMTP(hostname="127.0.0.1", port=handle.smtp_port, start_tls=False) as smtp,
        ):
            for number in range(count):
                waiting = anyio.Event()
                outcome: dict[str, Any] = {}
                args: dict[str, Any] = {
                    "inbox_id": inbox["id"],
                    "subject_contains": f"[{mode}-{number}]",
                    "timeout_seconds": 30,
                }
                if cursor:
                    args["received_after"] = cursor

                async def call(arguments: dict[str, Any] = args, box: dict[str, Any] = outcome) -> None:
                    result = await client.call_tool("wait_for_email", arguments)
                    box["at"] = time.perf_counter()
                    box["result"] = result

                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(call)
                        await waiting.wait()
                        if mode == "polling":
                            await anyio.sleep(phase.uniform(0, wait_module.POLL_INTERVAL["local"]))
                        sent_at = time.perf_counter()
                        await smtp.sendmail(
                            "noreply@acme.example.com",
                            [inbox["email"]],
                            mail("noreply@acme.example.com", inbox["email"], f"{mode}-{number}", number),
                        )
                        accepted_at = time.perf_counter()
                data = outcome["result"].structured_content
                if not data.get("found"):
                    raise RuntimeError(f"message {number} not found: {outcome['result'].content[0].text}")
                cursor = data["cursor"]
                vias[data["via"]] = vias.get(data["via"], 0) + 1
                from_250.append((outcome["at"] - accepted_at) * 1000)
                from_send.append((outcome["at"] - sent_at) * 1000)
    finally:
        wait_module._existing_matches = original_existing  # type: ignore[assignment]
        events_module.open_event_stream = original_open  # type: ignore[assignment]
        await server.runtime.aclose()  # type: ignore[attr-defined]
    return {
        "smtp_250_to_result": summary(from_250),
        "smtp_send_to_result": summary(from_send),
        # The daemon publishes the event as it commits, then answers 250: the result can win the race.
        "results_before_250_was_read": sum(1 for value in from_250 if value < 0),
        "via": vias,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mam-wait-bench-") as tmp:
        work = Path(tmp)
        async with daemon(work) as (handle, inbox):
            push = await measure(handle, inbox, work, count=args.count, mode="push")
            wait_module.POLL_INTERVAL["local"] = args.poll_interval
            polling = await measure(handle, inbox, work, count=args.poll_count, mode="polling")
    p50, p99 = push["smtp_250_to_result"]["p50_ms"], push["smtp_250_to_result"]["p99_ms"]
    return {
        "benchmark": "wait_for_email latency, SMTP 250 -> tool result (local daemon over loopback)",
        "push": push,
        "polling": {**polling, "interval_s": args.poll_interval},
        "goal": {
            "push_p50_ms": GOAL_PUSH_P50_MS,
            "push_p99_ms": GOAL_PUSH_P99_MS,
            "met": p50 < GOAL_PUSH_P50_MS and p99 < GOAL_PUSH_P99_MS,
        },
        "env": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "system": platform.system(),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="messages on the push path")
    parser.add_argument("--poll-count", type=int, default=200, help="messages with polling only")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="polling interval in seconds")
    print(json.dumps(anyio.run(main, parser.parse_args()), indent=2))
