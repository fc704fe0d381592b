"""mime/parse.py: hostile and ordinary inbound mail parses without raising, quickly where mail is plain."""

from __future__ import annotations

import email
import email.header
import email.message
import email.utils
import re
from email import policy
from pathlib import Path

import pytest

from mam_mcp.local.mime.parse import (
    decode_header_value,
    message_from_bytes,
    normalize_subject,
    parse_message,
    simple_addresses,
)


def test_parses_encoded_headers_bodies_and_rfc2231_filename() -> None:
    raw = (
        b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.com>\r\n"
        b"To: Bob <bob@mam.localhost>, carol@mam.localhost\r\n"
        b"Cc: dave@example.org\r\n"
        b"Subject: =?iso-8859-1?q?caf=E9?= time\r\n"
        b"Message-ID: <m1@example.com>\r\nIn-Reply-To: <p@example.com>\r\nReferences: <a@example.com> <p@example.com>\r\n"
        b"Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text \xc3\xa9\r\n"
        b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n--b2--\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.from_name == "Zoë" and parsed.from_address == "zoe@example.com"
    assert parsed.to == ["bob@mam.localhost", "carol@mam.localhost"] and parsed.cc == ["dave@example.org"]
    assert parsed.subject == "café time"
    assert parsed.message_id == "<m1@example.com>" and parsed.in_reply_to == "<p@example.com>"
    assert parsed.references == ["<a@example.com>", "<p@example.com>"]
    assert parsed.date == "2026-11-24T09:00:00.000Z"
    assert parsed.plain_body is not None and parsed.plain_body.strip() == "plain text é"
    assert parsed.html_body is not None and "<p>html</p>" in parsed.html_body
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("résumé.pdf", "application/pdf", b"%PDF-1.4\n")
    ]


def test_unknown_and_wrong_charsets_fall_back_without_raising() -> None:
    unknown = b"Subject: =?x-no-such-charset?q?hi?=\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\nh\xc3\xa9llo\r\n"
    parsed = parse_message(unknown)
    assert parsed.plain_body is not None and parsed.plain_body.startswith("héllo")
    wrong = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xe9t\xe9 \xe0 Paris\r\n"
    assert parse_message(wrong).plain_body == "été à Paris\r\n"  # not UTF-8 at all: latin-1 keeps every byte
    assert "hi" in decode_header_value("=?x-no-such-charset?q?hi?=")


def test_raw_8bit_header_is_decoded() -> None:
    parsed = parse_message("Subject: Grüße aus Köln\r\n\r\nbody".encode())
    assert parsed.subject == "Grüße aus Köln"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nunterminated',
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b"From: <<<@@@>>>\r\nTo: ,,,\r\nDate: yesterday-ish\r\nMessage-ID: nonsense\r\n\r\nx",
    ],
)
def test_malformed_mail_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed.subject, str)


def test_deeply_nested_multipart_is_capped() -> None:
    depth = 60
    head = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(depth)
    )
    tail = b"".join(f"\r\n--b{i}--\r\n".encode() for i in reversed(range(depth)))
    raw = b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\ninnermost" + tail
    parsed = parse_message(raw)
    assert parsed.subject == "deep"
    assert parsed.plain_body is None and parsed.defects >= 1  # below the cap: kept only in the raw source


def test_huge_header_and_many_headers_parse() -> None:
    raw = (
        b"Subject: "
        + b"A" * 200_000
        + b"\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
        + b"\r\nbody"
    )
    parsed = parse_message(raw)
    assert parsed.subject.startswith("AAAA") and len(parsed.subject) <= 16_384
    assert len(parsed.headers) <= 200


def test_normalize_subject_strips_reply_and_forward_prefixes() -> None:
    assert normalize_subject("Re: AW: SV: Fwd: [team] Quarterly  Plan") == "quarterly plan"
    assert normalize_subject("RE[2]: Quarterly plan") == "quarterly plan"
    assert normalize_subject("") == ""


# ---------------------------------------------------------------- fast paths agree with the stdlib

CORPUS = sorted((Path(__file__).parents[2] / "data" / "verification_emails").glob("*.eml"))


