"""The client's event stream (`mam_mcp.client.event_stream`): WebSocket, polling fallback, reconnect, dedup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from mam_mcp.client import MamClient
from mam_mcp.client.errors import AuthForbidden, AuthInvalid
from mam_mcp.client.event_models import InboxEvent
from mam_mcp.client.event_stream import (
    HANDSHAKE_GRACE,
    POLL_MAX_INBOXES,
    EventStream,
    open_event_stream,
)
from tests.event_stack import PLAIN, local_stack, until, verification_mail
from tests.fakes.hosted_api import FakeHostedAPI
from tests.fakes.hosted_transport import FakeTransport
from tests.local.conftest import local_backend, local_config  # noqa: F401  (fixtures)


def fake_client(fake: FakeHostedAPI) -> MamClient:
    return MamClient(base_url="http://fake", api_key=fake.api_key, transport=FakeTransport(fake.app))


async def next_event(events: EventStream, timeout: float = 5.0) -> InboxEvent:
    with anyio.fail_after(timeout):
        return await events.__anext__()


async def drain(events: EventStream) -> AsyncIterator[InboxEvent]:
    """Whatever is already queued, without waiting for more."""
    while True:
        with anyio.move_on_after(0.05):
            yield await events.__anext__()
            continue
        return


async def test_events_arrive_over_the_websocket_with_whole_html_bodies() -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    big_html = (
        "<html><body>" + "<p>Your code: 483921</p>" * 10_000 + "</body></html>"
    )  # ~240 KB, over httpx2's 64 KiB
    async with fake_client(fake) as client, open_event_stream(client, inbox_ids=[inbox["id"]]) as events:
        with anyio.fail_after(5):
            await events.ready.wait()
        assert events.transport == "websocket"
        stored = fake.deliver_inbound(
            inbox["id"],
            from_address="a@b.example",
            from_name="Ann",
            subject="Hi",
            plain_body=None,
            html_body=big_html,
        )
        event = await next_event(events)
    assert event.source == "websocket" and event.event_type == "message.received"
    assert event.event_id.startswith("evt_") or event.event_id
    assert event.message is not None and event.message.html_body == big_html
    message = event.to_message()
    assert (message.id, message.from_address, message.from_name) == (stored["id"], "a@b.example", "Ann")
    assert message.received_at == event.message.timestamp
    subscribe = [r for r in fake.requests if r.method == "WS"]
    assert [r.path for r in subscribe] == ["/v1/ws"] and subscribe[0].headers["x-api-key"] == fake.api_key
    assert not fake.violations


async def test_a_refused_socket_falls_back_to_polling_with_documented_parameters_only() -> None:
    fake = FakeHostedAPI()
    fake.refuse_websockets = True
    inbox = fake.seed_inbox("scout")
    async with (
        fake_client(fake) as client,
        open_event_stream(client, inbox_ids=[inbox["id"]], poll_interval=0.05) as events,
    ):
        with anyio.fail_after(5):
            await events.ready.wait()
        assert events.transport == "polling"
        stored = fake.deliver_inbound(
            inbox["id"], from_address="a@b.example", subject="Code", plain_body=PLAIN
        )
        event = await next_event(events)
    assert event.source == "poll" and event.message is not None
    assert event.message.message_id == stored["id"] and event.message.plain_body == PLAIN
    polls = [r for r in fake.requests if r.method == "GET" and r.path.endswith("/messages")]
    assert polls and all(set(r.query) <= {"direction", "limit", "offset"} for r in polls)
    assert all(r.query["direction"] == "inbound" for r in polls)
    assert not fake.violations


async def test_a_rejected_subscription_is_an_error_not_a_silent_fallback() -> None:
    fake = FakeHostedAPI()
    async with fake_client(fake) as client, open_event_stream(client, inbox_ids=["no-such-inbox"]) as events:
        with anyio.fail_after(5):
            await events.ready.wait()
            with pytest.raises(AuthForbidden, match="Forbidden inbox_id"):
                await events.__anext__()


async def test_pings_are_ignored_and_events_still_flow() -> None:
    fake = FakeHostedAPI(ws_ping_interval=0.01)
    inbox = fake.seed_inbox("scout")
    async with fake_client(fake) as client, open_event_stream(client, inbox_ids=[inbox["id"]]) as events:
        with anyio.fail_after(5):
            await events.ready.wait()
        with anyio.move_on_after(0.1):  # let a few pings go by
            await events.__anext__()
        fake.deliver_inbound(inbox["id"], from_address="a@b.example", subject="after pings", plain_body="x")
        event = await next_event(events)
    assert event.message is not None and event.message.subject == "after pings"


async def test_a_dropped_socket_polls_then_reconnects_without_duplicates(local_backend: Any) -> None:  # noqa: F811
    async with local_stack(local_backend) as stack:
        inbox = await stack.create_inbox("scout")
        async with (
            stack.client() as client,
            open_event_stream(
                client, inbox_ids=[inbox["id"]], poll_interval=0.05, local_filters=True
            ) as events,
        ):
            with anyio.fail_after(5):
                await events.ready.wait()

            async def deliver(subject: str) -> None:
                raw = verification_mail("noreply@acme.example.com", inbox["email"], subject=subject)
                assert (await stack.send_smtp(inbox["email"], raw)).startswith("2")

            await deliver("first")
            first = await next_event(events)
            stack.hub.close()  # the server drops every socket (as on a restart)
            await until(lambda: events.transport == "polling")
            await deliver("during the outage")
            during = await next_event(events)
            await until(lambda: events.transport == "websocket" and stack.hub.subscriber_count == 1)
            await deliver("after reconnect")
            after = await next_event(events)
            extra = [e async for e in drain(events)]
        assert [e.message.subject for e in (first, during, after) if e.message] == [
            "first",
            "during the outage",
            "after reconnect",
        ]
        assert (first.source, during.source, after.source) == ("websocket", "poll", "websocket")
        assert extra == [], "the backfill poll after the reconnect re-listed messages already delivered"
        assert events.reconnects >= 1


async def test_polling_only_sees_mail_after_since_and_uses_the_local_after_filter(local_backend: Any) -> None:  # noqa: F811
    async with local_stack(local_backend) as stack:
        inbox = await stack.create_inbox("scout")
        raw = verification_mail("noreply@acme.example.com", inbox["email"], subject="old")
        await stack.send_smtp(inbox["email"], raw)
        async with (
            stack.client() as client,
            open_event_stream(
                client, inbox_ids=[inbox["id"]], poll_interval=0.05, local_filters=True, use_websocket=False
            ) as events,
        ):
            await events.ready.wait()
            listed = stack.watch.answered(r"^GET /v1/inboxes/[^/]+/messages$")
            await listed.wait()
            raw = verification_mail("noreply@acme.example.com", inbox["email"], subject="new")
            await stack.send_smtp(inbox["email"], raw)
            event = await next_event(events)
        assert event.message is not None and event.message.subject == "new"


async def test_events_over_a_real_loopback_socket() -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    async with fake.serving() as base_url:
        async with (
            MamClient(base_url=base_url, api_key=fake.api_key) as client,
            open_event_stream(client, inbox_ids=[inbox["id"]]) as events,
        ):
            with anyio.fail_after(5):
                await events.ready.wait()
            assert events.transport == "websocket"
            fake.deliver_inbound(inbox["id"], from_address="a@b.example", subject="over TCP", plain_body="x")
            event = await next_event(events)
    assert event.message is not None and event.message.subject == "over TCP"


def test_an_event_has_the_frame_and_the_webhook_shapes_of_the_reference() -> None:
    event = InboxEvent.model_validate(
        {
            "type": "event",
            "event_type": "message.received",
            "event_id": "evt_1",
            "message": {
                "inbox_id": "i1",
                "thread_id": "t1",
                "message_id": "m1",
                "from": "Jane Doe <jane@x.example>",
                "to": ["me@y.example"],
                "subject": "Hi",
                "plain_body": "b",
                "html_body": None,
                "timestamp": "2026-04-11T09:12:34.000Z",
            },
            "thread": {"thread_id": "t1", "subject": "Hi"},
        }
    )
    assert event.frame() == {
        "type": "event",
        "event_type": "message.received",
        "event_id": "evt_1",
        "message": {
            "inbox_id": "i1",
            "thread_id": "t1",
            "message_id": "m1",
            "from": "Jane Doe <jane@x.example>",
            "to": ["me@y.example"],
            "subject": "Hi",
            "plain_body": "b",
            "timestamp": "2026-04-11T09:12:34.000Z",
        },
        "thread": {"thread_id": "t1", "subject": "Hi"},
    }
    assert event.webhook_payload(has_attachments=True) == {
        "event": "message.received",
        "messageId": "m1",
        "inboxId": "i1",
        "threadId": "t1",
        "from": "Jane Doe <jane@x.example>",
        "to": "me@y.example",
        "subject": "Hi",
        "hasAttachments": True,
        "timestamp": "2026-04-11T09:12:34.000Z",
    }
    polled = InboxEvent.from_message(event.to_message())
    assert (polled.event_id, polled.source, polled.message and polled.message.from_) == (
        "poll_m1",
        "poll",
        "Jane Doe <jane@x.example>",
    )


async def test_a_bad_key_surfaces_as_auth_invalid_from_the_stream() -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    client = MamClient(base_url="http://fake", api_key="tk_wrong", transport=FakeTransport(fake.app))
    async with client, open_event_stream(client, inbox_ids=[inbox["id"]], poll_interval=0.05) as events:
        with anyio.fail_after(5):
            await events.ready.wait()
            with pytest.raises(AuthInvalid):
                await events.__anext__()


async def test_closing_during_a_hanging_handshake_is_prompt() -> None:
    # A server (or proxy) that accepts the connection and never answers the upgrade.
    accepted = anyio.Event()

    async def swallow(stream: Any) -> None:
        accepted.set()
        async with stream:
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as server:
        server.start_soon(listener.serve, swallow)
        async with MamClient(base_url=f"http://127.0.0.1:{port}", api_key="tk_test") as client:
            with anyio.fail_after(1.5):  # the handshake itself would hang for HANDSHAKE_TIMEOUT (10 s)
                async with open_event_stream(client, inbox_ids=["in_1"]):
                    await accepted.wait()
        server.cancel_scope.cancel()


async def test_a_handshake_that_hangs_does_not_hold_the_caller_polling_starts_meanwhile() -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    api = fake.app

    async def upgrade_swallowed(scope: Any, receive: Any, send: Any) -> None:  # as some proxies do
        if scope["type"] == "websocket":
            await anyio.sleep_forever()
        await api(scope, receive, send)

    fake.app = upgrade_swallowed  # type: ignore[assignment]
    async with fake.serving() as base_url:
        async with (
            MamClient(base_url=base_url, api_key=fake.api_key) as client,
            open_event_stream(client, inbox_ids=[inbox["id"]], poll_interval=0.1) as events,
        ):
            with anyio.fail_after(HANDSHAKE_GRACE + 2):  # well before HANDSHAKE_TIMEOUT
                await events.ready.wait()
            assert events.transport == "polling"
            fake.deliver_inbound(inbox["id"], from_address="a@b.example", subject="polled", plain_body="x")
            event = await next_event(events)
    assert event.message is not None and event.message.subject == "polled"


async def test_polling_without_inbox_ids_watches_every_inbox_up_to_the_cap(
    local_backend: Any,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with local_stack(local_backend) as stack:
        inboxes = [await stack.create_inbox(f"agent{i}") for i in range(POLL_MAX_INBOXES + 1)]
        async with (
            stack.client() as client,
            open_event_stream(
                client, inbox_ids=[], poll_interval=0.05, local_filters=True, use_websocket=False
            ) as events,
        ):
            await events.ready.wait()
            listed = stack.watch.answered(r"^GET /v1/inboxes/[^/]+/messages$")
            await listed.wait()
            # Which inbox the cap leaves out depends on the listing order; the first POLL_MAX_INBOXES
            # of the listing are watched, more than the 10 polling used to watch.
            listing = [inbox.id for inbox in (await client.inboxes.list()).inboxes]
            watched = [
                next(i for i in inboxes if i["id"] == inbox_id) for inbox_id in listing[:POLL_MAX_INBOXES]
            ]
            for inbox in (watched[0], watched[-1]):
                raw = verification_mail(
                    "noreply@acme.example.com", inbox["email"], subject=f"to {inbox['email']}"
                )
                await stack.send_smtp(inbox["email"], raw)
            got = {(await next_event(events)).message.subject for _ in range(2)}  # type: ignore[union-attr]
        assert got == {f"to {watched[0]['email']}", f"to {watched[-1]['email']}"}
    warnings = [r.getMessage() for r in caplog.records if "polling watches" in r.getMessage()]
    assert warnings == [
        f"events: polling watches {POLL_MAX_INBOXES} of {POLL_MAX_INBOXES + 1} inboxes; name the inboxes to watch the others (the WebSocket, when it is up, covers all of them)"
    ]


@pytest.mark.parametrize("detached", [False, True])
async def test_an_unexpected_polling_failure_reaches_the_consumer_and_leaves_nothing_running(
    detached: bool, tmp_path: Any
) -> None:
    """E.g. the client closed under the stream (a concurrent call reconnected): the consumer's next
    read raises it, in the caller's task group or handed to the runtime (`spawn`), and the stream's
    work ends; it must never look like a stream that simply ended (a wait would say "no mail")."""
    from mam_mcp.toolkit.runtime import Runtime
    from tests.conftest import make_settings

    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    runtime = Runtime(make_settings(tmp_path), client_factory=None)  # type: ignore[arg-type]
    client = fake_client(fake)
    async with open_event_stream(
        client, inbox_ids=[inbox["id"]], poll_interval=0.05, use_websocket=False,
        spawn=runtime.spawn if detached else None,
    ) as events:  # fmt: skip
        with anyio.fail_after(5):
            await events.ready.wait()
            await client.aclose()  # the next poll cannot send its request
            with pytest.raises(RuntimeError, match="closed"):
                await events.__anext__()
    with anyio.fail_after(5):
        await until(lambda: not runtime._background)
        await runtime.aclose()
