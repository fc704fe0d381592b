"""What a send comes to when the relay says no, says later, or goes silent: a real aiosmtpd relay sink.

- 535 (login refused) and 550 (unknown user): `failed`, the relay's answer stored (redacted), a
  REST 502 and a tool error `RELAY_REJECTED`; nothing reaches the relay's queue.
- 451 and a dropped connection before DATA: `queued` with the answer and the retry window; the
  retry worker tries again with backoff, then `sent`, or `failed` once the attempts run out.
- The connection dropped after the message went over: `unknown`, never retried.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.events.model import MailEvent
from mam_mcp.local.relay.retries import SendRetryWorker
from mam_mcp.local.relay.smtp_relay import SmtpRelay
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.local.conftest import LocalBackendFixture
from tests.local.relay_sink import SINK_PASSWORD, RelaySink, serve_sink

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

KNOWN = "known@example.com"
WRONG_PASSWORD = "Wr0ng-relay-S3cret"


@pytest.fixture
async def sink() -> AsyncIterator[RelaySink]:
    async with serve_sink() as running:
        yield running


def _use_relay(local_backend: LocalBackendFixture, url: str, **config: Any) -> None:
    backend = local_backend[0]
    backend.relay = SmtpRelay(url, timeout_seconds=5)
    backend.config = backend.config.model_copy(update={"send_retry_base_seconds": 0.05, **config})


async def _send(api: httpx2.AsyncClient, inbox: dict[str, Any], to: str = KNOWN) -> httpx2.Response:
    return await api.post(
        f"/v1/inboxes/{inbox['id']}/send", json={"to": [to], "subject": "Invoice", "text": "Body", "verified": True}
    )


async def _status(api: httpx2.AsyncClient, inbox: dict[str, Any], message_id: str) -> str:
    response = await api.get(f"/v1/inboxes/{inbox['id']}/messages/{message_id}", params={"peek": "true"})
    return str(response.json()["status"])


async def _drain_retries(backend: Any, rounds: int = 20) -> None:
    """Run the retry schedule to its end the way the worker does: try what is due, wait for the next."""
    for _ in range(rounds):
        wait = await backend.retry_due_sends()
        if wait is None:
            return
        await anyio.sleep(wait)  # the scheduled backoff itself (0.05 s base in these tests)
    raise AssertionError("retries did not finish")


async def test_a_refused_relay_login_is_relay_rejected_failed_and_never_shows_the_password(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    async with serve_sink(auth_required=True) as guarded:
        _use_relay(local_backend, guarded.url_with_login(WRONG_PASSWORD))
        inbox = await make_inbox("sender")
        refused = await _send(local_api, inbox)
        assert refused.status_code == 502, refused.text
        error = refused.json()
        assert error["code"] == "RELAY_REJECTED" and "535" in error["error"] and "not sent" in error["error"]
        assert WRONG_PASSWORD not in refused.text
        [message] = (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()["messages"]
        assert message["status"] == "failed"
        stored = await local_backend[0].store.sends.delivery(message["id"])
        assert stored is not None and "535" in stored["last_reply"] and WRONG_PASSWORD not in stored["last_reply"]
        assert guarded.received == []


async def test_an_unknown_user_is_relay_rejected_and_a_partial_refusal_is_partial(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, sink: RelaySink
) -> None:
    _use_relay(local_backend, sink.url_with_login(SINK_PASSWORD))
    sink.rcpt_answers["gone@example.com"] = f"550 5.1.1 <gone@example.com> unknown (login {SINK_PASSWORD})"
    inbox = await make_inbox("sender")
    refused = await _send(local_api, inbox, to="gone@example.com")
    assert refused.status_code == 502 and refused.json()["code"] == "RELAY_REJECTED"
    assert "550 5.1.1" in refused.json()["error"] and SINK_PASSWORD not in refused.text, "the relay's echo is redacted"

    both = await local_api.post(
        f"/v1/inboxes/{inbox['id']}/send",
        json={"to": [KNOWN, "gone@example.com"], "subject": "s", "text": "b", "verified": True},
    )
    assert both.status_code == 201 and both.json()["status"] == "partial"
    assert "gone@example.com: 550 5.1.1" in both.json()["relayReply"]
    assert [e.rcpt_tos for e in sink.received] == [[KNOWN]]


async def test_451_is_queued_then_retried_with_backoff_until_sent(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, sink: RelaySink
) -> None:
    backend = local_backend[0]
    _use_relay(local_backend, sink.url)
    sink.data_answers = ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]
    sent_events: list[MailEvent] = []
    done = anyio.Event()

    def on_event(event: MailEvent) -> None:
        sent_events.append(event)
        done.set()

    backend.add_event_sink(on_event)
    inbox = await make_inbox("sender")
    queued = await _send(local_api, inbox)
    assert queued.status_code == 201, queued.text
    result = queued.json()
    assert result["status"] == "queued" and result["relayReply"] == "relay answered 451 4.3.0 Try again later"
    assert result["nextAttemptAt"] < result["retryUntil"]
    assert await _status(local_api, inbox, result["id"]) == "queued"

    worker = SendRetryWorker(backend)
    await worker.start()
    try:
        with anyio.fail_after(10):
            await done.wait()
    finally:
        await worker.stop()
    assert sink.data_attempts == 3 and len(sink.received) == 1
    assert [e.event_type for e in sent_events] == ["message.sent"]
    assert await _status(local_api, inbox, result["id"]) == "sent"
    assert await backend.store.sends.delivery(result["id"]) is None, "a sent message keeps no delivery row"


async def test_retries_run_out_into_failed_and_a_dropped_connection_before_data_is_retried(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, sink: RelaySink
) -> None:
    backend = local_backend[0]
    _use_relay(local_backend, sink.url, send_max_attempts=3)
    sink.drop = "rcpt"  # the connection dies before the message goes over: safe to try again
    inbox = await make_inbox("sender")
    queued = await _send(local_api, inbox)
    assert queued.status_code == 201 and queued.json()["status"] == "queued"
    assert "relay unreachable" in queued.json()["relayReply"]
    await _drain_retries(backend)
    message_id = queued.json()["id"]
    assert await _status(local_api, inbox, message_id) == "failed"
    stored = await backend.store.sends.delivery(message_id)
    assert stored is not None and stored["attempts"] == 3 and "gave up after 3 attempts" in stored["last_reply"]
    assert sink.received == [] and sink.data_attempts == 0


async def test_a_queued_send_whose_window_ended_while_the_daemon_was_stopped_fails_and_is_never_sent_late(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, sink: RelaySink
) -> None:
    backend = local_backend[0]
    _use_relay(local_backend, sink.url)
    sink.data_answer = "451 4.7.1 Greylisted, try again"
    inbox = await make_inbox("sender")
    queued = await _send(local_api, inbox)
    assert queued.json()["status"] == "queued"
    message_id = queued.json()["id"]
    stored = await backend.store.sends.delivery(message_id)
    assert stored is not None and stored["retry_until"] > stored["next_attempt_at"]  # slack past the last attempt

    def end_the_window(c: sqlite3.Connection) -> None:  # what a daemon stopped for a day comes back to
        c.execute(
            "UPDATE outbound_delivery SET next_attempt_at='2000-01-01T00:00:00.000Z',"
            " retry_until='2000-01-01T00:00:01.000Z' WHERE message_id=?",
            (message_id,),
        )

    await backend.store.mail._db.write(end_the_window)
    sink.data_answer = None
    await _drain_retries(backend)
    assert await _status(local_api, inbox, message_id) == "failed"
    stored = await backend.store.sends.delivery(message_id)
    assert stored is not None and "the retries ended at 2000-01-01T00:00:01.000Z" in stored["last_reply"]
    assert "Greylisted" in stored["last_reply"] and sink.received == []


async def test_a_connection_lost_after_the_message_went_over_is_unknown_and_never_retried(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any, sink: RelaySink
) -> None:
    backend = local_backend[0]
    _use_relay(local_backend, sink.url)
    sink.drop = "data"
    inbox = await make_inbox("sender")
    result = await _send(local_api, inbox)
    assert result.status_code == 201, result.text
    assert result.json()["status"] == "unknown" and "connection lost" in result.json()["relayReply"]
    sink.drop = None
    await _drain_retries(backend)
    assert sink.data_attempts == 1, "never handed over a second time"
    assert await _status(local_api, inbox, result.json()["id"]) == "unknown"


def _tools_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"})


async def test_tools_say_what_happened_and_what_happens_next(
    tmp_path: Path, local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any
) -> None:
    _, app, key = local_backend

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://local.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    inbox = await make_inbox("sender")
    send = {"inbox_id": inbox["id"], "to": [KNOWN], "subject": "Invoice", "body": "Body", "verified": True}
    server = build_server(_tools_settings(tmp_path), client_factory=factory)
    async with serve_sink(auth_required=True) as sink, Client(server) as client:
        _use_relay(local_backend, sink.url_with_login(WRONG_PASSWORD))
        rejected = await client.call_tool("send_email", send)
        text = rejected.content[0].text
        assert rejected.is_error and text.startswith("RELAY_REJECTED: the relay refused message")
        assert "535" in text and "Hint: Nothing was sent" in text and WRONG_PASSWORD not in text

        _use_relay(local_backend, sink.url_with_login(SINK_PASSWORD))
        sink.data_answer = "451 4.7.1 Greylisted, try again"
        queued = await client.call_tool("send_email", send)
        text = queued.content[0].text
        assert not queued.is_error and text.startswith("QUEUED, NOT SENT YET")
        assert "451 4.7.1 Greylisted" in text and "until" in text and "list_messages(direction='outbound')" in text
        data = queued.structured_content or {}
        assert data["status"] == "queued" and data["sent"] is False and data["retry_until"]

        draft = await client.call_tool("create_draft", {k: v for k, v in send.items() if k != "verified"})
        draft_id = (draft.structured_content or {})["id"]
        from_draft = await client.call_tool("send_draft", {"inbox_id": inbox["id"], "draft_id": draft_id, "verified": True})
        assert from_draft.content[0].text.startswith("QUEUED, NOT SENT YET")
        assert "The draft was removed when the message was recorded" in from_draft.content[0].text

        sink.data_answer, sink.drop = None, "data"
        unknown = await client.call_tool("send_email", send)
        text = unknown.content[0].text
        assert not unknown.is_error and text.startswith("OUTCOME UNKNOWN")
        assert "may have been delivered: check with the recipient before sending again" in text.lower()
        assert (unknown.structured_content or {})["sent"] is None

        listed = await client.call_tool("list_messages", {"inbox_id": inbox["id"], "direction": "outbound"})
        hints = {m["status"]: m.get("status_hint") for m in (listed.structured_content or {})["messages"]}
        assert hints.keys() == {"failed", "queued", "unknown"}
        assert "check with the recipient" in str(hints["unknown"]) and "retries on its own" in str(hints["queued"])
    await server.runtime.aclose()  # type: ignore[attr-defined]


async def test_sends_an_older_version_left_pending_become_unknown_when_the_database_is_opened(
    local_config: LocalConfig,
) -> None:
    async with EmailStore(local_config) as store:
        tenant = await store.accounts.create_tenant()
        inbox = await store.accounts.create_inbox(
            tenant_id=tenant, workspace_id=None, username="old", domain="mam.localhost", display_name=None
        )
        row = await store.mail.insert_outbound(
            inbox_id=inbox["id"], thread_id=None, message_id_hdr="<old@mam.localhost>", in_reply_to=None,
            references=[], from_address=inbox["email"], from_name=None, to=[KNOWN], cc=[], bcc=[],
            subject="old", plain_body="b", html_body=None,
        )  # fmt: skip
    with contextlib.closing(sqlite3.connect(local_config.db_path)) as db:  # what an older version left behind
        db.execute("DROP TABLE outbound_delivery")
        db.execute("UPDATE messages SET status='pending' WHERE id=?", (row["id"],))
        db.commit()
        db.execute("PRAGMA user_version=1")  # schema 1: sends had no delivery states
    for _ in range(2):  # the upgrade is idempotent
        async with EmailStore(local_config) as store:
            [message] = await store.mail.list_messages(inbox["id"], direction="outbound")
            assert message["status"] == "unknown"
            assert await store.sends.next_delivery_at() is None


class _SlowRelay:
    """A relay that answers after `delays[n]` seconds at its n-th attempt: 451 while delays remain, then accepts."""

    def __init__(self, delays: list[float]) -> None:
        self.delays, self.sent = list(delays), 0

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        from mam_mcp.local.relay.smtp_relay import RelayRefused

        if self.delays:
            await anyio.sleep(self.delays.pop(0))
            raise RelayRefused(False, "451 4.3.0 Try again later")
        self.sent += 1


async def test_slow_attempts_push_the_schedule_and_the_window_follows_it(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient, make_inbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each attempt's backoff counts from its end: attempts that take long (a relay timing out)
    # push the last attempt past a window computed at the first. Scaled down: 2 s of slack, a 3 s attempt.
    from mam_mcp.local.service import backend as backend_module

    monkeypatch.setattr(backend_module, "_RETRY_SLACK_SECONDS", 2.0)
    backend = local_backend[0]
    relay = _SlowRelay([0.0, 3.0])  # the second attempt alone outlasts the slack
    backend.relay = relay
    backend.config = backend.config.model_copy(update={"send_retry_base_seconds": 0.05, "send_max_attempts": 3})
    inbox = await make_inbox("sender")
    queued = await _send(local_api, inbox)
    assert queued.json()["status"] == "queued"
    with anyio.fail_after(30):
        await _drain_retries(backend)
    message_id = queued.json()["id"]
    stored = await backend.store.sends.delivery(message_id)
    assert await _status(local_api, inbox, message_id) == "sent", stored
    assert relay.sent == 1
