"""Schema version 6: the plus-address tag a received message was delivered with.

Mail to `scout+run42@<domain>` is stored in `scout`'s inbox with `tag = 'run42'` (NULL when the
address had none). Compared without regard to case, as addresses are; the index serves
`?tag=` lists and waits per inbox, newest first.
"""

from __future__ import annotations

import sqlite3

VERSION = 6


def apply(conn: sqlite3.Connection) -> None:
    # Idempotent, like the versions before it: a database whose recorded version was set back
    # (tests simulate an older release that way) may already have the column.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    if "tag" not in columns:
        conn.execute("ALTER TABLE messages ADD COLUMN tag TEXT COLLATE NOCASE")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS messages_tag ON messages(inbox_id, tag, at DESC) WHERE tag IS NOT NULL"
    )
