"""Schema version 7: ephemeral inboxes. `inboxes.expires_at` (wire timestamp, NULL = kept) and an
index of the inboxes that expire, so the daemon's sweep reads only those, oldest deadline first.
"""

from __future__ import annotations

import sqlite3

VERSION = 7


def apply(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE inboxes ADD COLUMN expires_at TEXT")
    conn.execute("CREATE INDEX inboxes_expiry ON inboxes(expires_at) WHERE expires_at IS NOT NULL")
