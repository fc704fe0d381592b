"""The webhook delivery log as the API shows it, and the one-time import of an older install's `webhooks.db`.

Deliveries live in the mail database's outbox (store/outbox.py). Versions before schema 4 kept
them in a second SQLite file, `webhooks.db`, beside it: `import_legacy_log` copies its rows
(pending ones stay due; delivered and failed ones keep the log) into the outbox once at daemon
start, then renames the file `webhooks.db.imported`. The rows keep their ids, so an import cut
short by a crash is simply done again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Final, Literal

import anyio
from pydantic import BaseModel, ConfigDict

from mam_mcp.local.store.outbox import OutboxRepository
from mam_mcp.local.timestamps import iso_from_epoch

__all__ = [
    "IMPORTED_SUFFIX",
    "LEGACY_FILE",
    "DeliveryStatus",
    "WebhookDelivery",
    "delivery_from_row",
    "import_legacy_log",
]

logger = logging.getLogger(__name__)

DeliveryStatus = Literal["pending", "delivered", "failed"]
LEGACY_FILE: Final = "webhooks.db"
IMPORTED_SUFFIX: Final = ".imported"


class WebhookDelivery(BaseModel):
    """One delivery of the log (no URL, body or secret)."""

    model_config = ConfigDict(frozen=True)

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None


def delivery_from_row(row: dict[str, Any]) -> WebhookDelivery:
    values = dict(row)
    next_at = values["next_attempt_at"]
    values["next_attempt_at"] = None if next_at is None else iso_from_epoch(float(next_at))
    return WebhookDelivery(**values)


def _read_legacy(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM webhook_deliveries")]
    except sqlite3.OperationalError:  # no such table: a file with nothing to import
        return []
    finally:
        conn.close()


async def import_legacy_log(data_dir: Path, outbox: OutboxRepository) -> int:
    """Copy `webhooks.db` into the outbox and rename it; returns the rows imported (0 without the file)."""
    path = data_dir / LEGACY_FILE
    if not path.exists():
        return 0
    try:
        rows = await anyio.to_thread.run_sync(_read_legacy, path)
    except sqlite3.DatabaseError as exc:  # unreadable: the daemon still starts; the file stays for a look
        logger.warning("webhooks: could not read %s (%s): its deliveries were not imported", path, exc)
        return 0
    imported = await outbox.import_rows(rows) if rows else 0
    os.replace(path, path.with_name(path.name + IMPORTED_SUFFIX))
    for suffix in ("-wal", "-shm"):  # closed cleanly above, so nothing in them is unread
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.with_name(path.name + suffix))
    pending = sum(1 for r in rows if r.get("status") == "pending")
    logger.info(
        "webhooks: imported %d deliveries (%d pending) from %s into the mail database; the old file is now %s%s",
        imported, pending, LEGACY_FILE, LEGACY_FILE, IMPORTED_SUFFIX,
    )  # fmt: skip
    return imported
