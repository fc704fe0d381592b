"""The user's route of issue 13: the database held by another process (a backup, an `sqlite3` shell) for
longer than the client's timeout while an agent creates a draft, a webhook or an inbox key.

Real app under uvicorn on 127.0.0.1, real SQLite file, the write lock taken by a second sqlite3
connection (`BEGIN EXCLUSIVE`), the calls made through the MCP tools with a short client timeout.
Whatever the timing, exactly one row is created, and the agent gets the created object or a clear
WRITE_OUTCOME_UNKNOWN naming what to list. No timed assertions: the lock is released on events
(the client's retry reached the server; the tool call returned), never after a sleep.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from starlette.types import ASGIApp, Receive, Scope, Send

from mam_mcp.backends import LOCAL_WRITE_RETRIES
from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from tests.asgi_server import serve_asgi
from tests.conftest import make_settings
from tests.local.conftest import LocalBackendFixture, local_backend, local_config  # noqa: F401  (fixtures)

WAIT_LIMIT = 60.0  # every wait below is bounded


class KeyLog:
    """ASGI middleware: the Idempotency-Key of every request that reached the app, by path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.seen.append((scope["path"], headers.get("idempotency-key")))
        await self.app(scope, receive, send)

    async def wait_for_attempts(self, path: str, count: int) -> str:
        """Until `count` POSTs to `path` arrived, all with one key; returns the key."""
        with anyio.fail_after(WAIT_LIMIT):
            while len(keys := [k for p, k in self.seen if p == path]) < count:
                await anyio.sleep(0.02)
        assert keys[0] and len(set(keys)) == 1, keys
        return keys[0]


@asynccontextmanager
async def write_locked(db_path: Path) -> AsyncIterator[Callable[[], None]]:
    """Hold the database's write lock from a second connection; yields `release()`."""
    conn = sqlite3.connect(db_path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            conn.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        conn.close()


def count(db_path: Path, sql: str, *args: Any) -> int:
    with closing(sqlite3.connect(db_path)) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


@asynccontextmanager
async def agent(tmp_path: Path, url: str, key: str, timeout: float) -> AsyncIterator[Client]:
    async def factory(settings: Settings) -> MamClient:  # what connect_backend makes in local mode
        return MamClient(base_url=url, api_key=key, timeout=timeout, write_retries=LOCAL_WRITE_RETRIES)

    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"}, toolsets="all")
    server = build_server(settings, client_factory=factory)
    async with Client(server) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


Case = tuple[str, Callable[[str], dict[str, Any]], Callable[[str], str], str, str]
CASES: list[Case] = [
    (
        "create_draft",
        lambda inbox: {"inbox_id": inbox, "to": ["jane@example.com"], "subject": "Quote", "body": "Hi"},
        lambda inbox: f"/v1/inboxes/{inbox}/drafts",
        "SELECT count(*) FROM drafts WHERE inbox_id=?",
        "list_drafts",
    ),
    (
        "create_webhook",
        lambda inbox: {"url": "https://hooks.example.com/mam", "events": ["message.received"], "inbox_id": inbox},
        lambda inbox: "/v1/webhooks",
        "SELECT count(*) FROM webhooks WHERE inbox_id=?",
        "list_webhooks",
    ),
    (
        "create_inbox_key",
        lambda inbox: {"inbox_id": inbox, "name": "runtime"},
        lambda inbox: f"/v1/inboxes/{inbox}/keys",
        "SELECT count(*) FROM api_keys WHERE inbox_id=? AND name='runtime'",
        "inbox keys cannot be listed",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_released_while_the_client_retries_the_agent_gets_the_one_created_object(
    tmp_path: Path, local_backend: LocalBackendFixture, case: Case  # noqa: F811
) -> None:
    tool, args, path, rows, _ = case
    backend, app, key = local_backend
    logged = KeyLog(app)
    db = backend.config.db_path
    async with serve_asgi(logged) as url:
        async with httpx2.AsyncClient(base_url=url, headers={"X-API-Key": key}) as api:
            inbox = (await api.post("/v1/inboxes", json={"username": "locked"})).json()["id"]
        async with agent(tmp_path, url, key, timeout=2.0) as client, anyio.create_task_group() as tasks:
            results: list[Any] = []

            async def call() -> None:
                results.append(await client.call_tool(tool, args(inbox)))

            async with write_locked(db) as release:
                tasks.start_soon(call)
                # The first attempt timed out with the database still held; its retry (same key) arrived.
                await logged.wait_for_attempts(path(inbox), 2)
                release()
        result = results[0]
    assert not result.is_error, result.content[0].text
    assert result.structured_content["id"]
    assert count(db, rows, inbox) == 1
    if tool != "create_draft":  # the one-time secret reached the agent's 0600 file, from the replayed answer
        secret_file = result.structured_content.get("secret_file") or result.structured_content.get("key_file")
        assert secret_file and Path(secret_file).read_text().strip().startswith(("whsec_", "ak_"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_held_past_every_attempt_the_agent_is_told_to_check_and_one_row_is_made(
    tmp_path: Path, local_backend: LocalBackendFixture, case: Case  # noqa: F811
) -> None:
    tool, args, path, rows, check = case
    backend, app, key = local_backend
    logged = KeyLog(app)
    db = backend.config.db_path
    async with serve_asgi(logged) as url:
        async with httpx2.AsyncClient(base_url=url, headers={"X-API-Key": key}) as api:
            inbox = (await api.post("/v1/inboxes", json={"username": "locked"})).json()["id"]
        async with agent(tmp_path, url, key, timeout=0.5) as client:
            async with write_locked(db):
                with anyio.fail_after(WAIT_LIMIT):
                    result = await client.call_tool(tool, args(inbox))
            assert result.is_error
            text = result.content[0].text
            assert text.startswith("WRITE_OUTCOME_UNKNOWN:") and "may have been" in text and check in text
            assert len([p for p, _ in logged.seen if p == path(inbox)]) == 1 + LOCAL_WRITE_RETRIES
            # The lock is gone: the server finishes the one request it kept; the retry made nothing more.
            with anyio.fail_after(WAIT_LIMIT):
                while count(db, "SELECT count(*) FROM request_records WHERE status IS NOT NULL") < 1:
                    await anyio.sleep(0.02)
            assert count(db, rows, inbox) == 1
            # The agent checks, as told, and finds it.
            if tool == "create_draft":
                listed = await client.call_tool("list_drafts", {"inbox_id": inbox})
                assert len(listed.structured_content["drafts"]) == 1
            elif tool == "create_webhook":
                listed = await client.call_tool("list_webhooks", {})
                assert len(listed.structured_content["webhooks"]) == 1
