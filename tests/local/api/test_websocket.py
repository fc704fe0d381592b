"""The /v1/ws WebSocket protocol over the event hub, in process (httpx2's ASGI WebSocket transport)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from httpx2.websockets import ASGIWebSocketTransport, AsyncWebSocketSession, WebSocketDisconnect
from starlette.applications import Starlette

from mam_mcp.local.api.websocket import websocket_routes
from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.events.hub import EventHub
from tests.asgi_server import serve_asgi
from tests.local.events.test_hub import INBOXES, KEYS, make_event


async def authenticate(key: str) -> KeyScope | None:  # async, as a store lookup may be
    return KEYS.get(key)


def inbox_owner(inbox_id: str) -> tuple[str, str | None, str] | None:  # sync on purpose: both are accepted
    return INBOXES.get(inbox_id)


# --- the WebSocket routes -----------------------------------------------------------------------

WsFactory = Callable[..., AbstractAsyncContextManager[AsyncWebSocketSession]]


@pytest.fixture
def hub() -> EventHub:
    return EventHub()


@asynccontextmanager
async def serving(hub: EventHub, *, ping_interval: float = 3600.0) -> AsyncIterator[WsFactory]:
    """The routes in a Starlette app, and a factory of client sockets to them.

    A context manager used inside each test rather than a fixture: the ASGI transport's task group
    must be entered and left in the same task.
    """
    app = Starlette(
        routes=websocket_routes(
            hub, authenticate=authenticate, inbox_owner=inbox_owner, ping_interval=ping_interval
        )
    )
    async with (
        ASGIWebSocketTransport(app) as transport,
        httpx2.AsyncClient(transport=transport, base_url="http://mam.test") as client,
    ):

        def open_ws(
            path: str = "/v1/ws", *, key: str | None = "tk_a", how: str = "x-api-key", **kwargs: Any
        ) -> Any:
            headers: dict[str, str] = {}
            params: dict[str, str] = {}
            if key is not None and how == "x-api-key":
                headers["X-API-Key"] = key
            elif key is not None and how == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            elif key is not None:
                params["api_key"] = key
            kwargs.setdefault("keepalive_ping_interval_seconds", None)
            return client.websocket(path, headers=headers, params=params, **kwargs)

        yield open_ws


async def next_frame(ws: AsyncWebSocketSession) -> dict[str, Any]:
    frame = json.loads(await ws.receive_text(timeout=5))
    assert isinstance(frame, dict)
    return frame


async def subscribe(ws: AsyncWebSocketSession, **filters: Any) -> dict[str, Any]:
    await ws.send_text(json.dumps({"type": "subscribe", **filters}))
    return await next_frame(ws)


async def closed_with(ws: AsyncWebSocketSession) -> int:
    """Reads until the server closes; returns the close code (bounded by the receive timeout)."""
    with pytest.raises(WebSocketDisconnect) as closed:
        for _ in range(20):
            await ws.receive_text(timeout=5)
    return closed.value.code


@pytest.mark.parametrize("how", ["x-api-key", "bearer", "query"])
async def test_each_auth_form_connects(hub: EventHub, how: str) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect(key="tk_a", how=how) as ws:
                assert await next_frame(ws) == {"type": "connected", "inboxId": None, "email": None}


@pytest.mark.parametrize("key", ["tk_nope", None, ""])
async def test_bad_or_missing_key_is_closed_with_4401_and_no_frames(hub: EventHub, key: str | None) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect(key=key) as ws:
                assert await closed_with(ws) == 4401


async def test_connected_names_the_inbox_of_an_ak_key(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect(key="ak_a1") as ws:
                assert await next_frame(ws) == {
                    "type": "connected",
                    "inboxId": "inb_a1",
                    "email": "a1@mam.localhost",
                }


async def test_nothing_arrives_before_the_first_subscribe(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)  # connected
                hub.publish(make_event("inb_a1"))  # before subscribing: must not be delivered
                assert (await subscribe(ws))["type"] == "subscribed"
                later = make_event("inb_a1")
                hub.publish(later)
                assert await next_frame(ws) == later.ws_frame()


async def test_event_frames_are_exact_and_ids_unique(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                await subscribe(ws, inbox_ids=["inb_a1"])
                first, second = make_event("inb_a1"), make_event("inb_a1")
                hub.publish(first)
                hub.publish(second)
                frames = [await next_frame(ws), await next_frame(ws)]
        assert frames == [first.ws_frame(), second.ws_frame()]
        assert frames[0]["event_id"] != frames[1]["event_id"]
        assert set(frames[0]) == {"type", "event_type", "event_id", "message", "thread"}
        assert frames[0]["message"]["plain_body"] == "Your code: 483921"


async def test_subscribed_echoes_the_effective_lists(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect(key="tk_a") as ws:
                await next_frame(ws)
                assert await subscribe(
                    ws, event_types=["message.received"], inbox_ids=["inb_a1", "inb_a1"]
                ) == {
                    "type": "subscribed",
                    "event_types": ["message.received"],
                    "inbox_ids": ["inb_a1"],
                    "workspace_ids": [],
                }
                assert (await subscribe(ws, pod_ids=["ws2"]))["workspace_ids"] == ["ws2"]  # pod_ids alias
            async with connect(key="wk_a1") as ws:
                await next_frame(ws)
                assert await subscribe(ws) == {
                    "type": "subscribed",
                    "event_types": [],
                    "inbox_ids": [],
                    "workspace_ids": ["ws1"],
                }
            async with connect(key="ak_a1") as ws:
                await next_frame(ws)
                assert await subscribe(ws, event_types=["message.sent"]) == {
                    "type": "subscribed",
                    "event_types": ["message.sent"],
                    "inbox_ids": ["inb_a1"],
                    "workspace_ids": [],
                }


@pytest.mark.parametrize(
    ("key", "filters", "message"),
    [
        ("tk_a", {"inbox_ids": ["inb_b1"]}, "Forbidden inbox_id: inb_b1"),  # another tenant's inbox
        (
            "tk_a",
            {"inbox_ids": ["inb_missing"]},
            "Forbidden inbox_id: inb_missing",
        ),  # same answer: no existence leak
        ("wk_a1", {"inbox_ids": ["inb_a2"]}, "Forbidden inbox_id: inb_a2"),  # another workspace's inbox
        ("wk_a1", {"workspace_ids": ["ws2"]}, "Forbidden workspace_id: ws2"),
        ("wk_a1", {"pod_ids": ["ws2"]}, "Forbidden workspace_id: ws2"),
        ("ak_a1", {"inbox_ids": ["inb_a1b"]}, "Forbidden inbox_id: inb_a1b"),  # same workspace, not its inbox
        ("tk_a", {"event_types": ["message.opened"]}, "Unknown event_type: message.opened"),
        ("tk_a", {"inbox_ids": [f"inb_{i}" for i in range(11)]}, "inbox_ids: at most 10 items"),
        (
            "tk_a",
            {"event_types": ["message.received"] * 3 + [f"x{i}" for i in range(10)]},
            "event_types: at most 10 items",
        ),
        (
            "tk_a",
            {"workspace_ids": [f"w{i}" for i in range(6)], "pod_ids": [f"p{i}" for i in range(5)]},
            "workspace_ids: at most 10 items",
        ),
        ("tk_a", {"inbox_ids": "inb_a1"}, "inbox_ids must be a list of strings"),
        ("tk_a", {"event_types": [1]}, "event_types must be a list of strings"),
    ],
)
async def test_invalid_subscribe_answers_an_error_frame_and_keeps_the_old_filter(
    hub: EventHub, key: str, filters: dict[str, Any], message: str
) -> None:
    async with serving(hub) as connect:
        own_inbox = "inb_a1"
        with anyio.fail_after(10):
            async with connect(key=key) as ws:
                await next_frame(ws)
                await subscribe(ws, inbox_ids=[own_inbox])
                assert await subscribe(ws, **filters) == {"type": "error", "message": message}
                event = make_event(own_inbox)
                hub.publish(make_event("inb_a2"))  # outside the old filter
                hub.publish(event)
                assert await next_frame(ws) == event.ws_frame()


async def test_malformed_frames_get_error_frames_and_pong_is_ignored(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                await ws.send_text("{not json")
                assert await next_frame(ws) == {"type": "error", "message": "Invalid JSON frame"}
                await ws.send_text("[1, 2]")
                assert await next_frame(ws) == {"type": "error", "message": "Frames must be JSON objects"}
                await ws.send_bytes(b"\x00\x01")
                assert await next_frame(ws) == {"type": "error", "message": "Frames must be JSON text"}
                await ws.send_text(json.dumps({"type": "pong"}))
                await ws.send_text(json.dumps({"type": "unsubscribe"}))
                # The pong produced nothing: the next frame is the answer to the unknown type.
                assert await next_frame(ws) == {"type": "error", "message": "Unknown frame type: unsubscribe"}


async def test_filters_and_combine(hub: EventHub) -> None:
    async with serving(hub) as connect:
        wanted = make_event("inb_a2", "message.received")
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                await subscribe(
                    ws,
                    event_types=["message.received"],
                    inbox_ids=["inb_a1", "inb_a2"],
                    workspace_ids=["ws2"],
                )
                hub.publish(make_event("inb_a1", "message.received"))  # inbox ok, workspace not
                hub.publish(make_event("inb_a2", "message.sent"))  # wrong type
                hub.publish(make_event("inb_a0", "message.received"))  # inbox not listed
                hub.publish(wanted)
                assert await next_frame(ws) == wanted.ws_frame()


async def test_keys_only_ever_see_their_scope(hub: EventHub) -> None:
    async with serving(hub) as connect:
        expected = {
            "tk_a": ["inb_a1", "inb_a1b", "inb_a2", "inb_a0"],
            "wk_a1": ["inb_a1", "inb_a1b"],
            "ak_a1": ["inb_a1"],
            "tk_b": ["inb_b1"],
        }
        for key, inboxes in expected.items():
            with anyio.fail_after(10):
                async with connect(key=key) as ws:
                    await next_frame(ws)
                    await subscribe(ws)  # no filters: everything the key may see
                    for inbox_id in INBOXES:
                        hub.publish(make_event(inbox_id))
                    hub.publish(make_event(inboxes[-1], "message.bounced"))  # end marker
                    seen = []
                    while (frame := await next_frame(ws))["event_type"] != "message.bounced":
                        seen.append(frame["message"]["inbox_id"])
                    assert seen == inboxes, key


async def test_a_revoked_key_stops_receiving_on_an_open_socket(
    hub: EventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect(key="wk_a1") as ws:
                await next_frame(ws)
                await subscribe(ws)
                first = make_event("inb_a1")
                hub.publish(first)
                assert await next_frame(ws) == first.ws_frame()
                monkeypatch.delitem(KEYS, "wk_a1")  # revoked (or its workspace deleted) while connected
                hub.publish(make_event("inb_a1"))
                with pytest.raises(WebSocketDisconnect) as closed:  # the close comes first: no event frame
                    await ws.receive_text(timeout=5)
                assert closed.value.code == 4401


async def test_legacy_inbox_route_is_subscribed_before_connected(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect("/v1/inboxes/inb_a1/ws", key="wk_a1") as ws:
                assert await next_frame(ws) == {
                    "type": "connected",
                    "inboxId": "inb_a1",
                    "email": "a1@mam.localhost",
                }
                mine = make_event("inb_a1")
                hub.publish(make_event("inb_a1b"))
                hub.publish(mine)
                assert await next_frame(ws) == mine.ws_frame()


@pytest.mark.parametrize(
    ("key", "inbox_id"), [("tk_b", "inb_a1"), ("wk_a1", "inb_a2"), ("ak_a1", "inb_a1b"), ("tk_a", "inb_nope")]
)
async def test_legacy_route_refuses_an_inbox_out_of_scope(hub: EventHub, key: str, inbox_id: str) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect(f"/v1/inboxes/{inbox_id}/ws", key=key) as ws:
                assert await next_frame(ws) == {"type": "error", "message": f"Forbidden inbox_id: {inbox_id}"}
                assert await closed_with(ws) == 4403


async def test_server_sends_json_pings(hub: EventHub) -> None:
    async with serving(hub, ping_interval=0.05) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                assert await next_frame(ws) == {"type": "ping"}
                assert await next_frame(ws) == {"type": "ping"}


async def test_large_html_bodies_arrive_whole(hub: EventHub) -> None:
    async with serving(hub) as connect:
        html = "<html><body>" + "<p>lorem ipsum dolor sit amet é</p>" * 20_000 + "</body></html>"  # ~700 KB
        event = make_event("inb_a1", html=html)
        with anyio.fail_after(10):
            async with connect(max_message_size_bytes=8 * 1024 * 1024) as ws:
                await next_frame(ws)
                await subscribe(ws)
                hub.publish(event)
                frame = await next_frame(ws)
        assert frame["message"]["html_body"] == html


async def test_a_socket_that_falls_behind_is_closed_1013() -> None:
    small = EventHub(max_pending=4)
    async with serving(small) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                await subscribe(ws)
                for _ in range(10):  # a burst faster than the socket drains
                    small.publish(make_event("inb_a1"))
                assert await closed_with(ws) == 1013
    assert small.subscriber_count == 0


async def test_hub_close_closes_sockets_1001(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                await subscribe(ws)
                hub.close()
                assert await closed_with(ws) == 1001


async def test_client_disconnect_unsubscribes(hub: EventHub) -> None:
    async with serving(hub) as connect:
        with anyio.fail_after(10):
            async with connect() as ws:
                await next_frame(ws)
                assert hub.subscriber_count == 1
            for _ in range(500):  # bounded: the server side notices the close within a few loop turns
                if hub.subscriber_count == 0:
                    break
                await anyio.sleep(0.01)
        assert hub.subscriber_count == 0


# --- under a real server (uvicorn with wsproto, as the daemon runs it) ------------------------------


@asynccontextmanager
async def served_by_uvicorn(hub: EventHub) -> AsyncIterator[str]:
    app = Starlette(
        routes=websocket_routes(hub, authenticate=authenticate, inbox_owner=inbox_owner, ping_interval=3600)
    )
    async with serve_asgi(app, ws="wsproto", lifespan="off") as base_url:
        yield base_url


async def test_over_real_tcp_auth_big_frames_and_a_stalled_reader_is_cut_off() -> None:
    hub = EventHub(max_pending=8)
    big_html = "<p>" + "x" * 300_000 + "</p>"
    async with served_by_uvicorn(hub) as base_url, httpx2.AsyncClient(base_url=base_url) as client:
        with anyio.fail_after(30):
            async with client.websocket(
                "/v1/ws", params={"api_key": "nope"}, keepalive_ping_interval_seconds=None
            ) as ws:
                assert await closed_with(ws) == 4401
            async with (
                client.websocket(
                    "/v1/ws",
                    params={"api_key": "tk_a"},
                    max_message_size_bytes=4 * 1024 * 1024,
                    keepalive_ping_interval_seconds=None,
                ) as reader,
                client.websocket(
                    "/v1/ws",
                    headers={"Authorization": "Bearer tk_a"},
                    queue_size=1,  # this client stops reading from the socket after one frame
                    max_message_size_bytes=4 * 1024 * 1024,
                    keepalive_ping_interval_seconds=None,
                ) as stalled,
            ):
                for ws in (reader, stalled):
                    await next_frame(ws)
                    await subscribe(ws)
                sent = 0
                while hub.subscriber_count == 2 and sent < 400:  # ~120 MB at most before TCP backs up
                    event = make_event("inb_a1", html=big_html)
                    hub.publish(event)
                    sent += 1
                    assert await next_frame(reader) == event.ws_frame()  # the reader keeps up, frame by frame
                assert hub.subscriber_count == 1, "the stalled subscriber should have been dropped"
                last = make_event("inb_a1")
                hub.publish(last)
                assert await next_frame(reader) == last.ws_frame()
