"""Schema version 8: idempotency records of the create routes (POST with an `Idempotency-Key`).

One row per (caller's key id, route, Idempotency-Key): the fingerprint of the request that
claimed it, and once it finished, the response it got (status and body, with one-time secrets
left out: see `service/idempotency.py`). `status` is NULL while the request runs. Rows expire
after a day (`created_at` is indexed for that).
"""

from __future__ import annotations

import sqlite3

from mam_mcp.local.store.engine import execute_script

VERSION = 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS request_records (
  owner TEXT NOT NULL, route TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
  status INTEGER, body TEXT, created_at TEXT NOT NULL,
  PRIMARY KEY (owner, route, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS request_records_created ON request_records(created_at)
"""


def apply(conn: sqlite3.Connection) -> None:
    execute_script(conn, SCHEMA)
