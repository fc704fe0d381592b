"""WebSocket events of the fake hosted API: the subscriber hub and the `/v1/ws` frame protocol.

Frames follow the reference: `connected`, `subscribe` -> `subscribed`, `event`, `ping`, `error`;
`pong` is ignored and `pod_ids` is an alias of `workspace_ids`. `/v1/ws` delivers nothing until
a `subscribe` frame arrives; the legacy `/v1/inboxes/{id}/ws` is subscribed to its inbox at once.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formataddr
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.events.model import EVENT_TYPES, EventType, MailEvent
from tests.fakes.hosted_records import TENANT_ID, InboxRecord, MessageRecord
from tests.fakes.hosted_state import HostedState

__all__ = ["EventHub", "SocketSession", "Subscription", "event_for_message"]

MAX_FILTER_ITEMS = 10
_SERVER_CLOSE = "_server_close"  # an internal frame type: the session closes its socket
_SUBSCRIBE_KEYS = {"type", "event_types", "inbox_ids", "workspace_ids", "pod_ids"}


def event_for_message(state: HostedState, message: MessageRecord, event_type: EventType) -> MailEvent:
    """The event a stored message produces, with the reference's snake_case message object."""
    inbox = state.inboxes[message.inbox_id]
    thread = state.threads[message.thread_id]
    sender = (
        formataddr((message.from_name, message.from_address)) if message.from_name else message.from_address
    )
    return MailEvent(
        event_type=event_type,
        tenant_id=TENANT_ID,
        workspace_id=inbox.workspace_id,
        inbox_id=inbox.id,
        message={
            "inbox_id": inbox.id,
            "thread_id": thread.id,
            "message_id": message.id,
            "from": sender,
            "to": list(message.to),
            "subject": message.subject,
            "plain_body": message.plain_body,
            "html_body": message.html_body,
            "timestamp": message.received_at or message.sent_at or message.created_at,
        },
        thread={"thread_id": thread.id, "subject": thread.subject},
        has_attachments=bool(message.attachments),
    )


