"""An older install's `webhooks.db` is imported into the outbox once at start, then renamed."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import anyio

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.webhooks.deliveries import import_legacy_log
from mam_mcp.local.webhooks.dispatcher import WebhookDispatcher
from mam_mcp.signatures import SIGNATURE_HEADER, verify_signature
from tests.local.webhook_receiver import serve_receiver

# The table as versions before schema 4 created it in webhooks.db (verbatim).
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
    url TEXT NOT NULL, body BLOB NOT NULL, signature TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, last_status_code INTEGER, last_error TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_attempt_at TEXT, delivered_at TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
PRAGMA user_version=1;
"""


def _legacy_file(data_dir: Path, url: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(data_dir / "webhooks.db")) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(LEGACY_SCHEMA)
        rows = [
            ("whd_pending", "wh_1", "evt_1", "message.received", url, b'{"event":"message.received"}', "old-sig",
             "pending", 1, time.time() - 5, 503, "HTTP 503", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z",
             "2026-01-01T00:00:01.000Z", None),
            ("whd_done", "wh_1", "evt_0", "message.sent", url, b'{"event":"message.sent"}', "old-sig",
             "delivered", 1, None, 200, None, "2025-12-31T00:00:00.000Z", "2025-12-31T00:00:01.000Z",
             "2025-12-31T00:00:01.000Z", "2025-12-31T00:00:01.000Z"),
        ]  # fmt: skip
        db.executemany(f"INSERT INTO webhook_deliveries VALUES ({','.join('?' * 16)})", rows)
        db.commit()


async def test_pending_deliveries_of_webhooks_db_are_imported_once_and_then_sent(tmp_path: Path) -> None:
    config = LocalConfig(data_dir=tmp_path / "data", webhook_retry_base_seconds=0.05)
    async with serve_receiver() as receiver:
        _legacy_file(config.data_dir, receiver.url)
        async with EmailStore(config) as store:
            assert await import_legacy_log(config.data_dir, store.outbox) == 2
            assert not (config.data_dir / "webhooks.db").exists()
            assert (config.data_dir / "webhooks.db.imported").exists()
            assert await import_legacy_log(config.data_dir, store.outbox) == 0  # once
            log = {row["id"]: row for row in await store.outbox.list_for_webhook("wh_1", 10)}
            assert {k: (v["status"], v["attempts"]) for k, v in log.items()} == {
                "whd_pending": ("pending", 1), "whd_done": ("delivered", 1),
            }  # fmt: skip

            async def destination(webhook_id: str) -> tuple[str, str] | None:
                return (receiver.url, "current-secret") if webhook_id == "wh_1" else None

            dispatcher = WebhookDispatcher(config, store.outbox, destination=destination)
            await dispatcher.start()
            try:
                with anyio.fail_after(10):
                    await receiver.wait_for(1)
                    while (await dispatcher.get_delivery("whd_pending")).status != "delivered":  # type: ignore[union-attr]
                        await anyio.sleep(0.01)  # bounded by fail_after
            finally:
                await dispatcher.stop()
    [request] = receiver.requests  # the delivered one is not sent again
    assert request.body == b'{"event":"message.received"}'
    assert verify_signature("current-secret", request.body, request.headers[SIGNATURE_HEADER])
    delivered = await _get(config, "whd_pending")
    assert delivered == ("delivered", 2)


async def _get(config: LocalConfig, delivery_id: str) -> tuple[str, int]:
    async with EmailStore(config) as store:
        row = await store.outbox.get(delivery_id)
    assert row is not None
    return row["status"], row["attempts"]


async def test_a_data_dir_without_webhooks_db_imports_nothing(tmp_path: Path) -> None:
    config = LocalConfig(data_dir=tmp_path / "data")
    async with EmailStore(config) as store:
        assert await import_legacy_log(config.data_dir, store.outbox) == 0
    assert not (config.data_dir / "webhooks.db.imported").exists()


async def test_an_unreadable_webhooks_db_is_left_in_place_and_the_start_goes_on(tmp_path: Path) -> None:
    config = LocalConfig(data_dir=tmp_path / "data")
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "webhooks.db").write_bytes(b"not a database" * 100)
    async with EmailStore(config) as store:
        assert await import_legacy_log(config.data_dir, store.outbox) == 0
    assert (config.data_dir / "webhooks.db").exists()
