"""Inbox events as one async stream: the `/v1/ws` WebSocket, with a polling fallback.

    async with open_event_stream(client, inbox_ids=[inbox_id]) as events:
        await events.ready.wait()          # subscribed (or polling): nothing published from here is missed
        ...                                # e.g. look at messages that arrived before
        async for event in events:         # InboxEvent, the same shape from the socket or from polling
            ...

The socket speaks the reference's frames (`connected`, `subscribe` -> `subscribed`, `event`,
`ping`, `error`). When it cannot be opened (or is slow to), or drops, the stream polls
`GET /v1/inboxes/:id/messages?direction=inbound` (documented parameters only in hosted mode;
the local backend also takes `after=`) while it reconnects with bounded backoff; after a
reconnect it polls once more to backfill the gap and stops polling. Events are deduplicated
on `event_id` and on (event type, message id), so a message seen on both paths comes once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx2
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mam_mcp.client.errors import AuthForbidden, ConnectionFailed, MamError, ValidationFailed
from mam_mcp.client.event_models import InboxEvent, format_time, parse_time
from mam_mcp.client.models import Message

if TYPE_CHECKING:  # a runtime import would be circular: mam_mcp.client may import this module
    from httpx2.websockets import AsyncWebSocketSession

    from mam_mcp.client import MamClient

__all__ = ["MAX_EVENT_BYTES", "EventStream", "Spawn", "open_event_stream"]

logger = logging.getLogger("mam_mcp.client.events")  # the name operators filter on, kept across the module split

# Event frames carry whole HTML bodies; httpx2's default cap (64 KiB) would drop real mail.
MAX_EVENT_BYTES = 32 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0  # upgrade + `subscribed`; after that the stream polls instead
HANDSHAKE_GRACE = 2.0  # a handshake still pending by then: poll meanwhile, so the caller is not held up
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
POLL_PAGE = 50
POLL_MAX_PAGES = 4  # bounded look-back per poll (hosted mode pages newest-first until `since`)
POLL_SLACK = timedelta(seconds=2)
POLL_MAX_INBOXES = 25  # without inbox ids, polling watches this many (the WebSocket watches all)
INBOX_LIST_REFRESH_SECONDS = 30.0  # how often polling re-lists inboxes to notice new ones
_DEDUP_MEMORY = 10_000
# A detached stream closes its socket this long after the consumer left: the close (a write, the
# handshake, the task group's end) then runs after the consumer's answer is out, not before it on
# the same event loop.
DETACHED_CLOSE_DELAY = 0.05

Transport = Literal["connecting", "websocket", "polling"]
# Runs a coroutine in a task that outlives the `async with` (e.g. `Runtime.spawn`).
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class _SocketFailed(Exception):
    """The socket could not be opened, was refused, or dropped; the stream polls and reconnects."""


class EventStream:
    """The consumer's side of `open_event_stream`: `ready`, `transport`, and `async for event in stream`."""

    def __init__(
        self,
        client: MamClient,
        *,
        inbox_ids: Sequence[str],
        event_types: Sequence[str],
        since: datetime | None,
        poll_interval: float,
        local_filters: bool,
        use_websocket: bool,
    ) -> None:
        self._client = client
        self.inbox_ids = list(inbox_ids)
        self.event_types = list(event_types)
        self._since = since or datetime.now(UTC)  # polled messages before this never count
        self._newest_seen: datetime | None = None  # server time of the newest event so far
        self.poll_interval = poll_interval
        self._listed_inboxes: list[str] | None = None  # polling without inbox ids: the key's inboxes
        self._listed_at = 0.0
        self._warned_inbox_cap = False
        self._local_filters = local_filters
        self._use_websocket = use_websocket
        self.ready = anyio.Event()
        self.transport: Transport = "connecting"
        self.reconnects = 0
        self._send: MemoryObjectSendStream[InboxEvent]
        self._receive: MemoryObjectReceiveStream[InboxEvent]
        self._send, self._receive = anyio.create_memory_object_stream[InboxEvent](math.inf)
        self._failure: BaseException | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._polling: anyio.CancelScope | None = None
        self._socket: AsyncWebSocketSession | None = None
        self._socket_scope: anyio.CancelScope | None = None
        self._closing = False
        self._socket_ended = anyio.Event()
        self._tasks: TaskGroup | None = None

    # --- consumer side --------------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[InboxEvent]:
        return self

    async def __anext__(self) -> InboxEvent:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._failure is not None:
                raise self._failure from None
            raise StopAsyncIteration from None

    # --- producer side --------------------------------------------------------------------------
    def _fail(self, error: BaseException) -> None:
        """End the stream with an error the consumer sees on its next read."""
        if self._failure is None:
            self._failure = error
        if self._polling is not None:
            self._polling.cancel()
        self.ready.set()
        self._send.close()

    def _emit(self, event: InboxEvent) -> None:
        keys = [event.event_id]
        if event.message is not None:
            keys.append(f"{event.event_type}:{event.message.message_id}")
        if any(key in self._seen for key in keys):
            return
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > _DEDUP_MEMORY:
            self._seen.popitem(last=False)
        if event.received_at is not None and (
            self._newest_seen is None or event.received_at > self._newest_seen
        ):
            self._newest_seen = event.received_at
        try:
            self._send.send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the consumer has gone

    async def _run(self) -> None:
        """Supervise: socket when possible, polling while not, reconnect with bounded backoff."""
        if not self._use_websocket:
            self._start_polling()
            return
        if self._tasks is not None:
            self._tasks.start_soon(self._poll_if_handshake_slow)
        delay = BACKOFF_FIRST
        while not self._closing:
            try:
                await self._socket_session()
            except _SocketFailed as failure:
                if self.transport == "websocket":  # it was live and dropped: start the backoff over
                    delay = BACKOFF_FIRST
                logger.info(
                    "events: WebSocket unavailable (%s); polling every %.1fs", failure, self.poll_interval
                )
            except MamError as error:  # the server rejected the subscription itself: polling cannot help
                self._fail(error)
                return
            else:
                delay = BACKOFF_FIRST  # a clean session that ended: reconnect promptly
            if self._closing:
                return
            self._start_polling()
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            self.reconnects += 1

    async def _poll_if_handshake_slow(self) -> None:
        """A proxy that swallows the upgrade must not hold the caller for HANDSHAKE_TIMEOUT: poll meanwhile."""
        await anyio.sleep(HANDSHAKE_GRACE)
        if not self.ready.is_set():
            self._start_polling()  # `_subscribe` backfills and stops it if the socket comes up after all

    async def _socket_session(self) -> None:
        http = _async_client(self._client)
        # Shielded: an open socket is ended by closing it (`_close_socket`), never by cancelling the
        # tasks under it; cancelling an in-process ASGI socket mid-receive can hang the event loop.
        ended = self._socket_ended = anyio.Event()
        with anyio.CancelScope(shield=True) as self._socket_scope:
            try:
                async with http.websocket(
                    str(http.base_url).rstrip("/") + "/ws",
                    max_message_size_bytes=MAX_EVENT_BYTES,
                    timeout=HANDSHAKE_TIMEOUT,
                ) as ws:
                    self._socket = ws
                    if self._closing:
                        return
                    await self._subscribe(ws)
                    await self._pump(ws)
            except BaseExceptionGroup as group:  # the session's task group wraps what leaves `async with`
                leaf = _leaf(group)
                if leaf is None:
                    raise
                raise _socket_error(leaf) from None
            except Exception as error:
                raise _socket_error(error) from None
            finally:
                self._socket = None
                self._socket_scope = None
                ended.set()

    async def _close_socket(self) -> None:
        """End the stream's socket gracefully (called shielded, when the stream closes)."""
        self._closing = True
        scope, socket, ended = self._socket_scope, self._socket, self._socket_ended
        if socket is not None:
            with anyio.move_on_after(2):
                await socket.close()
            with anyio.move_on_after(2):
                await ended.wait()  # the pump sees the close on its next read
        if scope is not None:  # also a handshake still under way: nothing to close gracefully, end it now
            scope.cancel()

    async def _subscribe(self, ws: AsyncWebSocketSession) -> None:
        frame: dict[str, Any] = {"type": "subscribe"}
        if self.event_types:
            frame["event_types"] = self.event_types
        if self.inbox_ids:
            frame["inbox_ids"] = self.inbox_ids
        await ws.send_text(json.dumps(frame))
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            while True:
                reply = _decode(await ws.receive_text())
                kind = reply.get("type")
                if kind == "subscribed":
                    break
                if kind == "error":
                    text = str(reply.get("message") or "subscription rejected")[:300]
                    cls = AuthForbidden if "forbidden" in text.lower() else ValidationFailed
                    raise cls(f"event subscription rejected: {text}")
                if kind == "event":  # cannot happen before `subscribed`; keep it rather than lose it
                    self._emit_frame(reply)
        self.transport = "websocket"
        if self._polling is not None:
            try:
                await self._poll_once()  # backfill what arrived while the socket was down, then stop polling
            except ConnectionFailed as error:
                logger.info("events: backfill poll failed (%s)", error.code)
            self._polling.cancel()
            self._polling = None
        self.ready.set()

    async def _pump(self, ws: AsyncWebSocketSession) -> None:
        from httpx2.websockets import WebSocketDisconnect

        while True:
            try:
                frame = _decode(await ws.receive_text())
            except WebSocketDisconnect as closed:
                raise _SocketFailed(f"closed with code {closed.code}") from None
            kind = frame.get("type")
            if kind == "event":
                self._emit_frame(frame)
            elif kind == "error":
                logger.warning("events: server error frame: %s", str(frame.get("message"))[:300])
            # `connected`, `subscribed`, `ping`: nothing to do (pings are only keepalive traffic)

    def _emit_frame(self, frame: dict[str, Any]) -> None:
        try:
            event = InboxEvent.model_validate({**frame, "source": "websocket"})
        except ValueError:
            logger.warning("events: ignored a malformed event frame")
            return
        if not event.event_id:
            return
        self._emit(event)

    async def _run_detached(self, stop: anyio.Event) -> None:
        """The stream's work in a task of its own (`open_event_stream(spawn=...)`): the consumer
        leaves without waiting for the socket's close handshake; this ends the socket after it.

        Whatever ends this task (the consumer leaving, an error in any of the stream's tasks), the
        socket is closed and the consumer hears of an error on its next read: nothing is left
        running, and a failure never looks like a stream that simply ended."""
        try:
            if stop.is_set():  # the consumer left before this task ran: open nothing
                return
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._run_or_fail)
                try:
                    await stop.wait()
                    await anyio.sleep(DETACHED_CLOSE_DELAY)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._close_socket()
                    tasks.cancel_scope.cancel()
        except Exception as error:
            leaf = _leaf(error) if isinstance(error, BaseExceptionGroup) else None
            self._fail(leaf or error)
            raise
        finally:
            self._send.close()

    async def _run_or_fail(self) -> None:
        try:
            await self._run()
        except Exception as error:  # no task group between here and the consumer: it sees it on its next read
            self._fail(error)

    # --- polling --------------------------------------------------------------------------------
    def _start_polling(self) -> None:
        if self._polling is not None or self._tasks is None:
            return
        self.transport = "polling"
        scope = anyio.CancelScope()
        self._polling = scope
        self._tasks.start_soon(self._poll_loop, scope)
        self.ready.set()  # polling covers everything after `since`: the caller may proceed

    async def _poll_loop(self, scope: anyio.CancelScope) -> None:
        with scope:
            failures = 0
            while True:
                try:
                    await self._poll_once()
                    failures = 0
                except ConnectionFailed as error:
                    failures += 1
                    logger.info("events: poll failed (%s); retrying", error.code)
                    if failures >= 10:
                        self._fail(error)
                        return
                except MamError as error:
                    self._fail(error)
                    return
                except Exception as error:  # e.g. the client was closed: the consumer must hear of it
                    logger.warning("events: polling failed: %s", type(error).__name__)
                    self._fail(error)
                    return
                await anyio.sleep(self.poll_interval)

    async def _watched_inboxes(self) -> list[str]:
        """The given inbox ids, or the key's inboxes (re-listed every 30 s, at most 25)."""
        if self.inbox_ids:
            return self.inbox_ids
        now = time.monotonic()
        if self._listed_inboxes is None or now - self._listed_at >= INBOX_LIST_REFRESH_SECONDS:
            every = [inbox.id for inbox in (await self._client.inboxes.list()).inboxes]
            if len(every) > POLL_MAX_INBOXES and not self._warned_inbox_cap:
                self._warned_inbox_cap = True
                logger.warning(
                    "events: polling watches %d of %d inboxes; name the inboxes to watch the others"
                    " (the WebSocket, when it is up, covers all of them)",
                    POLL_MAX_INBOXES,
                    len(every),
                )
            self._listed_inboxes, self._listed_at = every[:POLL_MAX_INBOXES], now
        return self._listed_inboxes

    async def _poll_once(self) -> None:
        inbox_ids = await self._watched_inboxes()
        directions = []
        if not self.event_types or "message.received" in self.event_types:
            directions.append(("inbound", "message.received"))
        if "message.sent" in self.event_types:
            directions.append(("outbound", "message.sent"))
        since = self._since
        if (
            self._newest_seen is not None
        ):  # look back a little: server timestamps may tie or land out of order
            since = max(since, self._newest_seen - POLL_SLACK)
        for inbox_id in inbox_ids:
            for direction, event_type in directions:
                fresh = await self._messages_since(inbox_id, direction, since)
                for message in sorted(fresh, key=lambda m: m.date or ""):
                    self._emit(InboxEvent.from_message(message, event_type))

    async def _messages_since(self, inbox_id: str, direction: str, since: datetime) -> list[Message]:
        """Messages at or after `since`, newest first, in at most POLL_MAX_PAGES pages."""
        extra = {"after": format_time(since)} if self._local_filters else None
        found: list[Message] = []
        for page_number in range(POLL_MAX_PAGES):
            page = await self._client.messages.list(
                inbox_id,
                direction=direction,
                limit=POLL_PAGE,
                offset=page_number * POLL_PAGE,
                extra_filters=extra,
            )
            reached_older = False
            for message in page.messages:
                moment = parse_time(message.date)
                if moment is not None and moment < since:
                    reached_older = True
                    continue
                found.append(message)
            if reached_older or len(page.messages) < POLL_PAGE:
                break
        return found


