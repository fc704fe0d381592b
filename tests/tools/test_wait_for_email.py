"""wait_for_email end to end: the real local backend (real SMTP on loopback) and the strict fake hosted API.

Each behaviour runs against both: mail sent while the tool waits, mail that arrived just before
the call, the polling fallback when the WebSocket is refused, timeouts, progress, cancellation
and the cursor.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.client.event_stream import EventStream
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from mam_mcp.tools import wait as wait_module
from tests.conftest import make_settings
from tests.event_stack import (
    CODE,
    HTML,
    LINK,
    PLAIN,
    RequestWatch,
    hosted_stack,
    local_stack,
    until,
    verification_mail,
)
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import local_backend, local_config  # noqa: F401  (fixtures)

LIST_ANSWERED = r"^GET /v1/inboxes/[^/]+/messages$"
# wait_for_email lists existing mail, subscribes, and lists again: after the second list it waits.
LISTS_BEFORE_WAITING = 2


@dataclass
class Mailroom:
    """One backend with an inbox, seen through an MCP server built for it."""

    kind: str
    inbox_id: str
    address: str
    settings: Settings
    factory: Callable[[Settings], Awaitable[MamClient]]
    watch: RequestWatch
    deliver: Callable[..., Awaitable[None]]
    subscribers: Callable[[], int]

    @asynccontextmanager
    async def mcp(self) -> AsyncIterator[Client]:
        server = build_server(self.settings, client_factory=self.factory)
        async with Client(server) as client:
            yield client
        await server.runtime.aclose()  # type: ignore[attr-defined]


@pytest.fixture
def mailroom(tmp_path: Path, local_backend: Any):  # type: ignore[no-untyped-def]  # noqa: F811
    """`async with mailroom(kind, websockets=True) as room`: kind is "local" or "hosted"."""

    @asynccontextmanager
    async def open_room(kind: str, *, websockets: bool = True) -> AsyncIterator[Mailroom]:
        if kind == "local":
            async with local_stack(local_backend, websockets=websockets) as stack:
                inbox = await stack.create_inbox("signup")

                async def deliver(
                    subject: str = "Confirm your Acme account", sender: str = "noreply@acme.example.com"
                ) -> None:
                    reply = await stack.send_smtp(
                        inbox["email"], verification_mail(sender, inbox["email"], subject=subject), sender
                    )
                    assert reply.startswith("2")

                async def factory(settings: Settings) -> MamClient:
                    return stack.client()

                yield Mailroom(
                    kind,
                    inbox["id"],
                    inbox["email"],
                    make_settings(tmp_path, hosted=False),
                    factory,
                    stack.watch,
                    deliver,
                    lambda: stack.hub.subscriber_count,
                )
            return
        fake = FakeHostedAPI()
        fake.refuse_websockets = not websockets
        inbox = fake.seed_inbox("signup")
        async with hosted_stack(fake) as stack:

            async def deliver_hosted(
                subject: str = "Confirm your Acme account", sender: str = "noreply@acme.example.com"
            ) -> None:
                fake.deliver_inbound(
                    inbox["id"],
                    from_address=sender,
                    from_name="Acme",
                    subject=subject,
                    plain_body=PLAIN,
                    html_body=HTML,
                )

            async def hosted_factory(settings: Settings) -> MamClient:
                return stack.client()

            yield Mailroom(
                kind,
                inbox["id"],
                inbox["email"],
                make_settings(tmp_path),
                hosted_factory,
                stack.watch,
                deliver_hosted,
                lambda: fake.hub.subscriber_count,
            )
            assert not fake.violations

    return open_room


BACKENDS = pytest.mark.parametrize("kind", ["local", "hosted"])


def assert_found_verification(result: Any, via: str) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = result.structured_content
    assert data["found"] is True
    assert data["via"] == via
    assert data["code"] == CODE
    assert data["links"][0] == LINK
    assert data["message"]["subject"] == "Confirm your Acme account"
    assert CODE in data["body"]["text"]
    assert data["untrusted"] is True
    assert f"Code: {CODE}." in result.content[0].text
    return data


async def call_while_delivering(client: Client, room: Mailroom, args: dict[str, Any], **deliver: Any) -> Any:
    """Call wait_for_email; deliver the mail once the tool has looked at existing messages and waits."""
    listed = room.watch.answered(LIST_ANSWERED, times=LISTS_BEFORE_WAITING)
    outcome: dict[str, Any] = {}

    async def call() -> None:
        outcome["result"] = await client.call_tool("wait_for_email", args)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await listed.wait()
        await room.deliver(**deliver)
    return outcome["result"]


@BACKENDS
async def test_mail_sent_while_waiting_is_returned_with_code_and_link(mailroom: Any, kind: str) -> None:
    async with mailroom(kind) as room, room.mcp() as client:
        with anyio.fail_after(15):
            started = time.monotonic()
            result = await call_while_delivering(
                client, room, {"inbox_id": room.inbox_id, "timeout_seconds": 30}
            )
        assert time.monotonic() - started < 10
        data = assert_found_verification(result, via="websocket")
        assert data["message"]["from"] == "noreply@acme.example.com"
        assert data["cursor"].startswith("c1_")


@BACKENDS
async def test_mail_that_arrived_before_the_call_is_found(mailroom: Any, kind: str) -> None:
    async with mailroom(kind) as room, room.mcp() as client:
        await room.deliver()
        with anyio.fail_after(10):
            result = await client.call_tool(
                "wait_for_email", {"inbox_id": room.inbox_id, "timeout_seconds": 30}
            )
        assert_found_verification(result, via="existing")
        # Mail already there costs one list request: no event subscription is opened for it.
        assert not any(path.startswith("WS ") for path in room.watch.seen), room.watch.seen


@BACKENDS
async def test_websocket_refused_falls_back_to_polling(
    mailroom: Any, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(wait_module.POLL_INTERVAL, "hosted", 0.2)
    monkeypatch.setitem(wait_module.POLL_INTERVAL, "local", 0.2)
    async with mailroom(kind, websockets=False) as room, room.mcp() as client:
        with anyio.fail_after(15):
            result = await call_while_delivering(
                client, room, {"inbox_id": room.inbox_id, "timeout_seconds": 30}
            )
        assert_found_verification(result, via="poll")
        assert any(path.startswith("WS /v1/ws") for path in room.watch.seen), "the socket was tried first"


@BACKENDS
async def test_timeout_is_a_found_false_result_with_a_cursor_to_call_again(mailroom: Any, kind: str) -> None:
    async with mailroom(kind) as room, room.mcp() as client:
        with anyio.fail_after(10):
            result = await client.call_tool(
                "wait_for_email",
                {"inbox_id": room.inbox_id, "timeout_seconds": 1, "received_after": "2026-01-01T00:00:00Z"},
            )
    assert not result.is_error
    data = result.structured_content
    assert data["found"] is False and 0.9 <= data["waited_seconds"] < 5
    assert data["cursor"] == "2026-01-01T00:00:00.000Z"
    assert "call wait_for_email again" in result.content[0].text


async def test_progress_notifications_arrive_while_waiting(
    mailroom: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wait_module, "PROGRESS_INTERVAL", 0.1)
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with mailroom("local") as room, room.mcp() as client:
        with anyio.fail_after(10):
            result = await client.call_tool(
                "wait_for_email",
                {"inbox_id": room.inbox_id, "timeout_seconds": 1},
                progress_callback=on_progress,
            )
    assert result.structured_content["found"] is False
    assert len(updates) >= 4
    assert all(total == 1 for _, total, _ in updates)
    progress = [p for p, _, _ in updates]
    assert progress == sorted(progress) and progress[0] < 0.2 and progress[-1] >= 0.7
    assert "waiting for email" in (updates[0][2] or "")


@BACKENDS
async def test_cancellation_ends_the_wait_at_once(mailroom: Any, kind: str) -> None:
    async with mailroom(kind) as room, room.mcp() as client:
        listed = room.watch.answered(LIST_ANSWERED, times=LISTS_BEFORE_WAITING)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    client.call_tool, "wait_for_email", {"inbox_id": room.inbox_id, "timeout_seconds": 600}
                )
                await listed.wait()
                assert room.subscribers() == 1
                cancelled_at = time.monotonic()
                tasks.cancel_scope.cancel()
            assert time.monotonic() - cancelled_at < 1.0
            # The server is still serving, and the abandoned wait has let go of its subscription.
            again = await client.call_tool(
                "wait_for_email", {"inbox_id": room.inbox_id, "timeout_seconds": 1}
            )
            assert again.structured_content["found"] is False
            # The socket's close handshake finishes just after the answer (the runtime owns it).
            await until(lambda: room.subscribers() == 0, timeout=2)


@BACKENDS
async def test_the_answer_does_not_wait_for_the_sockets_close_handshake(
    mailroom: Any, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mail that arrives while waiting is answered at once; the runtime ends the socket afterwards,
    and closing the runtime waits for that (here: a close held until the test lets it go)."""
    release, closing = anyio.Event(), anyio.Event()
    close_socket = EventStream._close_socket

    async def held_close(stream: EventStream) -> None:
        closing.set()
        with anyio.move_on_after(5):  # bounded: the close runs shielded from the test's timeouts
            await release.wait()
        await close_socket(stream)

    monkeypatch.setattr(EventStream, "_close_socket", held_close)
    async with mailroom(kind) as room:
        server = build_server(room.settings, client_factory=room.factory)
        runtime = server.runtime  # type: ignore[attr-defined]
        async with Client(server) as client:
            with anyio.fail_after(15):
                result = await call_while_delivering(
                    client, room, {"inbox_id": room.inbox_id, "timeout_seconds": 30}
                )
                assert_found_verification(result, via="websocket")
                await closing.wait()  # the close began, and is still held: the answer came first
                assert room.subscribers() == 1 and len(runtime._background) == 1
                release.set()
                await until(lambda: room.subscribers() == 0, timeout=5)
        with anyio.fail_after(10):
            await runtime.aclose()
        assert not runtime._background


