"""The crash matrix: a real daemon SIGKILLs itself at a named point (MAM_LOCAL_CRASH_AT, mam_mcp/local/crash.py);
the state a restarted daemon finds is asserted.

- `ingest.before_commit`: no 250, and neither the message nor its webhook delivery; the sender's retry stores both.
- `ingest.after_commit`: no 250, but the message and its delivery both; the retry is answered 250 and stored once.
- `webhook.after_post`: the receiver got the POST, the outcome was not recorded: sent again (at least once).
- `migration.v4`: the database stays at version 3, whole; the next start migrates it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio
import pytest

from mam_mcp.local.store.migrations import SCHEMA_VERSION, migrate, schema_version
from mam_mcp.signatures import verify_signature
from tests.local.daemon_process import RunningDaemon, child_env, daemon_config, daemon_process
from tests.local.webhook_receiver import Receiver, serve_receiver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

RAW = (
    b"From: App <noreply@app.example>\r\nTo: {to}\r\nSubject: Your code\r\n"
    b"Message-ID: <crash-1@app.example>\r\n\r\nYour code is 771234.\r\n"
)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as running:
        yield running


def _raw(to: str) -> bytes:
    return RAW.replace(b"{to}", to.encode())


async def _send(daemon: RunningDaemon, to: str) -> None:
    await aiosmtplib.send(
        _raw(to), sender="noreply@app.example", recipients=[to], hostname="127.0.0.1", port=daemon.smtp_port, timeout=10
    )


async def _set_up(daemon: RunningDaemon, receiver: Receiver) -> tuple[dict[str, Any], dict[str, Any]]:
    async with daemon.client() as http:
        inbox = (await http.post("/v1/inboxes", json={"username": "crash"})).json()
        hook = await http.post("/v1/webhooks", json={"url": receiver.url, "events": ["message.received"]})
    assert hook.status_code == 201, hook.text
    return inbox, hook.json()


async def _messages(daemon: RunningDaemon, inbox_id: str) -> list[dict[str, Any]]:
    async with daemon.client() as http:
        response = await http.get(f"/v1/inboxes/{inbox_id}/messages", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["messages"]  # type: ignore[no-any-return]


def _outbox(data_dir: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'mail.db'}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM webhook_outbox")]


async def _until_delivered(data_dir: Path) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:  # bounded by fail_after
            with contextlib.suppress(sqlite3.Error):
                rows = _outbox(data_dir)
                if len(rows) == 1 and rows[0]["status"] == "delivered":
                    return rows[0]
            await anyio.sleep(0.01)


async def _killed(daemon: RunningDaemon) -> None:
    assert await daemon.wait_exit() == -signal.SIGKILL, daemon.log()


@pytest.mark.parametrize("point", ["ingest.before_commit", "ingest.after_commit"])
async def test_sigkill_between_data_and_250_leaves_the_mail_with_its_delivery_or_neither(
    tmp_path: Path, receiver: Receiver, point: str
) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config, crash_at=point) as daemon:
        inbox, hook = await _set_up(daemon, receiver)
        with pytest.raises((aiosmtplib.SMTPException, OSError)):  # the sender never hears 250
            await _send(daemon, inbox["email"])
        await _killed(daemon)

    committed = point == "ingest.after_commit"
    async with daemon_process(config) as restarted:
        found = await _messages(restarted, inbox["id"])
        rows = _outbox(config.data_dir)
        assert len(found) == len(rows) == (1 if committed else 0)  # both or neither
        if committed:
            assert rows[0]["webhook_id"] == hook["id"]
            assert json.loads(rows[0]["body"])["messageId"] == found[0]["id"]
        await _send(restarted, inbox["email"])  # the sender retries the same transaction: 250
        row = await _until_delivered(config.data_dir)
        stored = await _messages(restarted, inbox["id"])
    assert len(stored) == 1  # stored once
    assert row["webhook_id"] == hook["id"] and row["attempts"] == 1
    if committed:
        assert stored[0]["id"] == found[0]["id"]
    [posted] = receiver.requests  # one event, one delivery
    assert json.loads(posted.body)["messageId"] == stored[0]["id"]
    assert verify_signature(hook["secret"], posted.body, posted.headers["x-mam-signature"])


async def test_sigkill_after_the_post_before_it_is_recorded_sends_it_again_after_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config, crash_at="webhook.after_post") as daemon:
        inbox, hook = await _set_up(daemon, receiver)
        await _send(daemon, inbox["email"])  # 250: the mail is stored; the dispatcher dies after its POST
        await _killed(daemon)
    assert len(receiver.requests) == 1
    [pending] = _outbox(config.data_dir)
    assert (pending["status"], pending["attempts"]) == ("pending", 0)  # the 2xx was never recorded
    assert pending["leased_until"] is not None  # held by the dead process

    async with daemon_process(config) as restarted:
        row = await _until_delivered(config.data_dir)  # the lease ends with the restart, not 30 s later
        stored = await _messages(restarted, inbox["id"])
    assert row["attempts"] == 1
    assert len(receiver.requests) == 2  # at least once: the same delivery again
    assert receiver.requests[0].body == receiver.requests[1].body
    assert json.loads(receiver.requests[1].body)["messageId"] == stored[0]["id"]
    assert all(verify_signature(hook["secret"], r.body, r.headers["x-mam-signature"]) for r in receiver.requests)


async def test_sigkill_mid_migration_leaves_the_previous_version_whole(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    config.data_dir.mkdir(mode=0o700)
    with contextlib.closing(sqlite3.connect(config.db_path, isolation_level=None)) as db:
        migrate(db, target=3)
        db.execute("INSERT INTO tenants VALUES ('ten_old', '2026-01-01T00:00:00.000Z')")
    process = subprocess.run(
        [sys.executable, "-m", "mam_mcp.local", "--config-stdin"],
        input=config.model_dump_json().encode(),
        env=child_env("migration.v4"),
        capture_output=True,
        timeout=60,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode(errors="replace")
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        assert schema_version(db) == 3
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "webhook_outbox" not in tables and "inbound_digests" not in tables
        assert db.execute("SELECT id FROM tenants").fetchall() == [("ten_old",)]

    async with daemon_process(config) as restarted:
        async with restarted.client() as http:
            assert (await http.get("/v1/inboxes")).status_code == 200
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        assert schema_version(db) == SCHEMA_VERSION
        assert db.execute("SELECT id FROM tenants WHERE id='ten_old'").fetchone() == ("ten_old",)
        assert db.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone() == (0,)
