"""Live resources: an inbox's message list (`myagentmail://inboxes/{inbox_id}/messages`) that a
host can follow instead of waiting in a tool call.

Two protocol eras, one mechanism:

- handshake-era hosts send `resources/subscribe` / `resources/unsubscribe`; the server sends
  `notifications/resources/updated` with the URI on that connection when mail arrives, and
  drops the connection's subscriptions when it closes;
- 2026-07-28 hosts open `subscriptions/listen` with the URI in `resourceSubscriptions`; the
  SDK's listen handler filters the server's bus, and `ListenWatch` follows the inboxes named
  for as long as the stream is open.

Each followed inbox has one event stream (client/event_stream.py: the push WebSocket that
wait_for_email uses, polling as the fallback) shared by all its subscribers; it starts with
the first subscriber and stops with the last. Nothing here runs at import time, and the event
stream is imported only when an inbox is followed (`serve` start-up stays light).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from mam_mcp.client.errors import ConnectionFailed, MamError
from mam_mcp.toolkit.runtime import Runtime

__all__ = [
    "INBOX_MESSAGES_TEMPLATE",
    "MAX_FOLLOWED_INBOXES",
    "InboxFollower",
    "ListenWatch",
    "inbox_messages_uri",
    "inbox_of_uri",
    "register_subscriptions",
]

logger = logging.getLogger("mam_mcp.live")

INBOX_MESSAGES_TEMPLATE = "myagentmail://inboxes/{inbox_id}/messages"
_URI = re.compile(r"^myagentmail://inboxes/([A-Za-z0-9][A-Za-z0-9_.:-]{0,127})/messages$")
MAX_FOLLOWED_INBOXES = 25  # one event stream each; a host following more is told so
POLL_INTERVAL = {"hosted": 2.0, "local": 0.5}  # only while the WebSocket is unavailable
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
READY_SECONDS = 15.0  # a subscribe waits this long at most for the inbox's stream to be live

Notify = Callable[[str], Awaitable[None]]


def inbox_messages_uri(inbox_id: str) -> str:
    return INBOX_MESSAGES_TEMPLATE.format(inbox_id=inbox_id)


def inbox_of_uri(uri: str) -> str | None:
    """The inbox id of an inbox message-list URI; None for any other URI."""
    match = _URI.match(uri)
    return match.group(1) if match else None


class InboxFollower:
    """Follows inboxes for subscribers: one event stream per inbox, shared, started and stopped
    with its first and last subscriber. A subscriber is a key (a connection, a listen stream)
    and the coroutine that tells it the inbox's URI changed."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._subscribers: dict[str, dict[Hashable, Notify]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, anyio.Event] = {}
        self._closed = False

    def followed(self) -> dict[str, int]:
        """Inbox id -> number of subscribers (diagnostics and tests)."""
        return {inbox_id: len(subs) for inbox_id, subs in self._subscribers.items()}

    async def check_inbox(self, inbox_id: str) -> None:
        """Raise the API's error (NOT_FOUND, ...) when this key cannot read the inbox."""
        client = await self._rt.client()
        try:
            await client.inboxes.get(inbox_id)
        except ConnectionFailed:
            if self._rt.settings.mode != "local":
                raise
            await self._rt.reconnect()  # the idle daemon stopped: start it again, once
            await (await self._rt.client()).inboxes.get(inbox_id)

    def follow(self, inbox_id: str, key: Hashable, notify: Notify) -> anyio.Event:
        """Follow `inbox_id` for `key`; the event is set once mail arriving from then on is seen
        (the stream subscribed or polling), so a subscribe answered after it misses nothing."""
        if self._closed:
            raise MamError("the server is shutting down", code="UNAVAILABLE", hint="Reconnect and subscribe again.")
        if inbox_id not in self._subscribers and len(self._subscribers) >= MAX_FOLLOWED_INBOXES:
            raise MamError(
                f"this server already follows {MAX_FOLLOWED_INBOXES} inboxes",
                code="LIMIT_REACHED",
                hint="Unsubscribe from an inbox you no longer need first.",
            )
        self._subscribers.setdefault(inbox_id, {})[key] = notify
        if inbox_id not in self._tasks:
            self._ready[inbox_id] = anyio.Event()
            self._tasks[inbox_id] = asyncio.get_running_loop().create_task(
                self._follow(inbox_id, self._ready[inbox_id]), name=f"follow-{inbox_id}"
            )
        return self._ready[inbox_id]

    def unfollow(self, inbox_id: str, key: Hashable) -> None:
        subscribers = self._subscribers.get(inbox_id)
        if subscribers is None:
            return
        subscribers.pop(key, None)
        if not subscribers:
            del self._subscribers[inbox_id]
            self._ready.pop(inbox_id, None)
            task = self._tasks.pop(inbox_id, None)
            if task is not None:
                task.cancel()

    def unfollow_all(self, key: Hashable) -> None:
        for inbox_id in [i for i, subs in self._subscribers.items() if key in subs]:
            self.unfollow(inbox_id, key)

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        self._subscribers.clear()
        self._tasks.clear()
        self._ready.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _notify(self, inbox_id: str) -> None:
        uri = inbox_messages_uri(inbox_id)
        for key, notify in list(self._subscribers.get(inbox_id, {}).items()):
            try:
                await notify(uri)
            except Exception:  # one subscriber's broken channel must not starve the others
                logger.warning("could not notify a subscriber of %s; dropping it", uri)
                self.unfollow(inbox_id, key)

    async def _follow(self, inbox_id: str, ready: anyio.Event) -> None:
        """Until cancelled: open the inbox's event stream and notify on each mail; reopen after a
        failure with bounded backoff (the stream itself already falls back to polling)."""
        from mam_mcp.client.event_stream import open_event_stream

        mode = self._rt.settings.mode
        backoff = BACKOFF_FIRST
        while inbox_id in self._subscribers:
            try:
                client = await self._rt.client()
                async with open_event_stream(
                    client,
                    inbox_ids=[inbox_id],
                    event_types=["message.received"],
                    poll_interval=POLL_INTERVAL.get(mode, 2.0),
                    local_filters=mode == "local",
                ) as events:
                    await events.ready.wait()
                    ready.set()
                    async for event in events:
                        backoff = BACKOFF_FIRST
                        if event.event_type == "message.received" and event.inbox_id in (None, inbox_id):
                            await self._notify(inbox_id)
            except ConnectionFailed:
                if mode == "local":
                    await self._rt.reconnect()  # the next round starts the daemon again
            except MamError as error:
                logger.warning("following inbox %s: %s", inbox_id, error.code)
            ready.set()  # a waiting subscribe is not held up by a failing stream: it retries below
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)


