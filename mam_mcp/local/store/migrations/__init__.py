"""Versioned schema migrations of the mail database, applied in order when the store opens.

The database's `PRAGMA user_version` is the last version applied. Each version is a module
`vNN_name.py` with `VERSION` and `apply(conn)`, listed in `MIGRATIONS`; each runs in a
transaction of its own that also records its version, so a crash leaves the database at the
version before or after it, never half-way. A database newer than this code is refused.

To change the schema, add the next module and list it; never edit an applied one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from mam_mcp.local.store.migrations import (
    v01_initial,
    v02_send_states,
    v03_unread_index,
    v04_outbox_dedup,
    v05_text_once,
    v06_message_tags,
    v07_inbox_expiry,
    v08_request_records,
    v09_send_fingerprints,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

Migration = tuple[int, Callable[[sqlite3.Connection], None]]

MIGRATIONS: tuple[Migration, ...] = (
    (v01_initial.VERSION, v01_initial.apply),
    (v02_send_states.VERSION, v02_send_states.apply),
    (v03_unread_index.VERSION, v03_unread_index.apply),
    (v04_outbox_dedup.VERSION, v04_outbox_dedup.apply),
    (v05_text_once.VERSION, v05_text_once.apply),
    (v06_message_tags.VERSION, v06_message_tags.apply),
    (v07_inbox_expiry.VERSION, v07_inbox_expiry.apply),
    (v08_request_records.VERSION, v08_request_records.apply),
    (v09_send_fingerprints.VERSION, v09_send_fingerprints.apply),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION) -> None:
    """Bring the database to `target` (on an autocommit connection); at the latest already, one read."""
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {current} is newer than this mam-mcp ({SCHEMA_VERSION})")
    for version, apply in MIGRATIONS:
        if version > target or version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) < version:  # another process may have been first
                apply(conn)
                conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
