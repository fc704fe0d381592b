"""The console's live view: server-sent events over the daemon's event hub.

A `mail` event goes out the moment the hub publishes one (a message received or sent) for an inbox
the session may see; the page then reloads what it shows. Drafts and unfinished sends change
without hub events (an agent edits a draft, the relay retries), so every `live_check_seconds` the
stream compares a cheap fingerprint of them and sends `changed` when it moved. The stream ends
with `signed-out` when the session ends, and with `reset` if the page fell too far behind (the
browser reconnects by itself and reloads everything).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mam_mcp.local.console.access import session_of
from mam_mcp.local.console.reads import ConsoleReads
from mam_mcp.local.events.hub import EventFilter, EventHub, SubscriberDropped

__all__ = ["event_stream"]

KEEPALIVE_SECONDS = 15.0
MAX_INBOXES_WATCHED = 200


def _frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(request: Request) -> Response:
    session = session_of(request)
    hub: EventHub = request.app.state.hub
    reads: ConsoleReads = request.app.state.reads
    store = request.app.state.backend.store
    check_every: float = request.app.state.live_check_seconds
    scope = session.scope
    # Subscribed before the response starts: nothing published after this request is missed.
    subscription = hub.subscribe(EventFilter(scope=scope))

    async def fingerprint() -> str:
        rows = await store.accounts.list_inboxes(
            scope.tenant_id,
            workspace_id=scope.workspace_id if scope.kind == "wk" else None,
            inbox_id=scope.inbox_id if scope.kind == "ak" else None,
            limit=MAX_INBOXES_WATCHED,
        )
        return await reads.fingerprint([r["id"] for r in rows])

    async def frames() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n" + _frame("hello", {})
            last = await fingerprint()
            quiet_since = time.monotonic()
            while session.live(time.monotonic()):
                got = None
                with anyio.move_on_after(check_every):
                    got = await subscription.get()
                if got is not None:
                    yield _frame(
                        "mail",
                        {
                            "type": got.event_type,
                            "inboxId": got.inbox_id,
                            "messageId": got.message.get("message_id"),
                            "threadId": got.message.get("thread_id"),
                        },
                    )
                    quiet_since = time.monotonic()
                    continue
                current = await fingerprint()
                if current != last:
                    last = current
                    yield _frame("changed", {"what": "drafts-and-sends"})
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    yield ": keep-alive\n\n"
                    quiet_since = time.monotonic()
            yield _frame("signed-out", {})
        except SubscriberDropped:
            yield _frame("reset", {})
        except StopAsyncIteration:  # the hub closed: the daemon is stopping
            return
        finally:
            subscription.close()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
