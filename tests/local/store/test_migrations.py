"""Schema migrations: version 1 is the released schema, and a release database opens whole in this one.

The release database is built from tests/local/store/release_0_1_0_schema.sql (the schema mam-mcp
0.1.0 created, verbatim) and filled the way that version filled it, 10,000 messages in all.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mam_mcp.local.auth.keys import KeyRing, display_prefix, generate_key, hash_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.migrations import SCHEMA_VERSION, migrate, schema_version
from mam_mcp.local.timestamps import iso_utc

RELEASE_SCHEMA = Path(__file__).with_name("release_0_1_0_schema.sql")
MESSAGES = 10_000
MESSAGES_PER_THREAD = 5
NOW = "2026-11-20T10:00:00.000Z"
START = datetime(2026, 11, 1, tzinfo=UTC)


def _schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def test_version_1_is_the_schema_the_release_created(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "release.db")) as release:
        release.executescript(RELEASE_SCHEMA.read_text(encoding="utf-8"))
        expected = _schema_of(release)
    with contextlib.closing(sqlite3.connect(tmp_path / "migrated.db", isolation_level=None)) as migrated:
        migrate(migrated, target=1)
        assert schema_version(migrated) == 1
        assert _schema_of(migrated) == expected
        migrate(migrated)
        assert schema_version(migrated) == SCHEMA_VERSION
        names = {row[1] for row in _schema_of(migrated)}
    assert names - {row[1] for row in expected} == {
        "outbound_delivery", "outbound_delivery_due", "messages_unread", "message_fts_source",
        "webhook_outbox", "webhook_outbox_due", "webhook_outbox_log", "sqlite_autoindex_webhook_outbox_1",
        "sqlite_autoindex_webhook_outbox_2", "inbound_digests", "inbound_digests_age",  # version 4
        "messages_tag", "inboxes_expiry",  # versions 6 and 7
        "request_records", "request_records_created",  # version 8
    }  # fmt: skip
    assert {row[1] for row in expected} - names == {"message_fts_content"}  # the index's copy of the text


def test_a_database_newer_than_this_code_is_refused(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "mail.db", isolation_level=None)) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        with pytest.raises(RuntimeError, match="newer than this mam-mcp"):
            migrate(conn)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0  # nothing was touched


class ReleaseData:
    """What the release database holds, to be found again through the new store."""

    def __init__(self) -> None:
        self.tenant = "ten-1"
        self.workspace = "ws-1"
        self.inboxes: dict[str, str | None] = {"inb-a": "ws-1", "inb-b": "ws-1", "inb-c": None, "inb-d": None}
        self.messages: dict[str, dict[str, Any]] = {}  # id -> row
        self.threads: dict[str, list[str]] = defaultdict(list)  # thread id -> message ids, oldest first
        self.keys: dict[str, tuple[str, str | None, str | None]] = {}  # raw key -> (kind, workspace, inbox)
        self.webhooks: dict[str, tuple[str | None, str | None]] = {}  # id -> (workspace, inbox)
        self.raw: dict[str, bytes] = {}


def _fill_release_database(path: Path) -> ReleaseData:
    data = ReleaseData()
    rng = random.Random(13)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")  # as the release opened it
    conn.executescript(RELEASE_SCHEMA.read_text(encoding="utf-8"))
    tenants, workspaces, inboxes, addresses = [(data.tenant, NOW)], [(data.workspace, data.tenant, "team", NOW)], [], []
    for inbox_id, workspace in data.inboxes.items():
        email = f"{inbox_id}@mam.localhost"
        inboxes.append((inbox_id, data.tenant, workspace, inbox_id, "mam.localhost", email, None, None, NOW))
        addresses.append((email, inbox_id, 1, NOW))
    addresses.append(("alias@mam.localhost", "inb-c", 0, NOW))
    keys = []
    for kind, workspace, inbox_id in [("tk", None, None), ("wk", data.workspace, None)] + [
        ("ak", ws, inbox_id) for inbox_id, ws in data.inboxes.items()
    ]:
        raw_key = generate_key(kind)  # type: ignore[arg-type]
        data.keys[raw_key] = (kind, workspace, inbox_id)
        keys.append((f"key-{len(keys)}", kind, data.tenant, workspace, inbox_id, None, display_prefix(raw_key),
                     hash_key(raw_key), NOW, None))  # fmt: skip
    revoked = generate_key("ak")
    keys.append(("key-revoked", "ak", data.tenant, None, "inb-c", None, display_prefix(revoked), hash_key(revoked), NOW, NOW))
    raw_sources, messages, fts, attachments, correspondents = [], [], [], [], []
    thread_started: dict[str, str] = {}
    thread_rows: dict[str, tuple[Any, ...]] = {}
    inbox_ids = list(data.inboxes)
    for index in range(MESSAGES):
        seq = index + 1
        inbox_id = inbox_ids[index % len(inbox_ids)]
        thread_number = index // (len(inbox_ids) * MESSAGES_PER_THREAD) * len(inbox_ids) + index % len(inbox_ids)
        thread_id = f"thr-{thread_number:05d}"
        message_id = f"msg-{index:05d}"
        at = iso_utc(START + timedelta(seconds=7 * index))  # oldest first, as they arrived
        outbound = index % 10 == 9
        status = rng.choice(["pending", "sent", "delivered", "captured", "failed"]) if outbound else "received"
        subject = f"Order {thread_number} update"
        body = f"Hello, your code is tok{index:05d}. Regards"
        raw = f"Subject: {subject}\r\nMessage-ID: <{message_id}@x>\r\n\r\n{body}\r\n".encode()
        if not outbound:
            raw_sources.append((seq, raw))
            data.raw[message_id] = raw
        sender = f"sender{index % 7}@example.com" if not outbound else f"{inbox_id}@mam.localhost"
        row = {
            "seq": seq, "id": message_id, "inbox_id": inbox_id, "thread_id": thread_id,
            "direction": "outbound" if outbound else "inbound", "status": status,
            "message_id_hdr": f"<{message_id}@x>", "from_address": sender, "subject": subject, "plain_body": body,
            "has_attachments": 1 if index % 50 == 0 else 0, "raw_id": None if outbound else seq, "at": at,
        }  # fmt: skip
        messages.append((seq, message_id, inbox_id, thread_id, row["direction"], status, row["message_id_hdr"], None,
                         "[]", sender, None, json.dumps(["x@example.com"]), "[]", "[]", subject, body, None,
                         "{}", 0, 0, row["has_attachments"], row["raw_id"], at, at, at, at))  # fmt: skip
        fts.append((seq, subject, sender, body))
        if row["has_attachments"]:
            attachments.append((f"att-{index}", seq, "a.pdf", "application/pdf", 3, None, b"pdf"))
        data.threads[thread_id].append(message_id)
        started = thread_started.setdefault(thread_id, at)
        thread_rows[thread_id] = (thread_id, inbox_id, subject, subject.lower(), len(data.threads[thread_id]), at,
                                  started, at)  # fmt: skip
        data.messages[message_id] = row
        correspondents.append((inbox_id, sender))
    webhooks = []
    for hook_id, workspace, inbox_id in [("wh-tenant", None, None), ("wh-ws", data.workspace, None), ("wh-c", None, "inb-c")]:
        data.webhooks[hook_id] = (workspace, inbox_id)
        webhooks.append((hook_id, data.tenant, workspace, inbox_id, f"https://hooks.example/{hook_id}",
                         json.dumps(["message.received"]), f"whsec_{hook_id}", 1, NOW))  # fmt: skip
    with conn:
        conn.executemany("INSERT INTO tenants VALUES (?, ?)", tenants)
        conn.executemany("INSERT INTO workspaces VALUES (?, ?, ?, ?)", workspaces)
        conn.executemany("INSERT INTO inboxes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", inboxes)
        conn.executemany("INSERT INTO addresses VALUES (?, ?, ?, ?)", addresses)
        conn.executemany("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", keys)
        conn.executemany("INSERT INTO raw_sources VALUES (?, ?)", raw_sources)
        conn.executemany(f"INSERT INTO messages VALUES ({', '.join('?' * 26)})", messages)
        conn.executemany("INSERT INTO message_fts (rowid, subject, sender, body) VALUES (?, ?, ?, ?)", fts)
        conn.executemany("INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?)", attachments)
        conn.executemany("INSERT INTO threads VALUES (?, ?, ?, ?, ?, ?, ?, ?)", thread_rows.values())
        conn.executemany("INSERT OR IGNORE INTO correspondents VALUES (?, ?)", correspondents)
        conn.executemany("INSERT INTO webhooks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", webhooks)
        conn.execute("INSERT INTO domains VALUES ('acme.example', ?, NULL, 'pending', 'tok', ?, NULL)", (data.tenant, NOW))
    conn.close()
    return data


async def test_a_release_database_with_10k_messages_opens_and_everything_is_found(tmp_path: Path) -> None:
    config = LocalConfig(data_dir=tmp_path / "local", http_port=0, smtp_port=0)
    config.data_dir.mkdir()
    data = _fill_release_database(config.db_path)
    async with EmailStore(config) as store:
        with contextlib.closing(sqlite3.connect(config.db_path)) as check:
            assert schema_version(check) == SCHEMA_VERSION
        # Every message, in the inbox it was in, with its row as written.
        for inbox_id in data.inboxes:
            listed = await store.mail.list_messages(inbox_id, limit=MESSAGES, offset=0)
            assert {r["id"] for r in listed} == {m for m, r in data.messages.items() if r["inbox_id"] == inbox_id}
            for row in listed:
                written = data.messages[row["id"]]
                expected_status = "unknown" if written["status"] == "pending" else written["status"]
                assert (row["thread_id"], row["subject"], row["plain_body"], row["status"], row["at"]) == (
                    written["thread_id"], written["subject"], written["plain_body"], expected_status, written["at"],
                )  # fmt: skip
        # Every thread, with its messages in order.
        found_threads = {}
        for inbox_id in data.inboxes:
            for thread in await store.mail.list_threads(inbox_id, limit=MESSAGES, offset=0):
                detail = await store.mail.get_thread(inbox_id, thread["id"])
                assert detail is not None
                found_threads[thread["id"]] = [m["id"] for m in detail["messages"]]
        assert found_threads == data.threads
        # Full text, raw sources and attachments of a sample.
        for message_id in random.Random(7).sample(sorted(data.messages), 40):
            written = data.messages[message_id]
            token = written["plain_body"].split()[4].rstrip(".")
            hits = await store.mail.list_messages(written["inbox_id"], q=token)
            assert [h["id"] for h in hits] == [message_id]
            if written["direction"] == "inbound":
                assert await store.mail.get_raw(written["inbox_id"], message_id) == data.raw[message_id]
            detail = await store.mail.get_message(written["inbox_id"], message_id)
            assert detail is not None and len(detail["attachments"]) == written["has_attachments"]
        # Every key authenticates with its scope; the revoked one does not.
        ring = KeyRing(store)
        for raw_key, (kind, workspace, inbox_id) in data.keys.items():
            scope = ring.authenticate(raw_key)
            assert scope is not None and (scope.kind, scope.tenant_id, scope.workspace_id, scope.inbox_id) == (
                kind, data.tenant, workspace, inbox_id,
            )  # fmt: skip
        assert len(await store.accounts.active_keys()) == len(data.keys)
        # Every inbox and address is known to the directory (RCPT checks).
        for inbox_id, workspace in data.inboxes.items():
            assert store.accounts.inbox_for_address(f"{inbox_id}@mam.localhost") == (inbox_id, data.tenant, workspace)
        assert store.accounts.inbox_for_address("ALIAS@mam.localhost") == ("inb-c", data.tenant, None)
        # Every webhook, and the ones that cover each inbox.
        assert store.admin.may_have_webhooks()
        assert {w["id"] for w in await store.admin.list_webhooks(data.tenant)} == set(data.webhooks)
        for inbox_id, workspace in data.inboxes.items():
            covering = await store.admin.webhooks_for_event(data.tenant, workspace, inbox_id)
            assert {w["id"] for w in covering} == {
                hook for hook, (ws, inbox) in data.webhooks.items() if ws in (None, workspace) and inbox in (None, inbox_id)
            }
        # Sends of the release that had no recorded outcome are unknown now, never resent; new sends work.
        assert await store.sends.next_delivery_at() is None
        row = await store.mail.insert_outbound(
            inbox_id="inb-a", thread_id=None, message_id_hdr="<new@mam.localhost>", in_reply_to=None, references=[],
            from_address="inb-a@mam.localhost", from_name=None, to=["x@example.com"], cc=[], bcc=[], subject="new",
            plain_body="b", html_body=None, raw=b"Subject: new\r\n\r\nb\r\n",
        )  # fmt: skip
        assert await store.sends.claim_delivery(row["id"])
        await store.sends.finish_delivery(row["id"], "sent")
        assert (await store.mail.get_message("inb-a", row["id"]) or {}).get("status") == "sent"


def test_the_inbox_expiry_version_applies_again_over_its_own_schema(tmp_path: Path) -> None:
    # A database whose version was set back (an older build opened it) already has the column.
    from mam_mcp.local.store.migrations import v07_inbox_expiry

    with contextlib.closing(sqlite3.connect(tmp_path / "mail.db", isolation_level=None)) as conn:
        migrate(conn)
        conn.execute(f"PRAGMA user_version={v07_inbox_expiry.VERSION - 1}")
        migrate(conn)
        assert schema_version(conn) == SCHEMA_VERSION
        v07_inbox_expiry.apply(conn)
        assert [r[1] for r in conn.execute("PRAGMA table_info(inboxes)")].count("expires_at") == 1
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='inboxes_expiry'").fetchone()[0] == 1


def test_the_send_fingerprint_version_keeps_old_send_records_and_applies_again(tmp_path: Path) -> None:
    # A send record from before version 9 keeps its message and gets no fingerprint (it answers any
    # request with its key); the version applies again over its own schema (a downgrade and upgrade).
    from mam_mcp.local.store.migrations import v09_send_fingerprints

    with contextlib.closing(sqlite3.connect(tmp_path / "mail.db", isolation_level=None)) as conn:
        migrate(conn, target=v09_send_fingerprints.VERSION - 1)
        conn.execute("INSERT INTO idempotency VALUES ('inb', 'k', 'msg', '2026-01-01T00:00:00Z')")
        migrate(conn)
        assert schema_version(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT message_id, fingerprint FROM idempotency").fetchall() == [("msg", None)]
        conn.execute(f"PRAGMA user_version={v09_send_fingerprints.VERSION - 1}")
        migrate(conn)
        v09_send_fingerprints.apply(conn)
        assert [r[1] for r in conn.execute("PRAGMA table_info(idempotency)")].count("fingerprint") == 1
