"""The WebSocket API: `/v1/ws` and `/v1/inboxes/{inbox_id}/ws`, fed by the event hub.

Protocol (frames exactly as in the reference's websockets.md):
- auth: `X-API-Key` header, `Authorization: Bearer <key>`, or `?api_key=`. A missing or bad key
  is accepted and then closed with code 4401 (no frames): an application close code reaches
  every client, including browsers, which cannot read the status of a refused handshake.
- `{"type":"connected","inboxId","email"}` right after the handshake (the ak_ key's inbox or the
  URL's inbox, else nulls).
- `/v1/ws` delivers nothing until the client's first `subscribe` frame (the reference's flow
  always subscribes first; a silent firehose would surprise a client that never asked).
  Each `subscribe` replaces the previous filter; an invalid one leaves it unchanged and answers
  an `error` frame. `/v1/inboxes/{inbox_id}/ws` is subscribed to its inbox before `connected`
  is sent; a key that cannot see that inbox gets an `error` frame and close code 4403.
- Scoping: an inbox id the key cannot see (or that does not exist: same answer, nothing leaks)
  gets `Forbidden inbox_id: …`; wk_/ak_ keys naming another workspace get `Forbidden
  workspace_id: …`; tk_ keys may name any workspace id (events never leave their tenant anyway).
  The `subscribed` echo shows the effective lists: a wk_ key's own workspace, an ak_ key's inbox.
- `{"type":"ping"}` every `ping_interval` seconds; client `pong` (and `ping`) frames are ignored.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from mam_mcp.local.auth.credentials import presented_key
from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.events.hub import EventFilter, EventHub, SubscriberDropped, Subscription
from mam_mcp.local.events.model import EVENT_TYPES

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "Authenticate",
    "InboxOwner",
    "websocket_routes",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Authenticate = Callable[[str], KeyScope | None | Awaitable[KeyScope | None]]
InboxOwnerRow = tuple[str, str | None, str]  # (tenant_id, workspace_id, email)
InboxOwner = Callable[[str], InboxOwnerRow | None | Awaitable[InboxOwnerRow | None]]

CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_TOO_SLOW: Final = 1013  # "try again later": the subscriber could not keep up
CLOSE_GOING_AWAY: Final = 1001  # the hub closed (shutdown)
MAX_FILTER_ITEMS: Final = 10
MAX_CLIENT_FRAME_CHARS: Final = 64 * 1024

def websocket_routes(
    hub: EventHub,
    *,
    authenticate: Authenticate,
    inbox_owner: InboxOwner,
    ping_interval: float = 30.0,
) -> list[WebSocketRoute]:
    """`/v1/ws` and the legacy `/v1/inboxes/{inbox_id}/ws`, for `create_app(..., extra_routes=...)`."""
    sockets = _EventSockets(hub, authenticate, inbox_owner, ping_interval)
    return [
        WebSocketRoute("/v1/ws", sockets.serve_stream, name="events_ws"),
        WebSocketRoute("/v1/inboxes/{inbox_id}/ws", sockets.serve_inbox, name="inbox_events_ws"),
    ]


async def _resolve(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class _SocketGone(Exception):
    """The client disconnected (or the socket was closed) while we were talking to it."""


class _SubscribeRejected(Exception):
    """A subscribe frame that cannot be honoured; the message goes back in an `error` frame."""


class _EventSockets:
    def __init__(
        self, hub: EventHub, authenticate: Authenticate, inbox_owner: InboxOwner, ping_interval: float
    ) -> None:
        self._hub = hub
        self._authenticate = authenticate
        self._inbox_owner = inbox_owner
        self._ping_interval = ping_interval

    async def serve_stream(self, websocket: WebSocket) -> None:
        await self._serve(websocket, url_inbox_id=None)

    async def serve_inbox(self, websocket: WebSocket) -> None:
        await self._serve(websocket, url_inbox_id=websocket.path_params["inbox_id"])

    async def _serve(self, websocket: WebSocket, *, url_inbox_id: str | None) -> None:
        await websocket.accept()
        try:
            await self._serve_accepted(websocket, url_inbox_id)
        except _SocketGone:
            return  # the client went away; nothing to clean up beyond the subscription

    async def _serve_accepted(self, websocket: WebSocket, url_inbox_id: str | None) -> None:
        channel = _Channel(websocket)
        key = presented_key(websocket, from_query=True)
        scope = await self._scope_of(key)
        if scope is None:
            await channel.close(CLOSE_UNAUTHORIZED, "invalid or missing API key")
            return
        inbox_id, email = None, None
        event_filter: EventFilter | None = None
        if url_inbox_id is not None:
            email = await self._visible_inbox_email(scope, url_inbox_id)
            if email is None:
                await channel.send({"type": "error", "message": f"Forbidden inbox_id: {url_inbox_id}"})
                await channel.close(CLOSE_FORBIDDEN, "forbidden inbox")
                return
            inbox_id = url_inbox_id
            event_filter = EventFilter(inbox_ids=frozenset({url_inbox_id}), scope=scope)
        elif scope.kind == "ak" and scope.inbox_id is not None:
            inbox_id = scope.inbox_id
            email = await self._visible_inbox_email(scope, scope.inbox_id)
        with self._hub.subscribe(event_filter) as subscription:
            await channel.send({"type": "connected", "inboxId": inbox_id, "email": email})
            await self._converse(channel, key or "", scope, subscription, url_inbox_id)
        if subscription.ended.is_set() and websocket.application_state == WebSocketState.CONNECTED:
            code, reason = (
                (CLOSE_TOO_SLOW, "subscriber too slow; events were dropped")
                if subscription.dropped
                else (CLOSE_GOING_AWAY, "server shutting down")
            )
            with anyio.move_on_after(2):  # a client that stopped reading may never take the close frame
                await channel.close(code, reason)

    async def _scope_of(self, key: str | None) -> KeyScope | None:
        if key is None:
            return None
        try:
            return await _resolve(self._authenticate(key))
        except Exception:
            logger.exception("events: authentication failed with an error")
            return None

    async def _visible_inbox_email(self, scope: KeyScope, inbox_id: str) -> str | None:
        owner = await _resolve(self._inbox_owner(inbox_id))
        if owner is None:
            return None
        tenant_id, workspace_id, email = owner
        return (
            email
            if scope.can_see(tenant_id=tenant_id, workspace_id=workspace_id, inbox_id=inbox_id)
            else None
        )

    async def _converse(
        self, channel: _Channel, key: str, scope: KeyScope, subscription: Subscription, url_inbox_id: str | None
    ) -> None:
        async with anyio.create_task_group() as tasks:

            async def until_closed(work: Callable[[], Awaitable[None]]) -> None:
                # Whichever side ends first (client gone, send failed, subscriber dropped) ends them all.
                try:
                    await work()
                except (_SocketGone, SubscriberDropped):
                    pass
                except Exception:  # a bug in one socket's handling must end that socket only
                    logger.exception("events: WebSocket task failed")
                finally:
                    tasks.cancel_scope.cancel()

            tasks.start_soon(
                until_closed, lambda: self._receive_frames(channel, scope, subscription, url_inbox_id)
            )
            tasks.start_soon(until_closed, lambda: self._forward_events(channel, key, subscription))
            if self._ping_interval > 0:
                tasks.start_soon(until_closed, lambda: self._send_pings(channel))
            tasks.start_soon(until_closed, self._until_ended(subscription))

    @staticmethod
    def _until_ended(subscription: Subscription) -> Callable[[], Awaitable[None]]:
        async def wait() -> None:
            await subscription.ended.wait()

        return wait

    async def _forward_events(self, channel: _Channel, key: str, subscription: Subscription) -> None:
        async for event in subscription:
            # Scope is checked at connect; a key revoked since (or its inbox deleted) must stop receiving.
            if await self._scope_of(key) is None:
                await channel.close(CLOSE_UNAUTHORIZED, "API key revoked")
                return
            await channel.send(event.ws_frame())

    async def _send_pings(self, channel: _Channel) -> None:
        while True:
            await anyio.sleep(self._ping_interval)
            await channel.send({"type": "ping"})

    async def _receive_frames(
        self, channel: _Channel, scope: KeyScope, subscription: Subscription, url_inbox_id: str | None
    ) -> None:
        while True:
            message = await channel.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame, problem = _decode_frame(message)
            if problem is not None:
                await channel.send({"type": "error", "message": problem})
                continue
            assert frame is not None
            kind = frame.get("type")
            if kind in ("pong", "ping"):
                continue
            if kind != "subscribe":
                await channel.send({"type": "error", "message": f"Unknown frame type: {str(kind)[:64]}"})
                continue
            try:
                new_filter, echo = await self._subscription_for(frame, scope, url_inbox_id)
            except _SubscribeRejected as rejected:
                await channel.send({"type": "error", "message": str(rejected)})
                continue
            async with channel.lock:
                # Under the send lock: `subscribed` goes out before any event the new filter lets through.
                subscription.filter = new_filter
                await channel.send_unlocked({"type": "subscribed", **echo})

    async def _subscription_for(
        self, frame: dict[str, Any], scope: KeyScope, url_inbox_id: str | None
    ) -> tuple[EventFilter, dict[str, list[str]]]:
        event_types = _string_list(frame, "event_types")
        inbox_ids = _string_list(frame, "inbox_ids")
        workspace_ids = _dedupe(_string_list(frame, "workspace_ids") + _string_list(frame, "pod_ids"))
        if len(workspace_ids) > MAX_FILTER_ITEMS:
            raise _SubscribeRejected(f"workspace_ids: at most {MAX_FILTER_ITEMS} items")
        for event_type in event_types:
            if event_type not in EVENT_TYPES:
                raise _SubscribeRejected(f"Unknown event_type: {event_type[:64]}")
        for inbox_id in inbox_ids:
            if await self._visible_inbox_email(scope, inbox_id) is None:
                raise _SubscribeRejected(f"Forbidden inbox_id: {inbox_id[:128]}")
        if scope.kind != "tk":
            for workspace_id in workspace_ids:
                if workspace_id != scope.workspace_id:
                    raise _SubscribeRejected(f"Forbidden workspace_id: {workspace_id[:128]}")
        if not inbox_ids and url_inbox_id is not None:
            inbox_ids = [url_inbox_id]
        if not inbox_ids and scope.kind == "ak" and scope.inbox_id is not None:
            inbox_ids = [scope.inbox_id]
        if not workspace_ids and scope.kind == "wk" and scope.workspace_id is not None:
            workspace_ids = [scope.workspace_id]  # wk_ keys are locked to their workspace
        event_filter = EventFilter(
            event_types=frozenset(event_types),
            inbox_ids=frozenset(inbox_ids),
            workspace_ids=frozenset(workspace_ids),
            scope=scope,
        )
        return event_filter, {
            "event_types": event_types,
            "inbox_ids": inbox_ids,
            "workspace_ids": workspace_ids,
        }


class _Channel:
    """Serialises frames onto one socket (events, pings and replies come from different tasks)."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.lock = anyio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.send_unlocked(frame)

    async def send_unlocked(self, frame: dict[str, Any]) -> None:
        if self.websocket.application_state != WebSocketState.CONNECTED:
            raise _SocketGone
        try:
            await self.websocket.send_text(
                json.dumps(frame, ensure_ascii=False, separators=(",", ":"), default=str)
            )
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise _SocketGone from exc

    async def receive(self) -> dict[str, Any]:
        try:
            return dict(await self.websocket.receive())
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise _SocketGone from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.websocket.close(code=code, reason=reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass


def _decode_frame(message: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    text = message.get("text")
    if text is None:
        return None, "Frames must be JSON text"
    if len(text) > MAX_CLIENT_FRAME_CHARS:
        return None, "Frame too large"
    try:
        frame = json.loads(text)
    except ValueError:
        return None, "Invalid JSON frame"
    if not isinstance(frame, dict):
        return None, "Frames must be JSON objects"
    return frame, None


def _string_list(frame: dict[str, Any], name: str) -> list[str]:
    value = frame.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _SubscribeRejected(f"{name} must be a list of strings")
    items = _dedupe(value)
    if len(items) > MAX_FILTER_ITEMS:
        raise _SubscribeRejected(f"{name}: at most {MAX_FILTER_ITEMS} items")
    return items


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
