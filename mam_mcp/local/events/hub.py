"""The in-process event hub: every inbox event, offered to each subscriber whose filter matches.

`EventHub.publish` is a synchronous, non-blocking sink for `LocalBackend.add_event_sink`: each
subscriber has a bounded queue, and a subscriber that falls behind is dropped (the WebSocket API
closes its socket with 1013) instead of slowing anyone else. Call `publish` on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Self

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.events.model import MailEvent

__all__ = ["EventFilter", "EventHub", "SubscriberDropped", "Subscription"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING: Final = 256


class SubscriberDropped(Exception):
    """The subscriber fell more than `max_pending` events behind and was dropped; events were lost."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber gets. Empty sets match everything; the fields AND-combine.

    `scope` limits what the key may see at all (tenant, workspace or single inbox).
    """

    event_types: frozenset[str] = frozenset()
    inbox_ids: frozenset[str] = frozenset()
    workspace_ids: frozenset[str] = frozenset()
    scope: KeyScope | None = None

    def matches(self, event: MailEvent) -> bool:
        if self.scope is not None and not self.scope.can_see(
            tenant_id=event.tenant_id, workspace_id=event.workspace_id, inbox_id=event.inbox_id
        ):
            return False
        if self.event_types and event.event_type not in self.event_types:
            return False
        if self.inbox_ids and event.inbox_id not in self.inbox_ids:
            return False
        return not self.workspace_ids or event.workspace_id in self.workspace_ids


_CLOSED: Final = object()
_DROPPED: Final = object()


class Subscription:
    """One subscriber's bounded queue; iterate it with `async for` (ends when closed).

    `filter = None` matches nothing (a socket that has not subscribed yet); it can be replaced at
    any time and takes effect for the next published event.
    """

    def __init__(self, hub: EventHub, event_filter: EventFilter | None, max_pending: int) -> None:
        self._hub = hub
        self.filter = event_filter
        self._queue: asyncio.Queue[object] = asyncio.Queue(
            maxsize=max_pending + 1
        )  # +1: room for the end marker
        self._max_pending = max_pending
        self.ended = asyncio.Event()
        self.dropped = False

    def _offer(self, event: MailEvent) -> None:
        if self.filter is None or self.ended.is_set() or not self.filter.matches(event):
            return
        if self._queue.qsize() >= self._max_pending:
            self.dropped = True
            self._end(_DROPPED)
            logger.warning("events: dropped a subscriber %d events behind", self._max_pending)
            return
        self._queue.put_nowait(event)

    def _end(self, marker: object) -> None:
        if self.ended.is_set():
            return
        self._hub._forget(self)
        if marker is _DROPPED:
            while not self._queue.empty():  # what is queued is stale once events were lost
                self._queue.get_nowait()
        self._queue.put_nowait(marker)
        self.ended.set()

    def close(self) -> None:
        self._end(_CLOSED)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def get(self) -> MailEvent:
        """The next event; raises `SubscriberDropped` if events were lost, `StopAsyncIteration` if closed."""
        item = await self._queue.get()
        if isinstance(item, MailEvent):
            return item
        self._queue.put_nowait(item)  # the end marker stays for any later call
        if item is _DROPPED:
            raise SubscriberDropped(f"more than {self._max_pending} events pending")
        raise StopAsyncIteration

    def __aiter__(self) -> AsyncIterator[MailEvent]:
        return self

    async def __anext__(self) -> MailEvent:
        return await self.get()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class EventHub:
    """Fans inbox events out to in-process subscribers (WebSockets, `wait_for_email` in tests)."""

    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._subscriptions: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: MailEvent) -> None:
        """Offer `event` to every subscriber whose filter matches; never blocks, never raises."""
        for subscription in list(self._subscriptions):
            try:
                subscription._offer(event)
            except Exception:  # one broken subscriber must not stop the fan-out
                logger.exception("events: subscriber failed")

    def subscribe(
        self, event_filter: EventFilter | None = EventFilter(), *, max_pending: int | None = None
    ) -> Subscription:
        """Register now (events published from here on are kept); use as a context manager to unsubscribe."""
        subscription = Subscription(self, event_filter, max_pending or self._max_pending)
        self._subscriptions.add(subscription)
        return subscription

    def close(self) -> None:
        """End every subscription (their iterators stop); used at shutdown."""
        for subscription in list(self._subscriptions):
            subscription.close()

    def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
