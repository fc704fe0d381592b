"""Schema version 3: an index of unread mail per inbox, newest first.

Unread counts and unread lists then cost the unread rows, not the inbox's size (the console
counts them at 100k messages). `IF NOT EXISTS`: builds made before this version created it at
every open.
"""

from __future__ import annotations

import sqlite3

VERSION = 3


def apply(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE INDEX IF NOT EXISTS messages_unread ON messages(inbox_id, at DESC) WHERE is_read=0 AND deleted=0"
    )
