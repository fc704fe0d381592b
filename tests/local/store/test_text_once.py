"""Each message's text is stored once (schema version 5): raw sources without a second copy of the
body, a full-text index without a copy of the text; raw stays byte-exact and search finds the same."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.mime.parse import header_fields, parse_message
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.migrations import SCHEMA_VERSION, migrate, v05_text_once
from mam_mcp.local.store.sources import TAIL_PLAIN_BODY, join_source, split_source
from tests.local.store.mailbox import mail, store_with_inbox

MULTIPART = (
    b"From: Alice <alice@example.com>\r\nTo: bob@mam.localhost\r\nSubject: both kinds\r\n"
    b"Message-ID: <mp@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=BB\r\n\r\n"
    b"--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain walrus text\r\n"
    b"--BB\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html <b>walrus</b></p>\r\n--BB--\r\n"
)
LATIN1 = (
    b"From: Alice <alice@example.com>\r\nTo: bob@mam.localhost\r\nSubject: latin\r\nMessage-ID: <l1@x>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nCaf\xe9 cr\xe8me narwhal\r\n"
)
UTF8 = mail("unicode", msg_id="<u8@x>", body="Grüße aus Köln, ünïcödé okapi\r\n")


def _raw_rows(path: Path) -> list[tuple[bytes, str | None]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [(bytes(r[0]), r[1]) for r in conn.execute("SELECT raw, tail FROM raw_sources ORDER BY id")]


def _fts_ok(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO message_fts (message_fts) VALUES ('integrity-check')")  # raises if out of step


@pytest.mark.parametrize(
    ("raw", "plain", "split"),
    [
        (b"Subject: a\r\n\r\nbody\r\n", "body\r\n", True),
        (b"Subject: a\r\n\r\nbody\r\n", "body", False),  # the parsed text differs from the bytes
        (b"Subject: a\r\n\r\n", "", False),
        (b"Subject: a\r\n\r\nx", None, False),
        (b"body", "body", False),  # nothing before the body: keep it whole
        ("Subject: a\r\n\r\nÄ\r\n".encode(), "Ä\r\n", True),
        (b"Subject: a\r\n\r\n\xc4\r\n", "Ä\r\n", False),  # latin-1 bytes, same text
        (b"Subject: a\r\n\r\n\xed\xa0\x80", "\udc80", False),  # not encodable: kept whole
    ],
)
def test_split_and_join_give_the_raw_source_back(raw: bytes, plain: str | None, split: bool) -> None:
    stored, tail = split_source(raw, plain)
    assert (tail == TAIL_PLAIN_BODY) is split
    assert len(stored) < len(raw) if split else stored == raw
    assert join_source(stored, tail, plain) == raw


def test_a_tail_without_its_body_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be joined"):
        join_source(b"head", TAIL_PLAIN_BODY, None)
    with pytest.raises(ValueError, match="cannot be joined"):
        join_source(b"head", "html_body", "x")


async def test_raw_is_byte_exact_and_its_body_is_stored_once(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    ids = {}
    for name, raw in (("plain", mail("plain", msg_id="<p@x>", body="one zebra line\r\n")), ("utf8", UTF8),
                      ("multipart", MULTIPART), ("latin1", LATIN1)):  # fmt: skip
        copies = await store.mail.insert_inbound(raw, mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"])
        ids[name] = (copies[0].message["id"], raw)
    for message_id, raw in ids.values():
        assert await store.mail.get_raw(inbox_id, message_id) == raw
    stored = _raw_rows(local_config.db_path)
    # single-part UTF-8/ASCII text: the header block only; the others whole
    assert [tail for _, tail in stored] == [TAIL_PLAIN_BODY, TAIL_PLAIN_BODY, None, None]
    assert stored[0][0] == mail("plain", msg_id="<p@x>", body="")
    assert b"zebra" not in stored[0][0] and "okapi".encode() not in stored[1][0]
    # the bodies the API returns are untouched
    detail = await store.mail.get_message(inbox_id, ids["utf8"][0])
    assert detail is not None and detail["plain_body"] == "Grüße aus Köln, ünïcödé okapi\r\n"
    await store.close()


async def test_search_finds_body_subject_and_sender_without_a_copy_of_the_text(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    for raw in (mail("quarterly report", msg_id="<q@x>", body="the zebra crossed\r\n"), UTF8, MULTIPART, LATIN1):
        await store.mail.insert_inbound(raw, mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"])

    async def subjects(q: str) -> list[str]:
        return [r["subject"] for r in await store.mail.list_messages(inbox_id, q=q)]

    assert await subjects("zebra") == ["quarterly report"]
    assert await subjects("quarterly") == ["quarterly report"]
    assert await subjects("koln okapi") == ["unicode"]  # diacritics folded, as before
    assert await subjects("walrus") == ["both kinds"]
    assert await subjects("narwhal") == ["latin"]
    assert sorted(await subjects("alice")) == ["both kinds", "latin", "quarterly report", "unicode"]
    assert await subjects("nothinglikethis") == []
    with contextlib.closing(sqlite3.connect(local_config.db_path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "message_fts_content" not in tables  # the index keeps terms, not text
    _fts_ok(local_config.db_path)
    await store.close()


async def test_deleting_an_inbox_keeps_the_other_copy_whole_and_the_index_in_step(local_config: LocalConfig) -> None:
    store, bob = await store_with_inbox(local_config)
    tenant = store.accounts.inbox_record(bob).tenant_id  # type: ignore[union-attr]
    carol = (await store.accounts.create_inbox(
        tenant_id=tenant, workspace_id=None, username="carol", domain="mam.localhost", display_name=None
    ))["id"]  # fmt: skip
    raw = mail("shared", msg_id="<s@x>", to="bob@mam.localhost, carol@mam.localhost", body="ibex shared\r\n")
    copies = await store.mail.insert_inbound(
        raw, mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost", "carol@mam.localhost"]
    )
    by_inbox = {c.inbox.id: c.message["id"] for c in copies}
    await store.delete_inbox(bob)
    assert await store.mail.get_raw(carol, by_inbox[carol]) == raw
    assert [r["id"] for r in await store.mail.list_messages(carol, q="ibex")] == [by_inbox[carol]]
    assert await store.mail.list_messages(bob, q="ibex") == []
    _fts_ok(local_config.db_path)
    # a later message takes no stale index entry of the deleted one
    await store.mail.insert_inbound(
        mail("later", msg_id="<l@x>", body="fresh words\r\n", to="carol@mam.localhost"),
        mail_from="alice@example.com", rcpt_tos=["carol@mam.localhost"],
    )  # fmt: skip
    assert [r["subject"] for r in await store.mail.list_messages(carol, q="ibex")] == ["shared"]
    _fts_ok(local_config.db_path)
    await store.close()


async def test_version_5_converts_a_version_3_database(
    local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw sources whose body is the plain body lose the copy; the index is rebuilt over the rows."""
    monkeypatch.setattr(v05_text_once, "CONVERT_PAGE", 7)  # many pages, one ending on a split row
    local_config.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(local_config.db_path, isolation_level=None)) as conn:
        migrate(conn, target=3)
        rows = []
        for index in range(200):
            body = f"line {index} of the yak herd\r\n" if index % 2 == 0 else f"<p>only html {index} yak</p>"
            raw = f"Subject: s{index}\r\nMessage-ID: <m{index}@x>\r\n\r\n{body}".encode()
            plain, html = (body, None) if index % 2 == 0 else (None, body)
            rows.append((index + 1, raw, plain, html))
        conn.execute("BEGIN")
        conn.execute("INSERT INTO tenants VALUES ('t', 'now')")
        conn.execute("INSERT INTO inboxes VALUES ('inb', 't', NULL, 'bob', 'mam.localhost', 'bob@mam.localhost',"
                     " NULL, NULL, 'now')")  # fmt: skip
        conn.execute("INSERT INTO addresses VALUES ('bob@mam.localhost', 'inb', 1, 'now')")
        for seq, raw, plain, html in rows:
            conn.execute("INSERT INTO raw_sources VALUES (?, ?)", (seq, raw))
            conn.execute(
                "INSERT INTO messages (seq, id, inbox_id, thread_id, direction, status, from_address, subject,"
                " plain_body, html_body, headers_json, raw_id, at, created_at) VALUES (?, ?, 'inb', 'thr', 'inbound',"
                " 'received', 'a@example.com', ?, ?, ?, '[[\"Subject\", \"s\"]]', ?, '2026-11-20T10:00:00.000Z',"
                " 'now')",
                (seq, f"m{seq}", f"s{seq - 1}", plain, html, seq),
            )
            conn.execute(
                "INSERT INTO message_fts (rowid, subject, sender, body) VALUES (?, ?, ?, ?)",
                (seq, f"s{seq - 1}", " a@example.com", plain or html),
            )
        conn.execute("COMMIT")
    async with EmailStore(local_config) as store:
        with contextlib.closing(sqlite3.connect(local_config.db_path)) as check:
            assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            tails = [r[0] for r in check.execute("SELECT tail FROM raw_sources ORDER BY id")]
            # stored header fields are kept (clearing them would rewrite every row for space not reused)
            assert check.execute("SELECT count(*) FROM messages WHERE headers_json IS NOT NULL").fetchone() == (200,)
        assert tails == [TAIL_PLAIN_BODY if i % 2 == 0 else None for i in range(200)]
        for seq, raw, _, _ in rows:
            assert await store.mail.get_raw("inb", f"m{seq}") == raw
        assert len(await store.mail.list_messages("inb", q="yak", limit=500)) == 200
        assert [r["id"] for r in await store.mail.list_messages("inb", q="html 7")] == ["m8"]
        assert [r["id"] for r in await store.mail.list_messages("inb", q="line 6 herd")] == ["m7"]
    _fts_ok(local_config.db_path)


