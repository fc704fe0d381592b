"""Durability across a real crash: a daemon subprocess is SIGKILLed and restarted on its data dir.

- Mail: every message the daemon answered 250 for is there after the crash (SMTP says 250 only
  after the COMMIT is on disk).
- Webhooks: a delivery that failed and was waiting for its retry when the daemon died is
  delivered by the restarted daemon, exactly once, with exactly the bytes that were signed.
  (tests/local/webhooks/ cover the same in process with a clean stop; this is a real process kill.)
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import anyio
import pytest

from mam_mcp.signatures import verify_signature
from tests.local.daemon_process import RunningDaemon, daemon_config, daemon_process
from tests.local.webhook_receiver import Receiver, serve_receiver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def _mail(to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <noreply@app.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


async def _create_inbox(daemon: RunningDaemon, username: str) -> dict[str, str]:
    async with daemon.client() as http:
        response = await http.post("/v1/inboxes", json={"username": username})
    assert response.status_code == 201, response.text
    return response.json()


async def _inbound(daemon: RunningDaemon, inbox_id: str) -> list[dict[str, object]]:
    async with daemon.client() as http:
        response = await http.get(f"/v1/inboxes/{inbox_id}/messages", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


async def test_mail_acknowledged_with_250_survives_sigkill(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    accepted: list[str] = []
    kill_after = 12
    async with daemon_process(config) as daemon:
        inbox = await _create_inbox(daemon, "signup")

        async def sender(connection: int) -> None:
            # Keeps sending over one connection until the daemon dies under it.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port, timeout=10) as smtp:
                    for n in range(50):
                        subject = f"code c{connection}-{n}"
                        await smtp.send_message(
                            _mail(inbox["email"], subject, f"Your code is {connection}{n:04d}.")
                        )
                        accepted.append(subject)
                        if len(accepted) == kill_after:
                            daemon.process.kill()  # SIGKILL the moment the 250 is in
                            return

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                for connection in range(4):
                    tasks.start_soon(sender, connection)
            await daemon.wait_exit()
    assert len(accepted) >= kill_after

    async with daemon_process(config) as restarted:
        messages = await _inbound(restarted, inbox["id"])
    by_subject = {m["subject"]: m for m in messages}
    assert set(accepted) <= set(by_subject), f"lost after SIGKILL: {set(accepted) - set(by_subject)}"
    for subject in accepted:
        sender_no, n = subject.removeprefix("code c").split("-")
        assert f"Your code is {sender_no}{int(n):04d}." in str(by_subject[subject]["plainBody"])
        assert by_subject[subject]["direction"] == "inbound"


def _delivery_rows(data_dir: Path) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'mail.db'}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM webhook_outbox").fetchall()


async def _until_retry_is_persisted(data_dir: Path) -> None:
    """The daemon is another process: its retry schedule is visible only in its database."""
    with anyio.fail_after(15):
        while True:  # bounded by fail_after
            with contextlib.suppress(sqlite3.Error):
                rows = _delivery_rows(data_dir)
                if rows and rows[0]["status"] == "pending" and rows[0]["attempts"] >= 1:
                    return
            await anyio.sleep(0.01)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as running:
        yield running


async def test_webhook_retry_pending_at_sigkill_is_delivered_once_after_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    # The retry is due ~2 s after the failure (at least 1.6 with jitter): ample time to kill the
    # daemon between the failure and the retry, short enough for the restarted one to do it soon.
    config = daemon_config(tmp_path / "data", webhook_retry_base_seconds=2.0)
    receiver.fail_first = 1_000  # every POST fails until the restart
    async with daemon_process(config) as daemon:
        inbox = await _create_inbox(daemon, "hooks")
        async with daemon.client() as http:
            created = await http.post(
                "/v1/webhooks", json={"url": receiver.url, "events": ["message.received"]}
            )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        await aiosmtplib.send(
            _mail(inbox["email"], "Verify your account", "Click https://app.example/verify?t=abc"),
            hostname="127.0.0.1",
            port=daemon.smtp_port,
            timeout=10,
        )
        with anyio.fail_after(15):
            await receiver.wait_for(1)
        await _until_retry_is_persisted(config.data_dir)
        daemon.process.kill()
        await daemon.wait_exit()
    assert secret not in daemon.log()

    failed_before_restart = len(receiver.requests)
    receiver.fail_first = failed_before_restart  # from now on the receiver accepts
    async with daemon_process(config) as restarted:
        with anyio.fail_after(15):
            await receiver.wait_for(failed_before_restart + 1)
        messages = await _inbound(restarted, inbox["id"])
        async with restarted.client() as http:
            await http.post("/_mam/shutdown")
        await restarted.wait_exit()

    # Every attempt carried the same bytes, signed with the webhook's secret.
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1
    body = bodies.pop()
    assert all(verify_signature(secret, r.body, r.headers["x-mam-signature"]) for r in receiver.requests)
    payload = json.loads(body)
    assert payload["event"] == "message.received"
    assert payload["inboxId"] == inbox["id"]
    assert payload["subject"] == "Verify your account"
    assert [m["id"] for m in messages] == [payload["messageId"]]
    # Exactly once: one accepted delivery, nothing left to send.
    [row] = _delivery_rows(config.data_dir)
    assert row["status"] == "delivered" and row["attempts"] == failed_before_restart + 1
    assert len(receiver.requests) == failed_before_restart + 1
