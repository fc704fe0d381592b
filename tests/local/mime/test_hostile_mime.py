"""Hostile MIME through real SMTP into the real backend: accepted or refused cleanly, never a crash.

The corpus is generated here (bad charsets, broken boundaries, NUL bytes, 1,000 headers, 1,000-level
nesting, huge lines, invalid UTF-8, broken base64, garbage before the headers). For each mail: the
SMTP answer is 250 or a clean refusal; an accepted mail's raw source comes back byte-exact; its
sender and subject are found where a reader would find them; and the API keeps answering.
"""

from __future__ import annotations

from typing import Any

import aiosmtplib
import httpx2
import pytest

from tests.event_stack import local_stack
from tests.local.conftest import LocalBackendFixture

TO = "scout@mam.localhost"
CRLF = b"\r\n"


def _mail(headers: list[bytes], body: bytes, *, subject: bytes = b"Hostile") -> bytes:
    top = [b"From: Mallory <mallory@example.com>", b"To: " + TO.encode(), b"Subject: " + subject, *headers]
    return CRLF.join(top) + CRLF + CRLF + body + CRLF


def _nested(depth: int) -> bytes:
    parts = b"Content-Type: text/plain" + CRLF + CRLF + b"bottom"
    for level in range(depth):
        boundary = f"b{level}".encode()
        parts = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"' + CRLF + CRLF
            + b"--" + boundary + CRLF + parts + CRLF + b"--" + boundary + b"--"
        )  # fmt: skip
    return parts


def _rfc822_chain(depth: int) -> bytes:
    inner = b"Subject: innermost" + CRLF + CRLF + b"deep"
    for _ in range(depth):
        inner = b"Content-Type: message/rfc822" + CRLF + CRLF + inner
    return inner


CORPUS: dict[str, tuple[bytes, str]] = {
    # name: (raw bytes, the subject a reader finds)
    "unknown_charset": (
        _mail([b'Content-Type: text/plain; charset="x-no-such-charset"'], "caf\u00e9 cr\u00e8me".encode("latin-1")),
        "Hostile",
    ),
    "broken_boundary": (
        _mail([b'Content-Type: multipart/alternative; boundary="declared"'],
              b"--other\r\nContent-Type: text/plain\r\n\r\nnever closed"),
        "Hostile",
    ),
    "nul_bytes": (_mail([b"X-Nul: a\x00b"], b"body\x00with\x00nuls"), "Hostile"),
    "thousand_headers": (
        CRLF.join([b"From: mallory@example.com", b"To: " + TO.encode()]
                  + [f"X-Header-{i}: value {i}".encode() for i in range(1000)]
                  + [b"Subject: after a thousand headers"]) + CRLF + CRLF + b"body" + CRLF,
        "after a thousand headers",
    ),
    "thousand_level_nesting": (
        b"From: mallory@example.com\r\nTo: " + TO.encode() + b"\r\nSubject: Nested\r\nMIME-Version: 1.0\r\n" + _nested(1000) + CRLF,
        "Nested",
    ),
    "rfc822_chain": (_mail([b"MIME-Version: 1.0"], b"", subject=b"Chain")[:-4] + CRLF + _rfc822_chain(200) + CRLF, "Chain"),
    "huge_line": (_mail([], b"A" * 300_000), "Hostile"),
    # Mostly-invalid UTF-8 is read as Latin-1 (every byte maps: old 8-bit mail stays readable).
    "invalid_utf8": (_mail([b"X-Bad: \xff\xfe\xfd"], b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\x28", subject=b"Caf\xc3 \xff"), "Caf\u00c3 \u00ff"),
    "broken_base64": (
        _mail([b"MIME-Version: 1.0", b"Content-Type: text/plain", b"Content-Transfer-Encoding: base64"], b"!!!not*base64***"),
        "Hostile",
    ),
    # An unknown charset in an encoded word: the bytes are read as UTF-8, as mail readers do.
    "encoded_word_unknown_charset": (_mail([], b"x", subject=b"=?x-klingon?B?SGVsbG8=?="), "Hello"),
    "garbage_before_headers": (b"\x16\x03\x01 not a header line\r\n" + _mail([], b"body"), ""),
    "empty": (CRLF, ""),
    "headers_only": (b"Subject: no body at all" + CRLF, "no body at all"),
}


@pytest.fixture
async def stack(local_backend: LocalBackendFixture) -> Any:
    async with local_stack(local_backend, websockets=False) as running:
        await running.create_inbox("scout")
        yield running


@pytest.mark.parametrize("name", list(CORPUS))
async def test_hostile_mail_is_stored_byte_exact_or_refused_cleanly(stack: Any, name: str) -> None:
    raw, subject = CORPUS[name]
    try:
        _, reply = await aiosmtplib.send(
            raw, sender="mallory@example.com", recipients=[TO], hostname="127.0.0.1", port=stack.smtp_port, timeout=30
        )
        accepted = True
    except aiosmtplib.SMTPResponseException as refused:
        accepted = False
        assert 400 <= refused.code < 600 and refused.code != 421, f"{name}: {refused.code} {refused.message}"
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=stack.watch), base_url="http://local.test", headers={"X-API-Key": stack.tenant_key}
    ) as api:
        inboxes = await api.get("/v1/inboxes")
        assert inboxes.status_code == 200, "the API still answers"
        inbox_id = inboxes.json()["inboxes"][0]["id"]
        listed = (await api.get(f"/v1/inboxes/{inbox_id}/messages")).json()["messages"]
        if not accepted:
            assert listed == []
            return
        assert reply.startswith("OK") or "queued" in reply.lower() or reply, reply
        [message] = listed
        stored = await api.get(f"/v1/inboxes/{inbox_id}/messages/{message['id']}/raw")
        assert stored.status_code == 200 and stored.content == raw, f"{name}: raw source kept byte-exact"
        assert message["subject"] == subject, f"{name}: subject {message['subject']!r}"
        if raw.startswith(b"From: "):
            assert message["fromAddress"] in ("mallory@example.com", None) or "mallory@example.com" in message["fromAddress"]
        detail = await api.get(f"/v1/inboxes/{inbox_id}/messages/{message['id']}")
        assert detail.status_code == 200
        json_size = len(detail.content)
        assert json_size < 2_000_000, f"{name}: the message JSON stays bounded ({json_size} bytes)"
