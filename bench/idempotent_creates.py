"""What an Idempotency-Key costs a create: POST /drafts without a key, with a new key, and replayed.

A keyed create claims its key (one commit), creates (one commit) and records the answer (one
commit); a replay is one read. Runs the REST app in process (ASGI via httpx2) over a real store in
a temp dir, the three kinds interleaved round by round so machine load hits them alike. Prints
JSON: p50/p99 in ms per kind, and the keyed/unkeyed p50 ratio. No goal: it documents the cost.

    python bench/idempotent_creates.py               # 300 rounds
    python bench/idempotent_creates.py --rounds 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import httpx2

from mam_mcp.local.api.app import create_app
from mam_mcp.local.auth.keys import mint_tenant_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.store.email_store import EmailStore


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


async def run(rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        config = LocalConfig(data_dir=Path(tmp) / "local", http_port=0, smtp_port=0)
        store = EmailStore(config)
        await store.open()
        try:
            key = await mint_tenant_key(store)
            app = create_app(LocalBackend(config, store))
            async with httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://bench", headers={"X-API-Key": key}
            ) as api:
                inbox = (await api.post("/v1/inboxes", json={"username": "bench"})).json()["id"]
                url = f"/v1/inboxes/{inbox}/drafts"
                body = {"to": ["jane@example.com"], "subject": "Quote", "text": "Hello"}
                times: dict[str, list[float]] = {"no_key": [], "new_key": [], "replay": []}
                for index in range(rounds):
                    for kind, headers in (
                        ("no_key", {}),
                        ("new_key", {"Idempotency-Key": f"k{index}"}),
                        ("replay", {"Idempotency-Key": f"k{index}"}),
                    ):
                        started = time.perf_counter()
                        response = await api.post(url, json=body, headers=headers)
                        times[kind].append(time.perf_counter() - started)
                        assert response.status_code == 201, response.text
                drafts = (await api.get(url, params={"limit": 100})).json()["drafts"]
                assert len(drafts) == min(100, 2 * rounds)  # replays made no draft (2 per round, not 3)
        finally:
            await store.close()
    result: dict[str, object] = {kind: percentiles(samples) for kind, samples in times.items()}
    no_key, new_key = result["no_key"], result["new_key"]
    assert isinstance(no_key, dict) and isinstance(new_key, dict)
    result["new_key_over_no_key_p50"] = round(new_key["p50_ms"] / no_key["p50_ms"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result = asyncio.run(run(args.rounds))
    result.update({"rounds": args.rounds, "load_average_start": round(load, 2), "python": platform.python_version()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
