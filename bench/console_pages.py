"""Server time of the console's pages at 100k messages: the page itself and every API call a view makes.

Fills one inbox with --messages messages (the same fill as list_search.py; reuse a filled store with
--data-dir), mounts the console as the daemon does, signs in through a one-time link, and times each
request inside the server: an ASGI wrapper around the whole app measures from the request's start
to its last body byte (no client or network time), p50/p99 over --iterations calls. Also reported:
the client-side round trip through httpx2's in-process transport. Prints JSON. Goal: every call
under 50 ms of server time.

    python bench/console_pages.py                                  # 100,000 messages, fresh temp dir
    python bench/console_pages.py --data-dir /tmp/mam-100k --keep  # reuse the store list_search.py filled
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from list_search import COMMON, RARE, fill  # the same 100k messages as the list benchmark

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore

GOAL_MS = 50.0
BASE = "http://127.0.0.1:8725"


class ServerClock:
    """ASGI wrapper: seconds from a request's start to its last response byte, per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.samples.append(time.perf_counter() - started)

        await self.app(scope, receive, timed_send)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def measure(http: Any, clock: ServerClock, path: str, iterations: int) -> dict[str, Any]:
    for _ in range(min(10, iterations)):  # warm caches and the thread pool
        (await http.get(path)).raise_for_status()
    clock.samples.clear()
    round_trips: list[float] = []
    size = 0
    for _ in range(iterations):
        started = time.perf_counter()
        response = await http.get(path)
        round_trips.append(time.perf_counter() - started)
        response.raise_for_status()
        size = len(response.content)
    return {"server": _percentiles(clock.samples), "round_trip": _percentiles(round_trips), "bytes": size}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import httpx2
    from starlette.routing import Mount

    from mam_mcp.local.api.app import create_app
    from mam_mcp.local.service.backend import LocalBackend
    from mam_mcp.local.console import CONSOLE_PATH, Console
    from mam_mcp.local.events.hub import EventHub

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mam-bench-console-"))
    config = LocalConfig(data_dir=data_dir, http_port=0, smtp_port=0)
    async with EmailStore(config) as store:
        recipient = f"bench@{config.domain}"
        found = store.accounts.inbox_for_address(recipient)
        fill_seconds = None
        if found is None:
            tenant_id = await store.accounts.create_tenant()
            inbox = await store.accounts.create_inbox(
                tenant_id=tenant_id, workspace_id=None, username="bench", domain=config.domain, display_name=None
            )
            inbox_id = inbox["id"]
            fill_seconds = await fill(store, recipient, args.messages)
        else:
            inbox_id, tenant_id, _ = found
        messages = await store.mail.list_messages(inbox_id, limit=1)
        backend = LocalBackend(config, store)
        key = (await backend.keys.mint("tk", tenant_id=tenant_id, name="bench")).key
        draft = await store.mail.create_draft(
            inbox_id, {"to": ["someone@example.com"], "subject": "Bench draft", "plain_body": "Hello " * 50}
        )
        hub = EventHub()
        console = Console(backend, hub)
        clock = ServerClock(create_app(backend, extra_routes=[Mount(CONSOLE_PATH, app=console.app)]))
        try:
            async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=clock), base_url=BASE) as http:
                link = await http.post(f"{CONSOLE_PATH}/api/login-token", headers={"X-API-Key": key})
                landed = await http.get(link.json()["path"])
                # The sign-in answer holds the page key; the page sends it with every request.
                found = re.search(r'<meta name=mam-page-key content="([^"]+)">', landed.text)
                assert found is not None, "the sign-in answer holds no page key"
                http.headers["X-Console-Key"] = found.group(1)
                api = f"{CONSOLE_PATH}/api/inboxes/{inbox_id}"
                total = (await http.get(f"{CONSOLE_PATH}/api/inboxes")).json()["inboxes"][0]
                cursor = await _cursor_at(http, api, args.deep_page)
                message = f"{api}/messages/{messages[0]['id']}"
                pages = {
                    "page (HTML shell)": f"{CONSOLE_PATH}/",
                    "inboxes with counts": f"{CONSOLE_PATH}/api/inboxes",
                    "messages, newest 50": f"{api}/messages?limit=50",
                    f"messages, page {args.deep_page} (keyset)": f"{api}/messages?limit=50&after={cursor}",
                    "outbound, newest 50": f"{api}/messages?limit=50&direction=outbound",
                    "threads, newest 50": f"{api}/threads?limit=50",
                    f"search rare ({RARE})": f"{api}/search?limit=50&q={RARE}",
                    f"search common ({COMMON})": f"{api}/search?limit=50&q={COMMON}",
                    "one message": message,
                    "one message, raw .eml": message + "/raw",
                    "drafts": f"{api}/drafts",
                    "one draft with its preview": f"{api}/drafts/{draft['id']}",
                }
                results = {name: await measure(http, clock, path, args.iterations) for name, path in pages.items()}
        finally:
            console.close()
            hub.close()
    worst = max(r["server"]["p99_ms"] for r in results.values())
    out: dict[str, Any] = {
        "benchmark": "console_pages",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "messages": args.messages if fill_seconds is not None else "reused",
        "inbox_counts": {k: total[k] for k in ("total", "unread", "drafts", "capped")},
        "fill_seconds": round(fill_seconds, 1) if fill_seconds is not None else "reused",
        "iterations": args.iterations,
        "results": results,
        "goal_server_ms": GOAL_MS,
        "worst_server_p99_ms": worst,
        "goal_met": all(r["server"]["p50_ms"] < GOAL_MS for r in results.values()),
    }
    if not args.keep and args.data_dir is None:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return out


async def _cursor_at(http: Any, api: str, page: int) -> str:
    """The cursor that starts page `page` (walked once, 100 at a time; not timed)."""
    after = ""
    needed = (page - 1) * 50
    walked = 0
    while walked < needed:
        step = min(100, needed - walked)
        query = f"{api}/messages?limit={step}" + (f"&after={after}" if after else "")
        data = (await http.get(query)).json()
        after = data["next"]
        walked += step
        if after is None:
            raise SystemExit(f"the inbox has fewer than {needed} messages")
    return quote(after, safe="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per page")
    parser.add_argument("--deep-page", type=int, default=1000, help="the page number of the deep keyset page")
    parser.add_argument("--data-dir", type=Path, help="reuse (or create) the store here instead of a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
