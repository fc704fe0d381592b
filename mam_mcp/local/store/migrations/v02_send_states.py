"""Schema version 2: where each outbound send stands with the relay (`outbound_delivery`).

Sends are `queued`, `relaying`, then `sent`, `delivered`, `captured`, `partial`, `failed` or
`unknown` (docs/contract.md); a row lives until the send is sent, delivered or captured, and
stays for failed/unknown/partial sends to keep the relay's last answer. Sends version 1 left
`pending` had no recorded outcome: they become `unknown` (never resent).

`IF NOT EXISTS`: builds made between the two versions created the table without raising the
version.
"""

from __future__ import annotations

import sqlite3

from mam_mcp.local.store.engine import execute_script

VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound_delivery (
  message_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT,
  retry_until TEXT, last_reply TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbound_delivery_due ON outbound_delivery(next_attempt_at)
  WHERE next_attempt_at IS NOT NULL;
"""


def apply(conn: sqlite3.Connection) -> None:
    execute_script(conn, SCHEMA)
    conn.execute("UPDATE messages SET status='unknown' WHERE direction='outbound' AND status='pending'")
