"""The event hub on its own: fan-out by filter and scope, bounded queues, closing."""

from __future__ import annotations

from typing import Any

import pytest

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.events.hub import EventFilter, EventHub, SubscriberDropped
from mam_mcp.local.events.model import MailEvent

# Two tenants; tenant A has workspaces ws1 and ws2 and an inbox outside any workspace.
INBOXES: dict[str, tuple[str, str | None, str]] = {
    "inb_a1": ("ten_a", "ws1", "a1@mam.localhost"),
    "inb_a1b": ("ten_a", "ws1", "a1b@mam.localhost"),
    "inb_a2": ("ten_a", "ws2", "a2@mam.localhost"),
    "inb_a0": ("ten_a", None, "a0@mam.localhost"),
    "inb_b1": ("ten_b", None, "b1@mam.localhost"),
}
KEYS: dict[str, KeyScope] = {
    "tk_a": KeyScope(kind="tk", key_id="k1", tenant_id="ten_a"),
    "wk_a1": KeyScope(kind="wk", key_id="k2", tenant_id="ten_a", workspace_id="ws1"),
    "ak_a1": KeyScope(kind="ak", key_id="k3", tenant_id="ten_a", workspace_id="ws1", inbox_id="inb_a1"),
    "tk_b": KeyScope(kind="tk", key_id="k4", tenant_id="ten_b"),
}


def make_event(
    inbox_id: str, event_type: str = "message.received", *, html: str = "<p>Your code: 483921</p>"
) -> MailEvent:
    tenant_id, workspace_id, email = INBOXES[inbox_id]
    return MailEvent(
        event_type=event_type,  # type: ignore[arg-type]
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        inbox_id=inbox_id,
        message={
            "inbox_id": inbox_id,
            "thread_id": "thr_1",
            "message_id": f"msg_{inbox_id}",
            "from": "noreply@github.com",
            "to": [email],
            "subject": "Your one-time code is 483921",
            "plain_body": "Your code: 483921",
            "html_body": html,
            "timestamp": "2026-04-11T09:12:34.000Z",
        },
        thread={"thread_id": "thr_1", "subject": "Your one-time code is 483921"},
    )



async def drain(subscription: Any) -> list[MailEvent]:
    events = []
    while subscription.pending:
        events.append(await subscription.get())
    return events


async def test_publish_reaches_only_matching_subscribers() -> None:
    hub = EventHub()
    everything = hub.subscribe()
    received_a1 = hub.subscribe(
        EventFilter(event_types=frozenset({"message.received"}), inbox_ids=frozenset({"inb_a1"}))
    )
    ws2 = hub.subscribe(EventFilter(workspace_ids=frozenset({"ws2"})))
    nothing = hub.subscribe(None)
    events = [
        make_event("inb_a1"),
        make_event("inb_a1", "message.sent"),
        make_event("inb_a2"),
        make_event("inb_b1"),
    ]
    for event in events:
        hub.publish(event)
    assert await drain(everything) == events
    assert await drain(received_a1) == [events[0]]
    assert await drain(ws2) == [events[2]]
    assert await drain(nothing) == []


async def test_scope_limits_what_a_subscriber_sees() -> None:
    hub = EventHub()
    subs = {key: hub.subscribe(EventFilter(scope=scope)) for key, scope in KEYS.items()}
    for inbox_id in INBOXES:
        hub.publish(make_event(inbox_id))
    seen = {key: [e.inbox_id for e in await drain(sub)] for key, sub in subs.items()}
    assert seen == {
        "tk_a": ["inb_a1", "inb_a1b", "inb_a2", "inb_a0"],
        "wk_a1": ["inb_a1", "inb_a1b"],
        "ak_a1": ["inb_a1"],
        "tk_b": ["inb_b1"],
    }


async def test_slow_subscriber_is_dropped_and_others_keep_everything() -> None:
    hub = EventHub(max_pending=3)
    slow = hub.subscribe()
    fast = hub.subscribe(max_pending=100)
    events = [make_event("inb_a1") for _ in range(10)]
    for event in events:
        hub.publish(event)  # never blocks, even with a subscriber that reads nothing
    assert [await fast.get() for _ in events] == events
    assert slow.dropped
    assert hub.subscriber_count == 1
    with pytest.raises(SubscriberDropped):
        await slow.get()
    with pytest.raises(SubscriberDropped):  # and it stays that way
        async for _ in slow:
            pass


async def test_closing_ends_iteration_and_unsubscribes() -> None:
    hub = EventHub()
    with hub.subscribe() as subscription:
        hub.publish(make_event("inb_a1"))
        assert hub.subscriber_count == 1
    assert hub.subscriber_count == 0
    hub.publish(make_event("inb_a1"))
    got = [event.inbox_id async for event in subscription]
    assert got == ["inb_a1"]  # what was queued before the close is still delivered


async def test_hub_close_ends_every_subscription() -> None:
    hub = EventHub()
    subs = [hub.subscribe() for _ in range(3)]
    hub.close()
    assert hub.subscriber_count == 0
    for subscription in subs:
        assert [event async for event in subscription] == []
