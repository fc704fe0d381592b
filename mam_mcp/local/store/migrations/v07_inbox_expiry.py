"""Schema version 7: ephemeral inboxes. `inboxes.expires_at` (wire timestamp, NULL = kept) and an
index of the inboxes that expire, so the daemon's sweep reads only those, oldest deadline first.

Idempotent, like the versions before it: a database whose version was set back (a downgrade and
upgrade) may already have the column and the index.
"""

from __future__ import annotations

import sqlite3

VERSION = 7


def apply(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(inboxes)")}
    if "expires_at" not in columns:
        conn.execute("ALTER TABLE inboxes ADD COLUMN expires_at TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS inboxes_expiry ON inboxes(expires_at) WHERE expires_at IS NOT NULL")