async def test_closing_the_runtime_waits_for_handed_off_work_then_cancels_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mam_mcp.toolkit import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "BACKGROUND_GRACE_SECONDS", 0.2)
    runtime = runtime_module.Runtime(make_settings(tmp_path), client_factory=None)  # type: ignore[arg-type]
    finished: list[str] = []

    async def quick() -> None:
        await anyio.sleep(0.05)
        finished.append("quick")

    async def stuck() -> None:
        try:
            await anyio.sleep(3600)
        finally:
            finished.append("stuck ended")

    async def broken() -> None:
        raise RuntimeError("not for the caller")

    runtime.spawn(quick())
    runtime.spawn(stuck())
    runtime.spawn(broken())
    with anyio.fail_after(5):
        await runtime.aclose()
    assert sorted(finished) == ["quick", "stuck ended"]
    assert not runtime._background


@BACKENDS
async def test_the_cursor_stops_the_same_message_satisfying_the_next_wait(mailroom: Any, kind: str) -> None:
    async with mailroom(kind) as room:
        await room.deliver()
        async with room.mcp() as client:
            first = await client.call_tool(
                "wait_for_email", {"inbox_id": room.inbox_id, "timeout_seconds": 5}
            )
            cursor = first.structured_content["cursor"]
            # Same process, no cursor: an already returned message is skipped.
            again = await client.call_tool(
                "wait_for_email", {"inbox_id": room.inbox_id, "timeout_seconds": 1}
            )
            assert again.structured_content["found"] is False
        # A fresh server (a stateless worker) knows nothing returned before; the cursor carries it.
        async with room.mcp() as client:
            with anyio.fail_after(10):
                stale = await client.call_tool(
                    "wait_for_email",
                    {"inbox_id": room.inbox_id, "received_after": cursor, "timeout_seconds": 1},
                )
                assert stale.structured_content["found"] is False
                fresh = await call_while_delivering(
                    client,
                    room,
                    {"inbox_id": room.inbox_id, "received_after": cursor, "timeout_seconds": 30},
                    subject="Your new Acme code",
                )
        assert fresh.structured_content["found"] is True
        assert fresh.structured_content["message"]["subject"] == "Your new Acme code"
        assert fresh.structured_content["message"]["id"] != first.structured_content["message"]["id"]


