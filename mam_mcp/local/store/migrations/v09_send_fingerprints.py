"""Schema version 9: a send's `Idempotency-Key` remembers which request claimed it.

`idempotency.fingerprint` (NULL for records written before this version: those answer any request
with their key, as they did) lets a send that reuses a key for a different mail be refused with
`IDEMPOTENCY_KEY_REUSED` instead of being answered with the first mail's result, as if it had gone.
The value starts with its format (`service/idempotency.SEND_FINGERPRINT_FORMAT`).

Idempotent, like the versions before it.
"""

from __future__ import annotations

import sqlite3

VERSION = 9


def apply(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(idempotency)")}
    if "fingerprint" not in columns:
        conn.execute("ALTER TABLE idempotency ADD COLUMN fingerprint TEXT")
