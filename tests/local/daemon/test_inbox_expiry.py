"""Ephemeral inboxes: a time to live at creation, and the daemon deleting expired ones with their mail.

End to end over the real daemon (a subprocess) and real SMTP. The test moves the deadline into
the past with its own SQLite connection instead of waiting out the shortest time to live (60 s).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import anyio
import pytest

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.expiry import BATCH, ExpirySweeper
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.timestamps import iso_utc
from tests.local.conftest import LocalBackendFixture
from tests.local.daemon_process import daemon_config, daemon_process


def _mail(to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Acme <noreply@acme.example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Your code is 482913.")
    return message


def _expire_now(config: LocalConfig, inbox_id: str) -> None:
    past = iso_utc(datetime.now(UTC) - timedelta(seconds=1))
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        conn.execute("UPDATE inboxes SET expires_at=? WHERE id=?", (past, inbox_id))
        conn.commit()


def _count(config: LocalConfig, sql: str, *args: object) -> int:
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


async def test_the_daemon_deletes_an_expired_inbox_with_its_mail_and_keys(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data", expiry_sweep_seconds=0.2)
    async with daemon_process(config) as daemon, daemon.client(timeout=10) as api:
        before = datetime.now(UTC)
        created = await api.post("/v1/inboxes?reveal=true", json={"username": "temp", "ttlSeconds": 3600})
        assert created.status_code == 201, created.text
        temp = created.json()
        expires = datetime.fromisoformat(temp["expiresAt"].replace("Z", "+00:00"))
        assert before + timedelta(seconds=3599) <= expires <= datetime.now(UTC) + timedelta(seconds=3601)
        kept = (await api.post("/v1/inboxes", json={"username": "kept"})).json()
        assert kept["expiresAt"] is None
        for inbox in (temp, kept):
            welcome = _mail(inbox["email"], f"Welcome {inbox['email']}")
            await aiosmtplib.send(welcome, hostname="127.0.0.1", port=daemon.smtp_port, timeout=10)
        draft = await api.post(f"/v1/inboxes/{temp['id']}/drafts", json={"to": ["a@example.com"], "subject": "d"})
        assert draft.status_code == 201, draft.text
        listed = (await api.get(f"/v1/inboxes/{temp['id']}/messages")).json()
        assert [m["subject"] for m in listed["messages"]] == ["Welcome temp@mam.localhost"]

        _expire_now(config, temp["id"])
        with anyio.fail_after(15):
            while (await api.get(f"/v1/inboxes/{temp['id']}")).status_code != 404:
                await anyio.sleep(0.05)

        # Gone with everything it held; its own key no longer opens anything.
        assert _count(config, "SELECT count(*) FROM messages WHERE inbox_id=?", temp["id"]) == 0
        assert _count(config, "SELECT count(*) FROM drafts WHERE inbox_id=?", temp["id"]) == 0
        assert _count(config, "SELECT count(*) FROM api_keys WHERE inbox_id=?", temp["id"]) == 0
        async with daemon.client(timeout=10) as own:
            own.headers["X-API-Key"] = temp["apiKey"]
            assert (await own.get("/v1/inboxes")).status_code == 401
        # Its address no longer takes mail; the other inbox and its mail are untouched.
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await aiosmtplib.send(_mail(temp["email"], "late"), hostname="127.0.0.1", port=daemon.smtp_port, timeout=10)
        remaining = (await api.get("/v1/inboxes")).json()["inboxes"]
        assert [i["id"] for i in remaining] == [kept["id"]]
        kept_mail = (await api.get(f"/v1/inboxes/{kept['id']}/messages")).json()["messages"]
        assert [m["subject"] for m in kept_mail] == ["Welcome kept@mam.localhost"]


async def test_an_inbox_expired_while_the_daemon_was_stopped_is_deleted_at_start(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data", expiry_sweep_seconds=3600)  # only the sweep at start
    async with daemon_process(config) as daemon, daemon.client(timeout=10) as api:
        temp = (await api.post("/v1/inboxes", json={"username": "temp", "ttlSeconds": 60})).json()
        await aiosmtplib.send(_mail(temp["email"], "hello"), hostname="127.0.0.1", port=daemon.smtp_port, timeout=10)
    _expire_now(config, temp["id"])
    async with daemon_process(config) as daemon, daemon.client(timeout=10) as api:
        with anyio.fail_after(15):
            while (await api.get(f"/v1/inboxes/{temp['id']}")).status_code != 404:
                await anyio.sleep(0.05)
    assert _count(config, "SELECT count(*) FROM messages") == 0


@pytest.mark.parametrize("ttl", [0, 59, 30 * 86_400 + 1, "1h"])
async def test_a_time_to_live_out_of_range_is_refused(local_api, ttl: object) -> None:  # type: ignore[no-untyped-def]
    response = await local_api.post("/v1/inboxes", json={"username": "temp", "ttlSeconds": ttl})
    assert response.status_code == 400, response.text
    assert "ttlSeconds" in response.text
    assert (await local_api.get("/v1/inboxes")).json()["inboxes"] == []


async def test_one_tick_deletes_a_bounded_batch_oldest_deadline_first(local_backend: LocalBackendFixture) -> None:
    backend: LocalBackend = local_backend[0]
    tenant = await backend.store.accounts.first_tenant()
    assert tenant is not None
    now = datetime.now(UTC)
    ids = []
    for n in range(BATCH * 2 + 3):
        row = await backend.store.accounts.create_inbox(
            tenant_id=tenant, workspace_id=None, username=f"t{n}", domain="mam.localhost", display_name=None,
            expires_at=iso_utc(now - timedelta(seconds=1000 - n)),
        )
        ids.append(row["id"])
    future = await backend.store.accounts.create_inbox(
        tenant_id=tenant, workspace_id=None, username="later", domain="mam.localhost", display_name=None,
        expires_at=iso_utc(now + timedelta(hours=1)),
    )
    first = await backend.delete_expired_inboxes(limit=BATCH)
    assert first == ids[:BATCH]  # the longest expired first
    assert backend.is_local_recipient("t0@mam.localhost") is False
    assert backend.is_local_recipient(f"t{BATCH}@mam.localhost") is True
    assert await ExpirySweeper(backend, 3600).sweep_once() == BATCH + 3
    left = await backend.store.accounts.list_inboxes(tenant)
    assert [r["id"] for r in left] == [future["id"]]


# --- housekeeping: finished webhook deliveries and inbound digests are let go -----------------------


async def test_housekeeping_deletes_deliveries_that_ended_long_ago_and_keeps_the_rest(
    local_backend: LocalBackendFixture,
) -> None:
    from mam_mcp.local.store.mail import DEDUP_WINDOW_SECONDS
    from mam_mcp.local.store.outbox import OutboxEntry

    backend: LocalBackend = local_backend[0]
    outbox = backend.store.outbox
    day = 86_400.0
    now = time.time()
    await outbox.add([OutboxEntry("wh_1", f"evt_{n}", "message.received", b"{}") for n in range(5)], now=now - 40 * day)
    await outbox.add([OutboxEntry("wh_1", "evt_recent", "message.received", b"{}")], now=now)
    rows = {r["event_id"]: r["id"] for r in await outbox.list_for_webhook("wh_1", 10)}
    old = now - 40 * day
    for event, status in (("evt_0", "delivered"), ("evt_1", "failed"), ("evt_2", "delivered")):
        await outbox.record_attempt(rows[event], status=status, attempts=1, status_code=200, error=None, now=old)
    await outbox.record_attempt(rows["evt_3"], status="delivered", attempts=1, status_code=200, error=None, now=now - day)
    # evt_4: pending for 40 days (its webhook keeps failing): never deleted, whatever its age
    await backend.store.db.write(
        lambda c: c.execute(
            "INSERT INTO inbound_digests VALUES ('in_1', 'old', '<a@x>', 'msg_1', ?), ('in_1', 'new', '<b@x>', 'msg_2', ?)",
            (now - DEDUP_WINDOW_SECONDS - 60, now),
        )
    )

    assert await backend.housekeeping(batch=2, max_batches=1) == 2  # bounded: one batch of two
    assert await backend.housekeeping(batch=2, max_batches=5) == 1
    assert await backend.housekeeping() == 0
    left = {r["event_id"]: r["status"] for r in await outbox.list_for_webhook("wh_1", 10)}
    assert left == {"evt_3": "delivered", "evt_4": "pending", "evt_recent": "pending"}
    digests = await backend.store.db.read(lambda c: [r[0] for r in c.execute("SELECT digest FROM inbound_digests")])
    assert digests == ["new"]


async def test_the_daemon_lets_old_deliveries_go_at_start(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data", delivery_log_days=1)
    async with daemon_process(config):
        pass  # creates the store
    long_ago = iso_utc(datetime.now(UTC) - timedelta(days=2))
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        conn.executemany(
            "INSERT INTO webhook_outbox (id, webhook_id, event_id, event_type, body, status, attempts,"
            " created_at, updated_at) VALUES (?, 'wh_1', ?, 'message.received', x'7b7d', ?, 1, ?, ?)",
            [("whd_old", "evt_old", "delivered", long_ago, long_ago), ("whd_live", "evt_live", "pending", long_ago, long_ago)],
        )
        conn.commit()
    async with daemon_process(config):
        with anyio.fail_after(15):
            while _count(config, "SELECT count(*) FROM webhook_outbox WHERE id='whd_old'"):
                await anyio.sleep(0.05)
    assert _count(config, "SELECT count(*) FROM webhook_outbox WHERE id='whd_live'") == 1
