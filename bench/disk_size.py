"""On-disk size of the store at 100k messages against the raw mail it holds (goal: <= 2x raw).

Fills one inbox with --messages messages the way mail reaches a user's store: over SMTP into the
real daemon (started by the launcher in a temp data dir, 8 connections, smtp_ingest's client),
or with `--via store` straight through `EmailStore.mail.insert_inbound` (faster, same bytes on
disk). Then stops the daemon, checkpoints the WAL into the database (TRUNCATE) and prints JSON:
the raw bytes stored, the database + WAL bytes, their ratio, and where the bytes are (per table
and index, from SQLite's dbstat).

    python bench/disk_size.py                         # 100,000 of smtp_ingest's 5 KB messages, over SMTP
    python bench/disk_size.py --via store             # the same bytes, inserted in-process
    python bench/disk_size.py --mail list_search      # 100,000 of list_search's ~1 KB messages
    python bench/disk_size.py --messages 20000 --data-dir /tmp/mam-size --keep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import list_search  # noqa: E402
import smtp_ingest  # noqa: E402

from mam_mcp.local.config import LocalConfig  # noqa: E402
from mam_mcp.local.store.email_store import EmailStore  # noqa: E402

FILL_CHUNK = 2000  # concurrent insert_inbound calls in flight (--via store)
CONNECTIONS = 8  # SMTP connections (--via smtp)
EXIT_WAIT_SECONDS = 60.0
GOAL_RATIO = 2.0


def messages(kind: str, count: int, recipient: str, size: int) -> list[bytes]:
    if kind == "smtp_ingest":
        return [smtp_ingest.make_message(i, size, recipient) for i in range(count)]
    rng = random.Random(1234)
    return [list_search.make_message(i, rng, recipient) for i in range(count)]


async def fill(store: EmailStore, recipient: str, raws: list[bytes]) -> float:
    started = time.perf_counter()
    for first in range(0, len(raws), FILL_CHUNK):
        await asyncio.gather(
            *(
                store.mail.insert_inbound(raw, mail_from="bench@example.com", rcpt_tos=[recipient])
                for raw in raws[first : first + FILL_CHUNK]
            )
        )
    return time.perf_counter() - started


async def fill_over_smtp(work: Path, kind: str, count: int, size: int) -> tuple[Path, int, float]:
    """Through the real daemon over SMTP; returns (its database, raw bytes sent, seconds)."""
    async with smtp_ingest.durable_target(work) as target:
        raws = messages(kind, count, target.recipient, size)
        clients = [await smtp_ingest.SmtpClient.connect(target.port) for _ in range(CONNECTIONS)]

        async def drive(client: smtp_ingest.SmtpClient, batch: list[bytes]) -> None:
            for raw in batch:
                await client.send("noreply@app.example", target.recipient, raw)

        started = time.perf_counter()
        await asyncio.gather(*(drive(client, raws[n::CONNECTIONS]) for n, client in enumerate(clients)))
        seconds = time.perf_counter() - started
        for client in clients:
            await client.close()
        pid = target.pid
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    while pid is not None and time.monotonic() < deadline:  # the daemon closes its store on the way out
        try:
            os.kill(pid, 0)
        except OSError:
            break
        await asyncio.sleep(0.1)
    return LocalConfig(data_dir=work / "durable").db_path, sum(len(r) for r in raws), seconds


async def fill_in_process(data_dir: Path, kind: str, count: int, size: int) -> tuple[Path, int, float]:
    config = LocalConfig(data_dir=data_dir, http_port=0, smtp_port=0)
    recipient = f"bench@{config.domain}"
    raws = messages(kind, count, recipient, size)
    async with EmailStore(config) as store:
        tenant_id = await store.accounts.create_tenant()
        await store.accounts.create_inbox(
            tenant_id=tenant_id, workspace_id=None, username="bench", domain=config.domain, display_name=None
        )
        seconds = await fill(store, recipient, raws)
    return config.db_path, sum(len(r) for r in raws), seconds


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def breakdown(db_path: Path) -> dict[str, int]:
    """Bytes of the 16 largest tables/indexes (FTS5 shadow tables included), largest first."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 16").fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    return {str(name): int(size) for name, size in rows}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mam-bench-size-"))
    if args.via == "smtp":
        db_path, raw_bytes, fill_seconds = await fill_over_smtp(data_dir, args.mail, args.messages, args.size)
    else:
        db_path, raw_bytes, fill_seconds = await fill_in_process(data_dir, args.mail, args.messages, args.size)
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        stored = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        conn.close()
    db_bytes = file_size(db_path)
    wal_bytes = file_size(Path(f"{db_path}-wal"))
    ratio = (db_bytes + wal_bytes) / raw_bytes
    out: dict[str, Any] = {
        "benchmark": "disk_size",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "mail": args.mail,
        "via": args.via,
        "messages": stored,
        "raw_bytes": raw_bytes,
        "mean_message_bytes": round(raw_bytes / max(1, args.messages)),
        "db_bytes": db_bytes,
        "wal_bytes": wal_bytes,
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "met": ratio <= GOAL_RATIO,
        "fill_msgs_per_s": round(args.messages / fill_seconds),
        "by_table": breakdown(db_path),
    }
    if not args.keep and args.data_dir is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--mail", choices=("smtp_ingest", "list_search"), default="smtp_ingest")
    parser.add_argument("--size", type=int, default=5 * 1024, help="message size in bytes (smtp_ingest mail)")
    parser.add_argument("--via", choices=("smtp", "store"), default="smtp", help="how the mail gets in (default: smtp)")
    parser.add_argument("--data-dir", type=Path, help="fill a store here (must not hold one yet)")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