@BACKENDS
async def test_filters_skip_mail_that_does_not_match(mailroom: Any, kind: str) -> None:
    async with mailroom(kind) as room, room.mcp() as client:
        await room.deliver(subject="Weekly newsletter", sender="news@other.example.org")
        with anyio.fail_after(15):
            result = await call_while_delivering(
                client,
                room,
                {
                    "inbox_id": room.inbox_id,
                    "from_contains": "ACME.example",
                    "subject_contains": "confirm",
                    "body_contains": "verification code",
                    "timeout_seconds": 30,
                },
            )
        assert_found_verification(result, via="websocket")


async def test_extract_false_returns_the_message_without_code_or_links(mailroom: Any) -> None:
    async with mailroom("hosted") as room, room.mcp() as client:
        await room.deliver()
        result = await client.call_tool(
            "wait_for_email", {"inbox_id": room.inbox_id, "extract": False, "timeout_seconds": 5}
        )
    data = result.structured_content
    assert data["found"] is True and data["code"] is None and data["links"] == []


@pytest.mark.parametrize("bad", ["yesterday", "c1_%%%", "c1_" + "bm90IGEgY3Vyc29y"])
async def test_a_bad_received_after_is_a_validation_error(mailroom: Any, bad: str) -> None:
    async with mailroom("hosted") as room, room.mcp() as client:
        result = await client.call_tool("wait_for_email", {"inbox_id": room.inbox_id, "received_after": bad})
    assert result.is_error
    assert result.content[0].text.startswith("VALIDATION_ERROR: received_after:")


