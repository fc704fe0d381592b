"""The floor for an MCP server of mam-mcp's design: a bare MCP SDK server over stdio whose tools
make the same REST requests to the same local daemon that mam-mcp's tools make.

One tool per call measured by bench/e2e_calls.py (a send is the dry run and the bound send that
mam-mcp's consent path makes). Each uses one kept-alive `httpx2.AsyncClient`
(what mam-mcp's client uses) and returns the daemon's JSON as text: no validation, no shaping,
no extraction. `wait_for_email` works in mam-mcp's order: it lists what already arrived and,
if nothing matches, opens the daemon's WebSocket, subscribes, lists again and waits for a
matching event.

    BENCH_BASE_URL=http://127.0.0.1:PORT BENCH_API_KEY=tk_... python bench/bare_rest_server.py
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import anyio
import httpx2
from mcp.server import MCPServer

BASE_URL = os.environ["BENCH_BASE_URL"].rstrip("/") + "/v1"
API_KEY = os.environ["BENCH_API_KEY"]

server = MCPServer("bare-rest", log_level="WARNING")  # like mam-mcp: no log line per request
_clients: list[httpx2.AsyncClient] = []


def http() -> httpx2.AsyncClient:
    if not _clients:
        _clients.append(httpx2.AsyncClient(base_url=BASE_URL, headers={"X-API-Key": API_KEY}, trust_env=False))
    return _clients[0]


async def get_json(path: str, params: dict[str, Any] | None = None) -> str:
    response = await http().get(path, params=params)
    response.raise_for_status()
    return response.text


@server.tool()
async def list_inboxes() -> str:
    """GET /v1/inboxes."""
    return await get_json("/inboxes")


@server.tool()
async def list_messages(inbox_id: str, query: str | None = None) -> str:
    """GET /v1/inboxes/:id/messages, first page (with q= for a search)."""
    params: dict[str, Any] = {"limit": 20, "offset": 0}
    if query:
        params["q"] = query
    return await get_json(f"/inboxes/{inbox_id}/messages", params)


@server.tool()
async def get_message(inbox_id: str, message_id: str) -> str:
    """GET /v1/inboxes/:id/messages/:message_id."""
    return await get_json(f"/inboxes/{inbox_id}/messages/{message_id}")


@server.tool()
async def send_email(inbox_id: str, to: list[str], subject: str, body: str, verified: bool = False) -> str:
    """POST /v1/inboxes/:id/send twice, as mam-mcp's send does on the local backend: a dry run (the
    exact message, which consent and the outbound policy look at), then the send bound to its hash."""
    path = f"/inboxes/{inbox_id}/send"
    payload = {"to": to, "subject": subject, "plainBody": body, "verified": verified}
    preview = await http().post(path, json={**payload, "dryRun": True}, headers={"Idempotency-Key": uuid.uuid4().hex})
    preview.raise_for_status()
    bound = {**payload, "expectHash": preview.json()["preview"]["contentHash"]}
    sent = await http().post(path, json=bound, headers={"Idempotency-Key": uuid.uuid4().hex})
    sent.raise_for_status()
    return sent.text


async def matching(inbox_id: str, subject_contains: str, received_after: str) -> str | None:
    params = {"direction": "inbound", "limit": 50, "offset": 0, "after": received_after}
    for message in json.loads(await get_json(f"/inboxes/{inbox_id}/messages", params))["messages"]:
        if subject_contains in (message.get("subject") or ""):
            return json.dumps(message)
    return None


@server.tool()
async def wait_for_email(inbox_id: str, subject_contains: str, received_after: str, timeout_seconds: float = 10) -> str:
    """List inbound mail after `received_after`; else subscribe on /v1/ws, list again, wait for a matching event."""
    with anyio.fail_after(timeout_seconds):
        if (found := await matching(inbox_id, subject_contains, received_after)) is not None:
            return found
        async with http().websocket(BASE_URL + "/ws", max_message_size_bytes=32 * 1024 * 1024) as ws:
            await ws.send_text(json.dumps({"type": "subscribe", "event_types": ["message.received"], "inbox_ids": [inbox_id]}))
            while json.loads(await ws.receive_text()).get("type") != "subscribed":
                pass
            if (found := await matching(inbox_id, subject_contains, received_after)) is not None:
                return found
            while True:
                frame = json.loads(await ws.receive_text())
                message = frame.get("message") or {}
                if frame.get("type") == "event" and subject_contains in (message.get("subject") or ""):
                    return json.dumps(message)


if __name__ == "__main__":
    server.run("stdio")
