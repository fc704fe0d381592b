"""Schema version 4: the webhook outbox and the inbound digests (deduplication of retried SMTP mail).

`webhook_outbox` holds one row per (webhook, event): written in the same transaction as the
message it tells about (so a crash leaves both or neither), worked off by the dispatcher. It
replaces the separate `webhooks.db` of earlier versions (imported once at daemon start). The
body is the exact JSON POSTed; `next_attempt_at` is when it is due (epoch seconds), `leased_until`
how long a worker holds it (a POST in flight). The it is signed at send time with the webhook's secret then, so no
signature or secret is kept here.

`inbound_digests` remembers, per inbox, the Message-ID and SHA-256 of each received raw mail for
a window (store/mail.py `DEDUP_WINDOW`): a sending server retrying a mail already committed (the
`250` was lost in a crash) gets its `250` again and the mail is stored once.

`IF NOT EXISTS`: a database whose version was set back by hand (tests do) runs this again.
"""

from __future__ import annotations

import sqlite3

from mam_mcp.local.crash import crash_point
from mam_mcp.local.store.engine import execute_script

VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
  id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
  body BLOB NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, leased_until REAL,
  last_status_code INTEGER, last_error TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_attempt_at TEXT, delivered_at TEXT,
  UNIQUE (webhook_id, event_id));
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox(next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_log ON webhook_outbox(webhook_id, created_at DESC);
CREATE TABLE IF NOT EXISTS inbound_digests (
  inbox_id TEXT NOT NULL, digest TEXT NOT NULL, message_id_hdr TEXT NOT NULL, message_id TEXT NOT NULL,
  received_at REAL NOT NULL, PRIMARY KEY (inbox_id, digest, message_id_hdr)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbound_digests_age ON inbound_digests(received_at);
"""


def apply(conn: sqlite3.Connection) -> None:
    execute_script(conn, SCHEMA)
    crash_point("migration.v4")  # tests: a SIGKILL here must leave the database at version 3
