"""List and search latency at 100k messages: store calls and the REST app in process.

Fills one inbox with --messages messages through `EmailStore.mail.insert_inbound` (concurrent
callers, so the writer's group commit turns them into big transactions), then measures
p50/p99 of: list newest 20, and full-text search (`q`) for a rare, a medium and a common
word — both directly on the store and through the REST app (`create_app`, in-process
ASGI via httpx2). Prints JSON. Goals: list p50 < 5 ms, search p50 < 20 ms.

    python bench/list_search.py                      # 100,000 messages, a fresh temp dir
    python bench/list_search.py --data-dir /tmp/mam-100k --keep   # reuse the filled store next time
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore

FILL_CHUNK = 2000  # concurrent insert_inbound calls in flight; the writer batches up to 512 per commit
COMMON_WORDS = [
    "account",
    "update",
    "meeting",
    "invoice",
    "report",
    "project",
    "review",
    "team",
    "order",
    "welcome",
]
# Search terms and the share of messages they appear in (by construction below).
RARE, MEDIUM, COMMON = "zephyrine", "quarterly", "account"


def make_message(index: int, rng: random.Random, recipient: str) -> bytes:
    words = rng.sample(COMMON_WORDS, 3)
    extra = []
    if index % 1000 == 0:
        extra.append(RARE)  # 0.1% of messages
    if index % 20 == 0:
        extra.append(MEDIUM)  # 5%
    sender = f"user{rng.randrange(500)}@example{rng.randrange(20)}.com"
    subject = f"{words[0].title()} {words[1]} #{index} {' '.join(extra)}".strip()
    body = (
        f"Hello,\r\n\r\nThis is message {index} about the {words[0]} {words[1]} and the {words[2]}.\r\n"
        + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.\r\n" * 8
        + (f"Mentions: {' '.join(extra)}\r\n" if extra else "")
        + f"Your {COMMON} code is {index:06d}.\r\n"
    )
    return (
        f"From: Sender {index % 500} <{sender}>\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: <fill-{index}@example.com>\r\nDate: Wed, 25 Nov 2026 03:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


async def fill(store: EmailStore, recipient: str, count: int) -> float:
    rng = random.Random(1234)
    started = time.perf_counter()
    for first in range(0, count, FILL_CHUNK):
        raws = [make_message(i, rng, recipient) for i in range(first, min(count, first + FILL_CHUNK))]
        await asyncio.gather(
            *(store.mail.insert_inbound(raw, mail_from="bench@example.com", rcpt_tos=[recipient]) for raw in raws)
        )
    return time.perf_counter() - started


async def measure(call: Callable[[], Awaitable[Any]], iterations: int) -> dict[str, float]:
    for _ in range(min(20, iterations)):  # warm caches and the thread pool
        await call()
    samples: list[float] = []
    for _ in range(iterations):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 3),
    }


async def store_results(store: EmailStore, inbox_id: str, iterations: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "list_newest_20": await measure(lambda: store.mail.list_messages(inbox_id, limit=20), iterations)
    }
    for name, word in (("rare", RARE), ("medium", MEDIUM), ("common", COMMON)):
        rows = await store.mail.list_messages(inbox_id, q=word, limit=20)
        results[f"search_{name}"] = {
            "query": word,
            "page": len(rows),
            **await measure(functools.partial(store.mail.list_messages, inbox_id, q=word, limit=20), iterations),
        }
    return results


async def rest_results(
    config: LocalConfig, store: EmailStore, inbox_id: str, tenant_id: str, iterations: int
) -> dict[str, Any]:
    import httpx2

    from mam_mcp.local.api.app import create_app
    from mam_mcp.local.service.backend import LocalBackend

    backend = LocalBackend(config, store)
    api_key = (await backend.keys.mint("tk", tenant_id=tenant_id, name="bench")).key
    app = create_app(backend)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://local", headers={"X-API-Key": api_key}
    ) as http:

        async def get(params: dict[str, Any]) -> None:
            response = await http.get(f"/v1/inboxes/{inbox_id}/messages", params=params)
            response.raise_for_status()

        results: dict[str, Any] = {"list_newest_20": await measure(lambda: get({"limit": 20}), iterations)}
        for name, word in (("rare", RARE), ("medium", MEDIUM), ("common", COMMON)):
            results[f"search_{name}"] = {
                "query": word,
                **await measure(functools.partial(get, {"limit": 20, "q": word}), iterations),
            }
    return results


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mam-bench-100k-"))
    config = LocalConfig(data_dir=data_dir, http_port=0, smtp_port=0)
    async with EmailStore(config) as store:
        recipient = f"bench@{config.domain}"
        found = store.accounts.inbox_for_address(recipient)
        fill_seconds = None
        if found is None:
            tenant_id = await store.accounts.create_tenant()
            inbox = await store.accounts.create_inbox(
                tenant_id=tenant_id,
                workspace_id=None,
                username="bench",
                domain=config.domain,
                display_name=None,
            )
            inbox_id = inbox["id"]
            fill_seconds = await fill(store, recipient, args.messages)
            tenant = tenant_id
        else:
            inbox_id, tenant, _ = found
        out: dict[str, Any] = {
            "benchmark": "list_search",
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "messages": args.messages,
            "fill_seconds": round(fill_seconds, 1) if fill_seconds is not None else "reused",
            "fill_msgs_per_s": round(args.messages / fill_seconds) if fill_seconds else None,
            "db_bytes": config.db_path.stat().st_size,
            "iterations": args.iterations,
            "store": await store_results(store, inbox_id, args.iterations),
        }
        if not args.store_only:
            out["rest"] = await rest_results(config, store, inbox_id, tenant, args.iterations)
    out["goals"] = {"list_p50_ms": 5, "search_p50_ms": 20}
    if not args.keep and args.data_dir is None:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=300, help="timed calls per measurement")
    parser.add_argument(
        "--data-dir", type=Path, help="reuse (or create) the store here instead of a temp dir"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    parser.add_argument("--store-only", action="store_true", help="skip the REST measurements")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
