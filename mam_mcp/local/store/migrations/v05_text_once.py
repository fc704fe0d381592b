"""Schema version 5: each message's text is stored once (issue 13, item 6).

Version 1 kept an inbound message's text three times: in its raw source, in the message row
(`plain_body`/`html_body`, which lists and reads return), and in the full-text index's own copy
(`message_fts_content`). At 100k messages the database was 3.7x the mail it held (5 KB messages;
5.6x for 1 KB ones). Now:

- The full-text index is an *external-content* FTS5 table over the view `message_fts_source`,
  which derives the indexed columns (subject, "name address", the body's first 200,000 chars)
  from the message row: the index holds terms only, no copy of the text. Contentless FTS5
  (`content=''`) was the other choice; it cannot delete a row by rowid before SQLite 3.43
  (`contentless_delete`), and Python builds still ship 3.40 and older, so deleting an inbox's
  messages would need their indexed text handed back anyway. External content reads it from the
  view, which `DELETE FROM message_fts WHERE rowid ...` does by itself, and it gives `snippet()`
  and `highlight()` the text if they are ever wanted. The view's columns must not change for a
  stored row (they never do: only read/deleted/status flags are updated).
- A raw source whose body is byte for byte the message's `plain_body` encoded as UTF-8 (most
  single-part text mail: codes, notifications, replies) keeps only its header block; the tail
  column says so (`tail='plain_body'`), and `GET .../raw` joins the two again (exact: checked at
  insert, see mam_mcp/local/store/sources.py). Other sources (multipart, encoded bodies,
  outbound) stay whole. Parsing every message on each read to drop the body columns instead
  was measured at ~65-85 us per message, ~1.5 ms per list page of 20, where a list takes ~1 ms.
- An inbound message's header fields are no longer kept a second time as `headers_json`: the
  one reader (the console's message view) decodes them from the raw source, as it already did
  for outbound mail. Rows stored before keep theirs: clearing them rewrites every message row
  (7 s more at 100k 5 KB messages) and frees space inside pages that new rows, appended at the
  end of the table, never reuse; a VACUUM would be needed either way.

The rebuild and the conversion run in this migration's transaction: 31 s at 100k 5 KB messages,
~5 s at 100k 1 KB ones, on a 2-core machine at load 6-7 (the first start after the upgrade of
such a store can outlast the launcher's 15 s wait for the daemon). The pages freed (the index's
copy, the bodies of converted raw sources that overflowed a page) are reused by new mail; the
file itself shrinks only with a VACUUM, not run here: it would hold that first start longer
still and needs the compacted size again in free disk space. With the daemon stopped,
`sqlite3 mail.db VACUUM` (7 s) takes a converted 1.88 GB database to 0.81 GB.
"""

from __future__ import annotations

import sqlite3

from mam_mcp.local.store.engine import execute_script
from mam_mcp.local.store.sources import split_source

VERSION = 5
CONVERT_PAGE = 1000  # messages listed at once (their raw sources are read one by one)

SCHEMA = """
DROP TABLE IF EXISTS message_fts;
CREATE VIEW IF NOT EXISTS message_fts_source AS SELECT seq, coalesce(subject, '') AS subject,
  coalesce(from_name, '') || ' ' || coalesce(from_address, '') AS sender,
  substr(coalesce(nullif(plain_body, ''), html_body, ''), 1, 200000) AS body FROM messages;
CREATE VIRTUAL TABLE message_fts USING fts5(subject, sender, body, content='message_fts_source',
  content_rowid='seq', tokenize='unicode61 remove_diacritics 2');
INSERT INTO message_fts (message_fts) VALUES ('rebuild')
"""


def apply(conn: sqlite3.Connection) -> None:
    """Idempotent (a database already at this schema comes out the same), like the versions before."""
    execute_script(conn, SCHEMA)
    if "tail" not in {row[1] for row in conn.execute("PRAGMA table_info(raw_sources)")}:
        conn.execute("ALTER TABLE raw_sources ADD COLUMN tail TEXT")
    last_seq = 0
    while True:  # in pages of messages, one raw source and body read at a time (never a page of them)
        rows = conn.execute(
            "SELECT m.seq, m.raw_id FROM messages m JOIN raw_sources r ON r.id=m.raw_id"
            " WHERE m.seq>? AND m.direction='inbound' AND r.tail IS NULL AND coalesce(m.plain_body, '')<>''"
            " ORDER BY m.seq LIMIT ?",
            (last_seq, CONVERT_PAGE),
        ).fetchall()
        if not rows:
            return
        for seq, raw_id in rows:
            last_seq = seq
            found = conn.execute(
                "SELECT r.raw, m.plain_body FROM raw_sources r JOIN messages m ON m.seq=? WHERE r.id=? AND r.tail IS NULL",
                (seq, raw_id),
            ).fetchone()
            if found is None:  # another copy of the same mail converted it already
                continue
            raw, plain_body = found
            stored, tail = split_source(bytes(raw), plain_body)  # copies of one mail share raw and body
            if tail is not None:
                conn.execute("UPDATE raw_sources SET raw=?, tail=? WHERE id=?", (stored, tail, raw_id))