async def test_the_context_parameter_is_injected_not_published(mailroom: Any) -> None:
    async with mailroom("hosted") as room, room.mcp() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        wait = tools["wait_for_email"]
        assert "ctx" not in wait.input_schema["properties"]
        assert wait.output_schema is not None and "found" in wait.output_schema["properties"]
        assert wait.annotations.read_only_hint is True
        unknown = await client.call_tool("wait_for_email", {"inbox_id": room.inbox_id, "ctx": {}})
        assert unknown.is_error and "unknown argument" in unknown.content[0].text


@BACKENDS
async def test_waits_from_a_given_time_return_each_mail_in_order_and_the_default_the_newest(
    mailroom: Any, kind: str
) -> None:
    async with mailroom(kind) as room:
        start = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
        for n in range(3):
            await room.deliver(subject=f"Order update #{n}")
        async with room.mcp() as client:
            newest = await client.call_tool("wait_for_email", {"inbox_id": room.inbox_id, "timeout_seconds": 5})
        assert newest.structured_content["message"]["subject"] == "Order update #2"  # the fresh one
        async with room.mcp() as client:  # a new session: nothing returned yet
            subjects, after = [], start
            for _ in range(3):
                found = await client.call_tool(
                    "wait_for_email", {"inbox_id": room.inbox_id, "received_after": after, "timeout_seconds": 5}
                )
                subjects.append(found.structured_content["message"]["subject"])
                after = found.structured_content["cursor"]
        assert subjects == ["Order update #0", "Order update #1", "Order update #2"], "nothing skipped"


async def test_a_sender_without_a_display_name_reads_as_the_bare_address(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("signup")
    fake.deliver_inbound(inbox["id"], from_address="svc@svc.example", subject="Your code", plain_body=PLAIN)
    async with hosted_stack(fake) as stack:

        async def factory(settings: Settings) -> MamClient:
            return stack.client()

        server = build_server(make_settings(tmp_path), client_factory=factory)
        async with Client(server) as client:
            waited = await client.call_tool("wait_for_email", {"inbox_id": inbox["id"], "timeout_seconds": 5})
            message_id = waited.structured_content["message"]["id"]
            read = await client.call_tool("get_message", {"inbox_id": inbox["id"], "message_id": message_id})
            thread = await client.call_tool(
                "get_thread", {"inbox_id": inbox["id"], "thread_id": read.structured_content["thread_id"]}
            )
        await server.runtime.aclose()  # type: ignore[attr-defined]
    assert "From: svc@svc.example\n" in waited.content[0].text
    assert "From: svc@svc.example\n" in read.content[0].text
    assert "from svc@svc.example: Your code" in thread.content[0].text
    for result in (waited, read, thread):
        assert "<svc@svc.example>" not in result.content[0].text  # no empty name, no double space
    assert not fake.violations
