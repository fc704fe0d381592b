"""Events are built by the service from what the store committed: ids, owners and thread as stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mam_mcp.local.events.model import MailEvent
from tests.local.conftest import LocalBackendFixture

MakeInbox = Callable[..., Awaitable[dict[str, Any]]]


def _mail(subject: str, msg_id: str, extra: str = "") -> bytes:
    return f"From: Ann <ann@example.com>\r\nSubject: {subject}\r\nMessage-ID: {msg_id}\r\n{extra}\r\nhi\r\n".encode()


async def test_received_events_carry_the_stored_rows_and_their_threads_first_subject(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    inbox = await make_inbox("events")
    emitted: list[MailEvent] = []
    backend.add_event_sink(emitted.append)
    [first] = await backend.ingest(_mail("Plan", "<p@x>"), "ann@example.com", [inbox["email"]])
    [reply] = await backend.ingest(_mail("Re: other words", "<r@x>", "In-Reply-To: <p@x>\r\n"), "a@x", [inbox["email"]])
    assert emitted == [first, reply]  # what ingest returns is what the sinks got
    rows = {r["id"]: r for r in await backend.store.mail.list_messages(inbox["id"])}
    for event in (first, reply):
        row = rows[event.message["message_id"]]
        assert (event.event_type, event.inbox_id, event.tenant_id, event.workspace_id) == (
            "message.received", inbox["id"], backend.store.accounts.inbox_record(inbox["id"]).tenant_id, None,  # type: ignore[union-attr]
        )  # fmt: skip
        assert event.timestamp == row["at"] == event.message["timestamp"]
        assert event.message["thread_id"] == row["thread_id"] == event.thread["thread_id"]
        assert event.message["from"] == "Ann <ann@example.com>" and event.message["subject"] == row["subject"]
    assert reply.thread == {"thread_id": first.thread["thread_id"], "subject": "Plan"}  # the thread's, not its own
