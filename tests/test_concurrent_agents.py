"""Eight agents at once through one real daemon: each sends to the next and waits for its own mail.

Every message is delivered exactly once, every agent's waits return each of its messages once and
in a usable order (cursor semantics), and a raw event subscriber sees every delivery: no event lost.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.client.event_models import format_time
from mam_mcp.client.event_stream import open_event_stream
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.local.daemon_process import RunningDaemon, daemon_config, daemon_process

AGENTS = 8
PER_AGENT = 4


@asynccontextmanager
async def _agent(tmp_path: Path, daemon: RunningDaemon, index: int) -> AsyncIterator[Client]:
    async def factory(settings: Any) -> MamClient:
        return MamClient(base_url=daemon.base_url, api_key=daemon.api_key)

    settings = make_settings(tmp_path / f"agent{index}", hosted=False, env={"MAM_MCP_MODE": "local"})
    server = build_server(settings, client_factory=factory)
    async with Client(server) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


async def _call(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    assert not result.is_error, f"{name}: {result.content[0].text}"
    return dict(result.structured_content or {})


async def test_eight_agents_send_and_wait_through_one_daemon(tmp_path: Path) -> None:
    async with daemon_process(daemon_config(tmp_path / "data")) as daemon, AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(_agent(tmp_path, daemon, i)) for i in range(AGENTS)]
        inboxes = [await _call(a, "create_inbox", {"username": f"agent{i}"}) for i, a in enumerate(agents)]
        received: dict[int, list[str]] = {i: [] for i in range(AGENTS)}
        seen_events: list[str] = []

        async with MamClient(base_url=daemon.base_url, api_key=daemon.api_key) as watcher:
            stream_ready = anyio.Event()

            async def watch() -> None:
                async with open_event_stream(
                    watcher, inbox_ids=[i["id"] for i in inboxes], event_types=["message.received"]
                ) as stream:
                    stream_ready.set()
                    async for event in stream:
                        assert event.message is not None
                        seen_events.append(event.message.message_id)
                        if len(seen_events) >= AGENTS * PER_AGENT:
                            return

            async def run(i: int) -> None:
                me, peer = agents[i], inboxes[(i + 1) % AGENTS]
                cursor: str | None = format_time(datetime.now(UTC) - timedelta(seconds=5))
                for n in range(PER_AGENT):
                    await _call(me, "send_email", {
                        "inbox_id": inboxes[i]["id"], "to": [peer["email"]], "subject": f"from {i} #{n}", "body": f"{i}/{n}",
                    })  # fmt: skip
                for _ in range(PER_AGENT):
                    # From a time before the first send, then each result's cursor: the next one each time.
                    args = {"inbox_id": inboxes[i]["id"], "timeout_seconds": 20, "extract": False, "received_after": cursor}
                    found = await _call(me, "wait_for_email", args)
                    assert found["found"], f"agent {i} waited in vain after {received[i]}"
                    received[i].append(found["message"]["subject"])
                    cursor = found["cursor"]

            with anyio.fail_after(90):
                async with anyio.create_task_group() as group:
                    group.start_soon(watch)
                    await stream_ready.wait()
                    for i in range(AGENTS):
                        group.start_soon(run, i)

        for i in range(AGENTS):
            sender = (i - 1) % AGENTS
            assert sorted(received[i]) == [f"from {sender} #{n}" for n in range(PER_AGENT)], (i, received[i])
        assert len(seen_events) == AGENTS * PER_AGENT == len(set(seen_events)), "every delivery seen once"
        async with daemon.client() as api:
            for i, inbox in enumerate(inboxes):
                listed = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "inbound", "limit": 100})).json()
                subjects = [m["subject"] for m in listed["messages"]]
                assert sorted(subjects) == sorted(received[i]), f"inbox {i} stored each message exactly once: {json.dumps(subjects)}"