@dataclass(eq=False)
class Subscription:
    """One socket's filters; inactive (receives nothing) until subscribed."""

    key_scope: KeyScope
    active: bool = False
    locked_inbox_id: str | None = None  # the legacy per-inbox socket stays on its inbox
    event_types: set[str] = field(default_factory=set)
    inbox_ids: set[str] = field(default_factory=set)
    workspace_ids: set[str] = field(default_factory=set)
    frames_in: MemoryObjectSendStream[dict[str, Any]] = field(init=False)
    frames_out: MemoryObjectReceiveStream[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.frames_in, self.frames_out = anyio.create_memory_object_stream[dict[str, Any]](math.inf)

    def wants(self, event: MailEvent) -> bool:
        if not self.active:
            return False
        if not self.key_scope.can_see(
            tenant_id=event.tenant_id, workspace_id=event.workspace_id, inbox_id=event.inbox_id
        ):
            return False
        if self.event_types and event.event_type not in self.event_types:
            return False
        if self.inbox_ids and event.inbox_id not in self.inbox_ids:
            return False
        return not self.workspace_ids or event.workspace_id in self.workspace_ids


class EventHub:
    """Fans events out to open sockets. `publish` is synchronous so `deliver_inbound` can be too."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.published: list[MailEvent] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: MailEvent) -> None:
        self.published.append(event)
        for subscription in list(self._subscriptions):
            if subscription.wants(event):
                try:
                    subscription.frames_in.send_nowait(event.ws_frame())
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._subscriptions.discard(subscription)

    def disconnect_all(self, code: int = 1012) -> None:
        """Close every open socket from the server side (1012: service restart)."""
        for subscription in list(self._subscriptions):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                subscription.frames_in.send_nowait({"type": _SERVER_CLOSE, "code": code})

    @contextmanager
    def open(self, subscription: Subscription) -> Iterator[Subscription]:
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            subscription.frames_in.close()
            subscription.frames_out.close()


class SocketSession:
    """One accepted socket: reads client frames, writes events and keepalive pings."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        state: HostedState,
        hub: EventHub,
        ping_interval: float,
        record_violation: Callable[[str], None],
    ) -> None:
        self._ws = websocket
        self._state = state
        self._hub = hub
        self._ping_interval = ping_interval
        self._violation = record_violation
        self._write_lock = anyio.Lock()

    async def run(self, key_scope: KeyScope, legacy_inbox: InboxRecord | None) -> None:
        await self._ws.accept()
        home = legacy_inbox or (self._state.inboxes.get(key_scope.inbox_id or ""))
        await self._send(
            {"type": "connected", "inboxId": home.id if home else None, "email": home.email if home else None}
        )
        subscription = Subscription(key_scope)
        if legacy_inbox is not None:
            subscription.active = True
            subscription.locked_inbox_id = legacy_inbox.id
            subscription.inbox_ids = {legacy_inbox.id}
        with self._hub.open(subscription):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._write_events, subscription, tasks.cancel_scope)
                await self._read_frames(subscription)
                tasks.cancel_scope.cancel()
        if self._ws.client_state == self._ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._ws.close()

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._write_lock:
            await self._ws.send_text(json.dumps(frame))

    async def _write_events(self, subscription: Subscription, session: anyio.CancelScope) -> None:
        while True:
            frame: dict[str, Any] = {"type": "ping"}  # sent when nothing else came in the interval
            with anyio.move_on_after(self._ping_interval):
                frame = await subscription.frames_out.receive()
            try:
                if frame["type"] == _SERVER_CLOSE:
                    await self._ws.close(code=frame["code"])
                    session.cancel()
                    return
                await self._send(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client went away; the reader sees the disconnect and ends the session

    async def _read_frames(self, subscription: Subscription) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            raw: str = (
                text if isinstance(text, str) else (message.get("bytes") or b"").decode(errors="replace")
            )
            try:
                frame = json.loads(raw)
            except ValueError:
                await self._error("invalid JSON frame")
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "pong":
                continue
            if kind == "subscribe":
                await self._subscribe(subscription, frame)
                continue
            await self._error(f"unknown frame type: {kind!r}")

    async def _error(self, message: str) -> None:
        self._violation(f"WS frame: {message}")
        await self._send({"type": "error", "message": message})

    async def _subscribe(self, subscription: Subscription, frame: dict[str, Any]) -> None:
        unknown = sorted(set(frame) - _SUBSCRIBE_KEYS)
        if unknown:
            await self._error(f"unknown subscribe fields: {', '.join(unknown)}")
            return
        filters: dict[str, list[str]] = {}
        for name in ("event_types", "inbox_ids", "workspace_ids", "pod_ids"):
            value = frame.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                await self._error(f"{name} must be a list of strings")
                return
            if len(value) > MAX_FILTER_ITEMS:
                await self._error(f"{name}: at most {MAX_FILTER_ITEMS} items")
                return
            filters[name] = value
        workspace_ids = filters["workspace_ids"] + filters["pod_ids"]
        problem = self._forbidden(subscription.key_scope, filters, workspace_ids)
        if problem:
            await self._send({"type": "error", "message": problem})
            return
        subscription.event_types = set(filters["event_types"])
        locked = subscription.locked_inbox_id
        subscription.inbox_ids = set(filters["inbox_ids"]) or ({locked} if locked else set())
        subscription.workspace_ids = set(workspace_ids)
        subscription.active = True
        await self._send(
            {
                "type": "subscribed",
                "event_types": filters["event_types"],
                "inbox_ids": sorted(subscription.inbox_ids),
                "workspace_ids": workspace_ids,
            }
        )

    def _forbidden(self, key_scope: KeyScope, filters: dict[str, list[str]], workspace_ids: list[str]) -> str:
        for event_type in filters["event_types"]:
            if event_type not in EVENT_TYPES:
                return f"Unknown event_type: {event_type}"
        for inbox_id in filters["inbox_ids"]:
            inbox = self._state.inboxes.get(inbox_id)
            if inbox is None or not key_scope.can_see(
                tenant_id=TENANT_ID, workspace_id=inbox.workspace_id, inbox_id=inbox.id
            ):
                return f"Forbidden inbox_id: {inbox_id}"
        for workspace_id in workspace_ids:
            allowed = key_scope.kind == "tk" or workspace_id == key_scope.workspace_id
            if not allowed or workspace_id not in self._state.workspaces:
                return f"Forbidden workspace_id: {workspace_id}"
        return ""