@pytest.mark.parametrize("raw", [MULTIPART, LATIN1, UTF8, b"Subject: =?utf-8?q?caf=C3=A9?=\nX-A: 1\n\nbare LF body\n"])
def test_header_fields_read_from_the_raw_source_are_what_the_parser_stored(raw: bytes) -> None:
    """The console shows these where version 4 stored `headers_json` (`parse_message(raw).headers`)."""
    assert header_fields(raw) == parse_message(raw).headers
    assert header_fields(raw)  # never empty for these


async def test_version_5_applied_again_leaves_the_store_as_it_was(local_config: LocalConfig) -> None:
    store, inbox_id = await store_with_inbox(local_config)
    raw = mail("again", msg_id="<a@x>", body="gecko text\r\n")
    [copy] = await store.mail.insert_inbound(raw, mail_from="alice@example.com", rcpt_tos=["bob@mam.localhost"])
    await store.close()
    with contextlib.closing(sqlite3.connect(local_config.db_path)) as conn:
        conn.execute("PRAGMA user_version=3")
    async with EmailStore(local_config) as reopened:
        assert await reopened.mail.get_raw(inbox_id, copy.message["id"]) == raw
        assert [r["id"] for r in await reopened.mail.list_messages(inbox_id, q="gecko")] == [copy.message["id"]]
    assert _raw_rows(local_config.db_path) == [(mail("again", msg_id="<a@x>", body=""), TAIL_PLAIN_BODY)]
    _fts_ok(local_config.db_path)
