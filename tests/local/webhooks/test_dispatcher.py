"""Webhook delivery against a real HTTP receiver (Starlette under uvicorn on an ephemeral 127.0.0.1 port)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from mam_mcp import __version__
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.events.model import MailEvent
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.webhooks.deliveries import WebhookDelivery
from mam_mcp.local.webhooks.dispatcher import WebhookDispatcher, encode_payload
from mam_mcp.signatures import SIGNATURE_HEADER, sign_body, verify_signature
from tests.local.webhook_receiver import Receiver, serve_receiver

SECRET = "whsec_" + "s3cr3t-value-never-logged"


@dataclass(frozen=True)
class Target:
    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = ()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as running:
        yield running


_STORES: dict[Path, EmailStore] = {}


@pytest.fixture(autouse=True)
async def store(tmp_path: Path) -> AsyncIterator[EmailStore]:
    """The real store the outbox lives in (one per test's data dir)."""
    async with EmailStore(config_for(tmp_path)) as opened:
        _STORES[tmp_path] = opened
        try:
            yield opened
        finally:
            _STORES.pop(tmp_path, None)


def make_dispatcher(
    config: LocalConfig,
    targets: Callable[[MailEvent], Any],
    *,
    destinations: dict[str, tuple[str, str] | None] | None = None,
    **options: Any,
) -> WebhookDispatcher:
    """A dispatcher over the test's store; each webhook's (URL, secret) at send time from `destinations`
    (by default: the targets' own, looked up as they are enqueued)."""
    known: dict[str, tuple[str, str] | None] = {} if destinations is None else destinations

    def remembering(event: MailEvent) -> Any:
        found = targets(event)
        if destinations is None and isinstance(found, list):
            known.update({t.id: (t.url, t.secret) for t in found})
        return found

    async def destination(webhook_id: str) -> tuple[str, str] | None:
        return known.get(webhook_id)

    return WebhookDispatcher(
        config, _STORES[config.data_dir].outbox, destination=destination, targets=remembering, **options
    )


def config_for(data_dir: Path, **overrides: Any) -> LocalConfig:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "webhook_retry_base_seconds": 0.05,
        "webhook_timeout_seconds": 5.0,
        "webhook_max_attempts": 5,
    }
    values.update(overrides)
    return LocalConfig(**values)


def make_event(event_type: str = "message.received") -> MailEvent:
    return MailEvent(
        event_type=event_type,  # type: ignore[arg-type]
        tenant_id="ten_a",
        workspace_id=None,
        inbox_id="inb_1",
        message={
            "inbox_id": "inb_1",
            "thread_id": "thr_1",
            "message_id": "msg_1",
            "from": "Jane Doe <jane@example.com>",
            "to": ["scout@mam.localhost"],
            "subject": "Re: quick question — ünïcode",
            "plain_body": "body text that never goes into a webhook",
            "html_body": None,
            "timestamp": "2026-04-11T15:30:52.540Z",
        },
        thread={"thread_id": "thr_1", "subject": "Re: quick question"},
        has_attachments=True,
    )


def targets_of(*targets: Target) -> Callable[[MailEvent], list[Target]]:
    return lambda event: list(targets)


async def wait_for_status(
    dispatcher: WebhookDispatcher, webhook_id: str, predicate: Callable[[WebhookDelivery], bool]
) -> WebhookDelivery:
    """Polls the delivery log (bounded: the caller holds a fail_after)."""
    for _ in range(2000):
        [delivery] = await dispatcher.list_deliveries(webhook_id)
        if predicate(delivery):
            return delivery
        await asyncio.sleep(0.005)
    raise AssertionError("delivery never reached the expected state")


def test_signature_round_trip_and_tampering() -> None:
    body = encode_payload(make_event())
    signature = sign_body(SECRET, body)
    assert len(signature) == 64
    assert verify_signature(SECRET, body, signature)
    assert verify_signature(SECRET, body, signature.upper() + "\n")
    assert not verify_signature(SECRET, body + b" ", signature)
    assert not verify_signature("other-secret", body, signature)
    assert not verify_signature(SECRET, body, "")
    assert not verify_signature(SECRET, body, "sha256=" + signature)
    assert not verify_signature(SECRET, body, "ünïcode")