def _crlf(raw: bytes) -> bytes:
    """The corpus is stored with LF line ends; over SMTP it arrives with CRLF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


EDGE_MESSAGES = [
    b"Subject: plain\r\n\r\nbody\r\nmore\r\n",
    b"Subject: no body\r\n\r\n",
    b"Subject: lf only\n\nbody\n",
    b"Subject: bare\rcr\r\nX: y\r\n\r\nbody",
    b"Subject: form\x0cfeed\r\nX: y\r\n\r\nbody",
    b"Subject: a\r\nnot a header line\r\nX: y\r\n\r\nbody",
    b"From someone@example.com Tue Nov 24 10:00:00 2026\r\nSubject: mbox\r\n\r\nbody\r\n",
    b"\r\n\r\nno headers at all\r\n",
    b"Subject: folded\r\n continued\r\n\tand tabbed\r\n\r\nbody\r\n",
    b"Subject: 8-bit \xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xe9t\xe9\x85\x0b\x0c\r\n",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n",
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n',
    b"Content-Type: MULTIPART/alternative; boundary=q\r\n\r\n--q\r\n\r\nx\r\n--q--\r\n",
    b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\naGVsbG8=\r\n",
    b"Subject: body has a blank line\r\n\r\n\r\n\r\nafter\r\n",
]


def _shape(msg: email.message.Message) -> object:
    payload = msg.get_payload()
    inner = [_shape(p) for p in payload] if isinstance(payload, list) else payload
    return (msg.get_unixfrom(), msg.items(), [type(d).__name__ for d in msg.defects], inner)


@pytest.mark.parametrize(
    "raw", [p.read_bytes() for p in CORPUS] + [_crlf(p.read_bytes()) for p in CORPUS] + EDGE_MESSAGES
)
def test_fast_message_parse_gives_what_the_full_parse_gives(raw: bytes) -> None:
    fast = message_from_bytes(raw)
    full = email.message_from_bytes(raw, policy=policy.compat32)
    assert _shape(fast) == _shape(full)


def test_fast_message_parse_is_taken_for_ordinary_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    fed: list[int] = []
    stdlib_parse = email.message_from_bytes

    def recording_parse(raw: bytes, *args: object, **kwargs: object) -> email.message.Message:
        fed.append(len(raw))
        return stdlib_parse(raw, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(email, "message_from_bytes", recording_parse)
    single = [_crlf(p.read_bytes()) for p in CORPUS]
    single = [raw for raw in single if b"multipart/" not in raw.lower()]
    assert len(single) >= 10
    for raw in single:
        fed.clear()
        message_from_bytes(raw)
        assert fed == [raw.index(b"\r\n\r\n") + 4]  # only the header block went through the parser
    fed.clear()
    multipart = EDGE_MESSAGES[11]
    message_from_bytes(multipart)
    assert fed[-1] == len(multipart)  # a multipart message gets the full parse


ADDRESS_VALUES = [
    "a@b.example",
    "  a@b.example  ",
    "App <noreply@app.example>",
    "My App Team <no-reply+x@mail.app.example>",
    "App<noreply@app.example>",
    "=?utf-8?q?Zo=C3=AB?= <zoe@example.com>",
    "a@b.example, c@d.example",
    "Bob <bob@mam.localhost>, carol@mam.localhost",
    "first.last@sub.domain.example",
    "x!#$%&'*/=?^_`{|}~-y@b.example",
    "J. Doe <j@x.example>",
    '"Doe, John" <j@x.example>',
    "a@b.example (comment)",
    "Undisclosed recipients:;",
    "App  Name <a@b.example>",
    "a@b.example,",
    "<a@b.example>",
    "a@[127.0.0.1]",
    "Name <a@b.example",
    "a..b@c.example",
    "",
    "\tTab <a@b.example>",
]


@pytest.mark.parametrize("value", ADDRESS_VALUES)
def test_simple_addresses_agree_with_getaddresses(value: str) -> None:
    fast = simple_addresses([value])
    if fast is not None:
        assert fast == email.utils.getaddresses([value])


def test_simple_addresses_take_the_common_forms() -> None:
    common = ["a@b.example", "App <noreply@app.example>", "Bob <bob@mam.localhost>, carol@mam.localhost"]
    assert all(simple_addresses([value]) is not None for value in common)
    assert simple_addresses(['"Doe, John" <j@x.example>']) is None


@pytest.mark.parametrize(
    "value",
    ["plain subject", "  padded  ", "tab\there", "=?utf-8?q?caf=C3=A9?=", "folded\r\n line", "nul\x00x"],
)
def test_header_decoding_fast_path_matches_the_general_rule(value: str) -> None:
    # The general rule: RFC 2047 words decoded, folding unfolded, NULs dropped, then stripped.
    chunks = email.header.decode_header(value)
    text = "".join(c.decode(cs or "ascii") if isinstance(c, bytes) else c for c, cs in chunks)
    expected = re.sub(r"\r?\n[ \t]*", " ", text).replace("\r", " ").replace("\x00", "").strip()
    assert decode_header_value(value) == expected
