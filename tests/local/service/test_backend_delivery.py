"""Delivery edge cases of the local backend: concurrent idempotent sends, partial relay refusals,
failed local delivery, and mail for an inbox deleted between RCPT and DATA."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mam_mcp.local.relay.smtp_relay import RelayRefused
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.service.outgoing import Outgoing
from tests.local.conftest import LocalBackendFixture

MakeInbox = Callable[..., Awaitable[dict[str, Any]]]


class PartlyRefusingRelay:
    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        raise RelayRefused(True, "550 no such user", accepted=(rcpts[0],), refused={r: "550" for r in rcpts[1:]})


async def _outbound(backend: Any, inbox_id: str) -> list[dict[str, Any]]:
    return await backend.store.mail.list_messages(inbox_id, direction="outbound", limit=50, offset=0)


async def test_concurrent_sends_with_one_idempotency_key_send_once(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    inbox = await make_inbox("sender")
    outgoing = Outgoing(to=["x@example.com"], subject="once", plain_body="b", verified=True)
    results = await asyncio.gather(*(backend.send(inbox["id"], outgoing, idempotency_key="k-1") for _ in range(6)))
    assert len({r.id for r in results}) == 1
    assert len(await _outbound(backend, inbox["id"])) == 1
    assert backend._send_locks == {}, "no lock entry outlives its holders"


async def test_partial_relay_refusal_is_reported_partial_not_failed(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox
) -> None:
    backend = local_backend[0]
    backend.relay = PartlyRefusingRelay()
    inbox = await make_inbox("sender")
    result = await backend.send(
        inbox["id"], Outgoing(to=["a@example.com", "b@example.com"], subject="s", plain_body="b", verified=True)
    )
    assert result.status == "partial"
    assert [m["status"] for m in await _outbound(backend, inbox["id"])] == ["partial"]


async def test_failed_local_delivery_marks_the_message_failed(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = local_backend[0]
    sender = await make_inbox("sender")
    receiver = await make_inbox("receiver")

    async def broken_ingest(*args: Any) -> list[Any]:
        raise OSError("disk full")

    monkeypatch.setattr(backend, "ingest", broken_ingest)
    with pytest.raises(BackendError) as caught:
        await backend.send(sender["id"], Outgoing(to=[receiver["email"]], subject="s", plain_body="b"))
    assert caught.value.status == 502
    assert [m["status"] for m in await _outbound(backend, sender["id"])] == ["failed"]


async def test_mail_for_a_vanished_inbox_is_refused_not_accepted(local_backend: LocalBackendFixture) -> None:
    backend = local_backend[0]
    with pytest.raises(LookupError):
        await backend.ingest(b"Subject: hi\r\n\r\nbody\r\n", "a@example.com", ["nobody@mam.localhost"])


async def test_webhook_lookup_is_skipped_until_a_webhook_exists(
    local_backend: LocalBackendFixture, make_inbox: MakeInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = local_backend[0]
    inbox = await make_inbox("hooked")
    [event] = await backend.ingest(
        b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n", "a@example.com", [inbox["email"]]
    )
    reads: list[str] = []
    original = backend.store.admin.webhooks_for_event

    async def counting(*args: Any) -> Any:
        reads.append("read")
        return await original(*args)

    monkeypatch.setattr(backend.store.admin, "webhooks_for_event", counting)
    assert await backend.webhook_targets(event) == [] and reads == []
    await backend.store.admin.create_webhook(
        tenant_id=event.tenant_id, workspace_id=None, inbox_id=None, url="https://hooks.example/x",
        events=["message.received"], secret="s3cret",
    )
    targets = await backend.webhook_targets(event)
    assert [t.url for t in targets] == ["https://hooks.example/x"] and reads == ["read"]