def _error(error: MamError) -> MCPError:
    return MCPError(INVALID_PARAMS, error.to_text())


def _uri_error(uri: str) -> MCPError:
    return MCPError(
        INVALID_PARAMS,
        f"VALIDATION_ERROR: uri: only an inbox's message list can be subscribed to, not {uri[:120]!r}. "
        f"Hint: Use {INBOX_MESSAGES_TEMPLATE} with an id from list_inboxes.",
    )


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Any:
    # The SDK documents `Connection.exit_stack` for per-connection teardown but hands lowlevel
    # handlers only the per-request session, which holds the connection.
    connection = getattr(ctx.session, "_connection", None)
    if connection is None or not hasattr(connection, "send_resource_updated"):
        raise MCPError(INVALID_PARAMS, "resources/subscribe is not available on this connection")
    return connection


def register_subscriptions(lowlevel: Any, follower: InboxFollower) -> None:
    """Serve `resources/subscribe` and `resources/unsubscribe` (which also announces
    `resources.subscribe: true` to handshake-era hosts) on the SDK's lowlevel server."""

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        inbox_id = inbox_of_uri(str(params.uri))
        if inbox_id is None:
            raise _uri_error(str(params.uri))
        connection = _connection_of(ctx)
        try:
            await follower.check_inbox(inbox_id)
            first = not connection.state.get("mam_followed")
            ready = follower.follow(inbox_id, connection, connection.send_resource_updated)
        except MamError as error:
            raise _error(error) from None
        with anyio.move_on_after(READY_SECONDS):
            await ready.wait()
        if first:
            connection.state["mam_followed"] = True
            connection.exit_stack.callback(follower.unfollow_all, connection)  # the session ended
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        inbox_id = inbox_of_uri(str(params.uri))
        if inbox_id is not None:
            follower.unfollow(inbox_id, _connection_of(ctx))
        return EmptyResult()

    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


class ListenWatch:
    """Server middleware: while a `subscriptions/listen` stream names inbox message lists in
    `resourceSubscriptions`, follow those inboxes and publish `ResourceUpdated` on the bus the
    SDK's listen handler reads (it delivers each URI only to the streams that asked for it)."""

    def __init__(self, follower: InboxFollower, bus: SubscriptionBus) -> None:
        self._follower = follower
        self._bus = bus
        # The bus is shared by every stream, so the streams follow an inbox under one key, counted:
        # a mail is published once, and each stream that named the URI gets it once.
        self._streams: dict[str, int] = {}

    async def _publish(self, uri: str) -> None:
        await self._bus.publish(ResourceUpdated(uri=uri))

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen" or not isinstance(ctx.params, dict):
            return await call_next(ctx)
        notifications = ctx.params.get("notifications")
        wanted = notifications.get("resourceSubscriptions") if isinstance(notifications, dict) else None
        inbox_ids = sorted({i for uri in wanted or () if isinstance(uri, str) and (i := inbox_of_uri(uri))})
        followed: list[str] = []
        try:
            for inbox_id in inbox_ids:
                try:
                    await self._follower.check_inbox(inbox_id)
                    ready = self._follower.follow(inbox_id, "listen", self._publish)
                except MamError as error:
                    raise _error(error) from None
                with anyio.move_on_after(READY_SECONDS):
                    await ready.wait()
                self._streams[inbox_id] = self._streams.get(inbox_id, 0) + 1
                followed.append(inbox_id)
            return await call_next(ctx)
        finally:
            for inbox_id in followed:
                self._streams[inbox_id] -= 1
                if not self._streams[inbox_id]:
                    del self._streams[inbox_id]
                    self._follower.unfollow(inbox_id, "listen")