def _async_client(client: MamClient) -> httpx2.AsyncClient:
    # The socket shares the API client's base URL, X-API-Key header and transport (tests run it in-process).
    return client.http.async_client


def _decode(text: str) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except ValueError:
        return {}
    return frame if isinstance(frame, dict) else {}


def _leaf(group: BaseExceptionGroup[Any]) -> Exception | None:
    """The first ordinary exception in a (nested) group; None if it holds only cancellations."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found = _leaf(error)
            if found is not None:
                return found
        elif isinstance(error, Exception):
            return error
    return None


def _socket_error(error: Exception) -> Exception:
    """What a socket failure means for the stream: fall back and reconnect, or a real error."""
    # Imported when a socket is used, not with this module: the WebSocket stack costs start-up time.
    from httpx2.websockets import HTTPXWSException, WebSocketUpgradeError

    if isinstance(error, (MamError, _SocketFailed)):
        return error
    if isinstance(error, WebSocketUpgradeError):
        return _SocketFailed(f"upgrade refused with HTTP {error.response.status_code}")
    if isinstance(error, (HTTPXWSException, httpx2.TransportError, OSError, TimeoutError)):
        return _SocketFailed(type(error).__name__)
    return error


@asynccontextmanager
async def open_event_stream(
    client: MamClient,
    *,
    inbox_ids: Sequence[str] = (),
    event_types: Sequence[str] = ("message.received",),
    since: datetime | None = None,
    poll_interval: float = 2.0,
    local_filters: bool = False,
    use_websocket: bool = True,
    spawn: Spawn | None = None,
) -> AsyncIterator[EventStream]:
    """Subscribe to inbox events; yields the stream at once (await `stream.ready` before relying on it).

    `since` is the floor for polled messages (default: now); `local_filters` lets polling use the
    local backend's `after=` extension; `use_websocket=False` polls only (benchmarks, diagnostics).
    `spawn`: run the stream's work in a task it starts (one that outlives the `async with`), so that
    leaving does not wait for the socket's close handshake (about a millisecond on loopback, and a
    round trip to a remote server); without it, leaving closes the socket first.
    """
    stream = EventStream(
        client,
        inbox_ids=inbox_ids,
        event_types=event_types,
        since=since,
        poll_interval=poll_interval,
        local_filters=local_filters,
        use_websocket=use_websocket,
    )
    if spawn is not None:
        stop = anyio.Event()
        spawn(stream._run_detached(stop))
        try:
            yield stream
        finally:
            stop.set()
        return
    error: Exception | None = None
    async with anyio.create_task_group() as tasks:
        stream._tasks = tasks
        tasks.start_soon(stream._run)
        try:
            yield stream
        except (
            Exception
        ) as raised:  # re-raised below as itself, not wrapped in the task group's ExceptionGroup
            error = raised
        finally:
            with anyio.CancelScope(shield=True):
                await stream._close_socket()
            tasks.cancel_scope.cancel()
            stream._send.close()
    if error is not None:
        raise error