async def test_delivers_the_exact_signed_payload(tmp_path: Path, receiver: Receiver) -> None:
    dispatcher = make_dispatcher(
        config_for(tmp_path), targets_of(Target("wh_1", receiver.url, SECRET))
    )
    event = make_event()
    await dispatcher.start()
    try:
        with anyio.fail_after(10):
            await dispatcher.enqueue(event)
            await receiver.wait_for(1)
            delivered = await wait_for_status(dispatcher, "wh_1", lambda d: d.status == "delivered")
    finally:
        await dispatcher.stop()
    [request] = receiver.requests
    assert json.loads(request.body) == event.webhook_payload()
    assert request.body == encode_payload(event)
    assert verify_signature(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"mam-mcp-local/{__version__}"
    assert (delivered.attempts, delivered.last_status_code, delivered.last_error) == (1, 200, None)
    assert delivered.delivered_at is not None and delivered.next_attempt_at is None
    assert delivered.event_id == event.event_id


async def test_enqueue_persists_before_returning_and_fans_out_per_target(tmp_path: Path) -> None:
    targets = [
        Target("wh_all", "http://127.0.0.1:9/a", SECRET),
        Target("wh_received", "http://127.0.0.1:9/b", "other", ("message.received",)),
        Target("wh_bounced", "http://127.0.0.1:9/c", "third", ("message.bounced",)),
    ]

    async def async_targets(event: MailEvent) -> list[Target]:
        return targets

    dispatcher = make_dispatcher(
        config_for(tmp_path), async_targets
    )  # never started: nothing is sent
    event = make_event()
    await dispatcher.enqueue(event)
    await dispatcher.enqueue(event)  # the same event again does not duplicate rows
    # A separate connection sees the committed rows, in the mail database (no second file any more).
    with contextlib.closing(sqlite3.connect(tmp_path / "mail.db")) as db:
        rows = db.execute(
            "SELECT webhook_id, status, attempts, body FROM webhook_outbox ORDER BY webhook_id"
        ).fetchall()
        columns = {row[1] for row in db.execute("PRAGMA table_info(webhook_outbox)")}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [(r[0], r[1], r[2]) for r in rows] == [("wh_all", "pending", 0), ("wh_received", "pending", 0)]
    assert rows[0][3] == encode_payload(event) == rows[1][3]
    assert not columns & {"secret", "signature", "url"}  # signed at send time with the secret then
    assert not (tmp_path / "webhooks.db").exists()
    await dispatcher.stop()


async def test_no_matching_target_writes_nothing(tmp_path: Path, store: EmailStore) -> None:
    dispatcher = make_dispatcher(config_for(tmp_path), targets_of(Target("wh_b", "http://x", SECRET, ("message.bounced",))))
    await dispatcher.enqueue(make_event())
    assert await store.outbox.list_for_webhook("wh_b", 10) == []
    assert await store.db.read(lambda c: c.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()[0]) == 0


async def test_non_2xx_is_retried_with_backoff_until_delivered(tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail_first = 3
    receiver.fail_status = 503
    dispatcher = make_dispatcher(
        config_for(tmp_path), targets_of(Target("wh_1", receiver.url, SECRET))
    )
    await dispatcher.start()
    started = time.monotonic()
    try:
        with anyio.fail_after(15):
            await dispatcher.enqueue(make_event())
            delivered = await wait_for_status(dispatcher, "wh_1", lambda d: d.status == "delivered")
    finally:
        await dispatcher.stop()
    elapsed = time.monotonic() - started
    assert len(receiver.requests) == 4
    assert len({r.body for r in receiver.requests}) == 1  # every retry carries the same bytes
    assert all(verify_signature(SECRET, r.body, r.headers[SIGNATURE_HEADER]) for r in receiver.requests)
    assert delivered.attempts == 4 and delivered.last_status_code == 200
    # Backoff 0.05 * (1 + 3 + 9) s with ±20% jitter: at least ~0.5 s between the first and last POST.
    assert elapsed >= 0.05 * 13 * 0.8


async def test_exhausted_retries_mark_the_delivery_failed_and_keep_it(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_first = 100
    dispatcher = make_dispatcher(
        config_for(tmp_path, webhook_max_attempts=3), targets_of(Target("wh_1", receiver.url, SECRET))
    )
    await dispatcher.start()
    try:
        with anyio.fail_after(15):
            await dispatcher.enqueue(make_event())
            failed = await wait_for_status(dispatcher, "wh_1", lambda d: d.status == "failed")
    finally:
        await dispatcher.stop()
    assert len(receiver.requests) == 3
    assert (failed.attempts, failed.last_status_code, failed.last_error) == (3, 500, "HTTP 500")
    assert failed.next_attempt_at is None and failed.delivered_at is None
    # Ours only: httpx2 logs request URLs at INFO, which is why the daemon keeps it at WARNING (DESIGN §6).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mam_mcp"))
    assert "failed after 3 attempts" in ours
    for secret in (SECRET, "query-token", sign_body(SECRET, receiver.requests[0].body)):
        assert secret not in ours
        assert secret not in failed.model_dump_json()


async def test_a_receiver_slower_than_the_timeout_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail_first = 1
    receiver.hang_on_failures = True
    dispatcher = make_dispatcher(
        config_for(tmp_path, webhook_timeout_seconds=1.0),
        targets_of(Target("wh_1", receiver.url, SECRET)),
    )
    await dispatcher.start()
    try:
        with anyio.fail_after(15):
            await dispatcher.enqueue(make_event())
            retried = await wait_for_status(dispatcher, "wh_1", lambda d: d.attempts == 1)
            delivered = await wait_for_status(dispatcher, "wh_1", lambda d: d.status == "delivered")
    finally:
        await dispatcher.stop()
    assert retried.last_error is not None and "timeout" in retried.last_error
    assert retried.last_status_code is None
    assert delivered.attempts == 2


async def test_unreachable_receiver_records_the_connection_error(tmp_path: Path) -> None:
    probe = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    dispatcher = make_dispatcher(
        config_for(tmp_path, webhook_max_attempts=2),
        targets_of(Target("wh_1", f"http://127.0.0.1:{port}/gone", SECRET)),
    )
    await dispatcher.start()
    try:
        with anyio.fail_after(10):
            await dispatcher.enqueue(make_event())
            failed = await wait_for_status(dispatcher, "wh_1", lambda d: d.status == "failed")
    finally:
        await dispatcher.stop()
    assert failed.attempts == 2
    assert failed.last_status_code is None
    assert failed.last_error is not None and failed.last_error.startswith("ConnectError")


async def test_pending_retry_survives_a_restart_and_completes_exactly_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    target = Target("wh_1", receiver.url, SECRET)
    event = make_event()
    # The first dispatcher backs off for ~30 s after its first failure: it is stopped mid-retry.
    first = make_dispatcher(
        config_for(tmp_path, webhook_retry_base_seconds=30.0), targets_of(target)
    )
    await first.start()
    try:
        with anyio.fail_after(10):
            await first.enqueue(event)
            waiting = await wait_for_status(first, "wh_1", lambda d: d.attempts == 1)
    finally:
        await first.stop()
    assert waiting.status == "pending"
    assert waiting.next_attempt_at is not None and waiting.last_status_code == 500
    assert len(receiver.requests) == 1

    # A new process on the same data dir, a minute later (the persisted retry is due by then).
    known = {"wh_1": (receiver.url, SECRET)}
    second = make_dispatcher(
        config_for(tmp_path), targets_of(), destinations=known, clock=lambda: time.time() + 60.0
    )
    await second.start()
    try:
        with anyio.fail_after(10):
            delivered = await wait_for_status(second, "wh_1", lambda d: d.status == "delivered")
    finally:
        await second.stop()
    assert delivered.attempts == 3
    assert len(receiver.requests) == 3
    assert [r.body for r in receiver.requests] == [encode_payload(event)] * 3
    assert all(verify_signature(SECRET, r.body, r.headers[SIGNATURE_HEADER]) for r in receiver.requests)

    # Exactly once: a third dispatcher finds nothing left to send.
    third = make_dispatcher(
        config_for(tmp_path), targets_of(), destinations=known, clock=lambda: time.time() + 3600.0
    )
    await third.start()
    await asyncio.sleep(0.2)  # a window in which a duplicate would show up; nothing should
    await third.stop()
    assert len(receiver.requests) == 3


async def test_a_post_cut_short_by_stop_is_due_again_for_the_next_dispatcher(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    receiver.hang_on_failures = True  # the first POST hangs until the dispatcher is stopped
    target = Target("wh_1", receiver.url, SECRET)
    first = make_dispatcher(config_for(tmp_path), targets_of(target))
    await first.start()
    with anyio.fail_after(10):
        await first.enqueue(make_event())
        await receiver.wait_for(1)
        await first.stop()
    # No clock offset: due right away.
    second = make_dispatcher(config_for(tmp_path), targets_of(), destinations={"wh_1": (receiver.url, SECRET)})
    await second.start()
    try:
        with anyio.fail_after(10):
            delivered = await wait_for_status(second, "wh_1", lambda d: d.status == "delivered")
    finally:
        await second.stop()
    assert delivered.attempts == 1  # the interrupted POST was not counted as an attempt
    assert len(receiver.requests) == 2


async def test_delivery_log_is_per_webhook_newest_first(tmp_path: Path, receiver: Receiver) -> None:
    dispatcher = make_dispatcher(
        config_for(tmp_path),
        targets_of(Target("wh_1", receiver.url, SECRET), Target("wh_2", receiver.url, "two")),
    )
    events = [make_event(), make_event("message.sent"), make_event("message.bounced")]
    await dispatcher.start()
    try:
        with anyio.fail_after(10):
            for event in events:
                await dispatcher.enqueue(event)
            await receiver.wait_for(6)
            for webhook_id in ("wh_1", "wh_2"):
                for _ in range(2000):
                    log = await dispatcher.list_deliveries(webhook_id)
                    if all(d.status == "delivered" for d in log):
                        break
                    await asyncio.sleep(0.005)
    finally:
        await dispatcher.stop()
    log = await dispatcher.list_deliveries("wh_1")
    assert [d.event_type for d in log] == ["message.bounced", "message.sent", "message.received"]
    assert {d.webhook_id for d in log} == {"wh_1"}
    assert all(d.status == "delivered" and d.attempts == 1 for d in log)
    assert len(await dispatcher.list_deliveries("wh_1", limit=2)) == 2
    assert await dispatcher.list_deliveries("wh_unknown") == []
    assert await dispatcher.get_delivery(log[0].id) == log[0]


async def test_a_burst_is_delivered_exactly_once_per_event(tmp_path: Path, receiver: Receiver) -> None:
    dispatcher = make_dispatcher(
        config_for(tmp_path), targets_of(Target("wh_1", receiver.url, SECRET))
    )
    events = [make_event() for _ in range(80)]  # more than one claim batch, more than the POST concurrency
    await dispatcher.start()
    try:
        with anyio.fail_after(20):
            for event in events:
                await dispatcher.enqueue(event)
            await receiver.wait_for(len(events))
            for _ in range(2000):
                log = await dispatcher.list_deliveries("wh_1", limit=500)
                if all(d.status == "delivered" for d in log):
                    break
                await asyncio.sleep(0.005)
    finally:
        await dispatcher.stop()
    assert len(receiver.requests) == len(events)
    bodies = sorted(r.body for r in receiver.requests)
    assert bodies == sorted(encode_payload(e) for e in events)
    assert len(log) == len(events) and all(d.status == "delivered" and d.attempts == 1 for d in log)


async def test_queued_retries_follow_a_changed_url_and_secret_and_stop_when_the_webhook_goes(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Nothing listens on the old URL.
    current: dict[str, tuple[str, str] | None] = {"wh_1": ("http://127.0.0.1:9/old", SECRET)}
    dispatcher = make_dispatcher(
        config_for(tmp_path), targets_of(Target("wh_1", "http://127.0.0.1:9/old", SECRET)), destinations=current
    )
    await dispatcher.start()
    try:
        with anyio.fail_after(15):
            await dispatcher.enqueue(make_event())
            await wait_for_status(dispatcher, "wh_1", lambda d: d.attempts >= 1)
            # The user fixed the URL and rotated the secret: the queued retry goes there, signed with the new one.
            current["wh_1"] = (receiver.url, "rotated-secret")
            delivered = await wait_for_status(dispatcher, "wh_1", lambda d: d.status == "delivered")
            assert delivered.attempts >= 2 and len(receiver.requests) == 1
            current["wh_1"] = None  # deleted: a new event's retries are cancelled, not sent
            receiver.fail_first, receiver.fail_status = 1, 503
            await dispatcher.enqueue(make_event())
            for _ in range(2000):
                newest = (await dispatcher.list_deliveries("wh_1"))[0]  # newest first
                if newest.status == "failed":
                    break
                await asyncio.sleep(0.005)
            cancelled = newest
    finally:
        await dispatcher.stop()
    assert "cancelled" in (cancelled.last_error or "")
    assert len(receiver.requests) == 1
    [request] = receiver.requests
    assert verify_signature("rotated-secret", request.body, request.headers[SIGNATURE_HEADER])
