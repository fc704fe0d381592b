"""Large mail parses as the stdlib parses it: fed in chunks from a spool file, with runs of base64
lines handed to the parser whole, and large base64 parts decoded without the stdlib's copies.

Differential: every message here is parsed both ways (the large path from a SpooledMessage, in
pieces as small as 7 bytes, and `email.message_from_bytes`) and must give the same tree and the
same ParsedMessage.
"""

from __future__ import annotations

import base64
import email
import email.message
import os
from email import policy
from pathlib import Path

import pytest

from mam_mcp.local.mime.parse import DIRECT_BASE64_CHARS, _payload_bytes, message_from_raw, parse_message
from mam_mcp.local.mime.source import SpooledMessage
from tests.local.mime.test_hostile_mime import CORPUS as HOSTILE
from tests.local.mime.test_parse import CORPUS, EDGE_MESSAGES, _crlf

B64 = base64.encodebytes(os.urandom(3000)).replace(b"\n", b"\r\n")


def _multipart(body: bytes, *, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return (
        b'Subject: runs\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n' + preamble
        + b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body + b"--zz\r\nContent-Type: text/plain\r\n\r\ntext\r\n--zz--\r\n" + epilogue
    )  # fmt: skip


RUNS = [
    _multipart(B64),
    _multipart(B64.replace(b"\r\n", b"\n")),  # LF only
    _multipart(B64.rstrip(b"\r\n")),  # the run ends right at the boundary line
    _multipart(B64, preamble=B64, epilogue=B64),  # base64-looking preamble and epilogue
    _multipart(B64[:800] + b"--zz\r\n" + B64[800:]),  # a boundary inside a run (a new part begins)
    _multipart(B64[:800] + b"--zz--\r\n" + B64[800:]),  # the closing boundary inside a run
    _multipart(B64[:800] + b"\r\n" + B64[800:]),  # a blank line in a run
    b"Subject: no blank line\r\nQUJD\r\nREVG\r\n" + B64,  # base64 lines where headers are expected
    b"QUJD\r\n" + B64,  # no headers at all
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + B64,
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\n" + B64,
    b"Content-Type: multipart/report; boundary=r\r\n\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; x\r\n\r\nQUJD\r\nREVG\r\n\r\nAction: failed\r\n--r--\r\n",
    b"Subject: cr\r\n\r\nQUJD\rREVG\r\nR0hJ\r\n",  # a bare CR inside a run
]


def _shape(msg: email.message.Message) -> object:
    payload = msg.get_payload()
    inner = [_shape(p) for p in payload] if isinstance(payload, list) else payload
    return (msg.get_unixfrom(), msg.items(), [type(d).__name__ for d in msg.defects], inner,
            getattr(msg, "preamble", None), getattr(msg, "epilogue", None))  # fmt: skip


def _spooled(raw: bytes) -> SpooledMessage:
    spooled = SpooledMessage()
    for start in range(0, len(raw), 4096):
        spooled.write(raw[start : start + 4096])
    return spooled.seal()


MESSAGES = (
    RUNS + EDGE_MESSAGES + [p.read_bytes() for p in CORPUS] + [_crlf(p.read_bytes()) for p in CORPUS]
    + [raw for raw, _ in HOSTILE.values()]
)  # fmt: skip


@pytest.mark.parametrize("chunk_bytes", [7, 1000, 256 * 1024])
def test_the_large_path_builds_the_tree_the_stdlib_builds(chunk_bytes: int) -> None:
    for raw in MESSAGES:
        spooled = _spooled(raw)
        try:
            ours = message_from_raw(spooled, chunk_bytes=chunk_bytes)
        except RecursionError:  # the 1,000-level nesting: the stdlib fails the same way
            with pytest.raises(RecursionError):
                email.message_from_bytes(raw, policy=policy.compat32)
            continue
        finally:
            spooled.close()
        assert _shape(ours) == _shape(email.message_from_bytes(raw, policy=policy.compat32)), raw[:200]


def test_parse_message_is_the_same_from_a_spool_file_and_from_bytes() -> None:
    for raw in MESSAGES:
        spooled = _spooled(raw)
        try:
            assert parse_message(spooled) == parse_message(raw), raw[:200]
        finally:
            spooled.close()


@pytest.mark.parametrize(
    "encoded",
    [
        base64.encodebytes(os.urandom(DIRECT_BASE64_CHARS)),
        base64.encodebytes(os.urandom(DIRECT_BASE64_CHARS)).replace(b"\n", b"\r\n"),
        base64.b64encode(os.urandom(DIRECT_BASE64_CHARS)),  # one line
        base64.b64encode(os.urandom(DIRECT_BASE64_CHARS + 1)).rstrip(b"="),  # padding missing
        base64.encodebytes(os.urandom(DIRECT_BASE64_CHARS)) + b"!!junk\n",  # characters outside the alphabet
        base64.encodebytes(os.urandom(DIRECT_BASE64_CHARS)) + b"QUJD=\nREVG\n",  # data after padding
        base64.encodebytes(os.urandom(DIRECT_BASE64_CHARS)) + b"\xe9\xff\n",  # 8-bit bytes
        base64.encodebytes(os.urandom(DIRECT_BASE64_CHARS)) + b"Q\n",  # one character too many
    ],
    ids=["lf", "crlf", "one-line", "no-padding", "junk", "after-padding", "8bit", "length"],
)
def test_large_base64_decodes_to_what_the_stdlib_decodes(encoded: bytes) -> None:
    raw = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded
    part = email.message_from_bytes(raw, policy=policy.compat32)
    expected = part.get_payload(decode=True)
    assert _payload_bytes(email.message_from_bytes(raw, policy=policy.compat32)) == expected
