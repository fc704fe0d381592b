"""What every repository of the store shares: rows as dicts of columns, new ids, the conflict error.

Rows are returned as plain dicts of columns; the REST layer shapes the wire JSON and the event
model the event payloads.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from typing import Any

__all__ = ["ConflictError", "Row", "new_id", "row_or_none"]

Row = dict[str, Any]


class ConflictError(Exception):
    """A unique resource (address, username, domain) already exists."""


def new_id() -> str:
    """A UUIDv7 (RFC 9562): millisecond time first, then 74 random bits.

    Ids that grow with time land at the right edge of every index that holds them, so a batch
    of new messages dirties a few pages instead of one random page per index per message (with
    random UUIDv4 ids the commits grew with the database: 8 concurrent 5 KB inserts went from
    ~1,450 to ~1,700 msgs/s over 16,000 messages, commit mean 1.85 -> 1.33 ms).
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = rand >> 68, rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b))


def row_or_none(row: sqlite3.Row | None) -> Row | None:
    return dict(row) if row is not None else None
