"""Our DATA reader and address match against aiosmtpd's own, on the same bytes (differential).

`SmtpIngress` replaces aiosmtpd's per-line DATA loop and its MAIL/RCPT address parser with
faster ones (see mam_mcp/local/smtp/ingress.py). Here both servers get identical raw client bytes,
including the awkward ones (empty message, `.` lines, bare CR/LF next to a `.` line, lines
longer than the read buffer, separators straddling it, one byte at a time), and must store
identical content and give the same reply codes. Every case runs twice: as deployed (DATA past
1 MB spooled to a file) and spooling from the 16th byte, in 16-byte pieces, so that the undoing of
dot-stuffing piece by piece meets every awkward boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mam_mcp.local.mime.source import RawMessage, SpooledMessage
from mam_mcp.local.smtp.ingress import LINE_LENGTH_LIMIT, SPOOL_AFTER_BYTES, SmtpIngress

LIMIT = 3 * 1024 * 1024
RCPT = "agent@mam.localhost"


@dataclass
class Recorder:
    contents: list[bytes] = field(default_factory=list)
    addresses: list[tuple[str, list[str]]] = field(default_factory=list)

    async def ingest(self, raw: RawMessage, mail_from: str, rcpt_tos: list[str]) -> list[str]:
        self.contents.append(raw.read_all() if isinstance(raw, SpooledMessage) else raw)
        self.addresses.append((mail_from, list(rcpt_tos)))
        return []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        # As SmtpIngress's handler does: the null reverse-path `<>` of a bounce is no sender.
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        await self.ingest(envelope.original_content, mail_from, list(envelope.rcpt_tos))
        return "250 OK"


class StockSMTP(SMTP):
    """aiosmtpd unchanged, except that it takes lines up to 4 MB.

    Ours reads through a 1 MB buffer (LINE_LENGTH_LIMIT) but bounds DATA lines only by the message
    size limit, so lines longer than the buffer exercise its piecewise reads; stock aiosmtpd would
    refuse them with 500 (the size limit already bounds memory, and app mail has such lines).
    """

    line_length_limit = 4 * LINE_LENGTH_LIMIT


@dataclass
class Pair:
    ours: SmtpIngress
    ours_seen: Recorder
    stock_port: int
    stock_seen: Recorder


@pytest.fixture(params=[SPOOL_AFTER_BYTES, 16], ids=["spool-after-1MB", "spool-after-16B"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    ours_seen, stock_seen = Recorder(), Recorder()
    ours = SmtpIngress(
        ingest=ours_seen.ingest,
        is_local_recipient=lambda a: True,
        port=0,
        max_message_bytes=LIMIT,
        spool_after_bytes=request.param,
        large_message_bytes=LIMIT,  # no cap in play here: tests/local/smtp/test_large_mail.py has it
    )
    await ours.start()
    loop = asyncio.get_running_loop()
    stock = await loop.create_server(
        lambda: StockSMTP(stock_seen, hostname="localhost", decode_data=False, data_size_limit=LIMIT),
        "127.0.0.1",
        0,
    )
    try:
        yield Pair(ours, ours_seen, stock.sockets[0].getsockname()[1], stock_seen)
    finally:
        stock.close()
        await ours.stop()


class RawClient:
    """Writes exactly the bytes given; reads replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client.reply()
        await client.command(b"EHLO test.example")
        return client

    async def reply(self) -> str:
        while True:
            line = (await self.reader.readline()).decode()
            assert line, "server closed the connection"
            if line[3:4] != "-":
                return line[:3]

    async def command(self, line: bytes) -> str:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def send(self, mail_from: str, payload: bytes, *, byte_by_byte: bool = False) -> str:
        assert (await self.command(f"MAIL FROM:{mail_from}".encode())) == "250"
        assert (await self.command(f"RCPT TO:<{RCPT}>".encode())) == "250"
        assert (await self.command(b"DATA")) == "354"
        if byte_by_byte:
            for i in range(len(payload)):
                self.writer.write(payload[i : i + 1])
                await self.writer.drain()
                await asyncio.sleep(0)
        else:
            self.writer.write(payload)
        return await self.reply()

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.reply()
        self.writer.close()


async def both(pair: Pair, payload: bytes, **kwargs: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    """Send `payload` (client bytes after 354) to both servers, then a second message on the
    same connection (the reader must stop exactly at the end of the first). Returns the codes."""
    codes = []
    for port in (pair.ours.port, pair.stock_port):
        with anyio.fail_after(30):
            client = await RawClient.open(port)
            first = await client.send("<a@b.example>", payload, **kwargs)
            second = await client.send("<c@d.example>", b"next\r\n.\r\n")
            await client.close()
        codes.append((first, second))
    return codes[0], codes[1]


MB = 1024 * 1024
PAYLOADS = [
    b".\r\n",  # empty message
    b"a\r\n.\r\n",
    b"\r\n.\r\n",
    b"\r\n\r\n.\r\n",
    b"..\r\n.\r\n",  # a line holding one dot
    b"..a\r\n.b\r\n...\r\nc.\r\n.\r\n",
    b"Sentence one.\r\nSentence two.\r\n.\r\n",
    b"x\n.\r\n.\r\n",  # bare LF before a dot line: not the end
    b"x\r.\r\n.\r\n",  # bare CR before a dot line: not the end
    b".\r\r\n.\r\n",
    b".\rX\r\n.\r\n",
    b".\rX.\r\n.\r\n",  # a dot line that is the rest of a line, not a line
    b"a\rb\r\n.\r\n",
    b"a\r\n.\r\r\n.\r\n",
    b"a\r\n.\n\r\n.\r\n",
    b"\xc3\xa9t\xc3\xa9 8-bit\r\n.\r\n",
    b"A" * (3 * MB // 2) + b"\r\n.\r\n",  # one line longer than the 1 MB read buffer
    b"B" * (MB - 2) + b"\r\n..x\r\n.\r\n",  # separators straddling the buffer limit
    b"C" * (MB - 1) + b"\r\n.\r\n",
    b"D" * MB + b"\r\n.\r\n",
    b"E" * (MB + 1) + b"\n.\r\n.\r\n",
    b"line\r\n" * 50_000 + b".\r\n",
    b".lead\r\n" + b"..\r\n.x\r\n\r\n" * 20_000 + b".\r\n",  # dot-stuffed lines across every spool piece
    b"\r\n" * 40_000 + b"..\r\n.\r\n",  # a long run of CR LF: nothing to cut on until the end
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=[repr(p[:24]) + f"..{len(p)}" for p in PAYLOADS])
async def test_data_content_matches_aiosmtpd(pair: Pair, payload: bytes) -> None:
    ours, stock = await both(pair, payload)
    assert ours == stock == ("250", "250")
    assert pair.ours_seen.contents == pair.stock_seen.contents
    assert pair.ours_seen.contents[1] == b"next\r\n"


@pytest.mark.parametrize(
    "payload", [b".\r\n", b"..\r\n.\r\n", b"x\n.\r\n.\r\n", b".\r\r\n.\r\n", b"a\r\nb.\r\n\r\n.\r\n"]
)
async def test_data_sent_one_byte_at_a_time_matches_aiosmtpd(pair: Pair, payload: bytes) -> None:
    ours, stock = await both(pair, payload, byte_by_byte=True)
    assert ours == stock == ("250", "250")
    assert pair.ours_seen.contents == pair.stock_seen.contents


@pytest.mark.parametrize(
    "payload",
    [
        b"F" * LIMIT + b"\r\n.\r\n",  # the CRLF of the last line takes it over the limit
        b"G\r\n" * (LIMIT // 3 + 1) + b".\r\n",
        b"H" * (LIMIT + 10) + b"\r\n.\r\n",
    ],
    ids=["one-over", "many-lines", "long-line"],
)
async def test_over_the_size_limit_is_552_in_both_and_the_session_goes_on(pair: Pair, payload: bytes) -> None:
    ours, stock = await both(pair, payload)
    assert ours == stock == ("552", "250")
    assert pair.ours_seen.contents == pair.stock_seen.contents == [b"next\r\n"]


async def test_exactly_at_the_size_limit_is_accepted_by_both(pair: Pair) -> None:
    payload = b"I" * (LIMIT - 2) + b"\r\n.\r\n"
    ours, stock = await both(pair, payload)
    assert ours == stock == ("250", "250")
    assert pair.ours_seen.contents[0] == pair.stock_seen.contents[0] == payload[:-3]


@pytest.mark.parametrize(
    ("mail_from", "expected"),
    [
        ("<a@b.example>", "250"),
        ("<first.last+tag@sub.b-c.example>", "250"),
        ("<x!#$%&'*/=?^_`{|}~-y@b.example>", "250"),
        ("<a@b.example> SIZE=100", "250"),
        ("<a@b.example> BODY=8BITMIME", "250"),
        ('<"quoted local"@b.example>', "250"),  # the full parser takes it
        ("<@route.example:a@b.example>", "250"),
        ("<a@[127.0.0.1]>", "250"),
        ("<>", "250"),
        ("a@b.example", "250"),
        ("<a..b@b.example>", "250"),  # aiosmtpd takes the obsolete syntax; so do we
        ("<a@b.example", "250"),
        ("<" + "l" * 65 + "@b.example>", "250"),  # no local-part limit unless configured
        ("<a b@b.example>", "250"),  # read as the obsolete local part "a b"
        ("<=?utf-8?q?admin?=@b.example>", "250"),  # aiosmtpd decodes the encoded word
        ("<a@b.example>(note) SIZE=1", "250"),  # and skips a comment after the path
        ("<a@b@c.example>", "553"),
        ("", "501"),
        ("<a@b.example> SIZE=x", "501"),
        ("<a@b.example> FOO", "555"),
    ],
)
async def test_mail_from_is_answered_and_recorded_like_aiosmtpd(
    pair: Pair, mail_from: str, expected: str
) -> None:
    seen = []
    for port, recorder in ((pair.ours.port, pair.ours_seen), (pair.stock_port, pair.stock_seen)):
        with anyio.fail_after(10):
            client = await RawClient.open(port)
            code = await client.command(f"MAIL FROM:{mail_from}".encode())
            if code == "250":
                assert (await client.command(f"RCPT TO:<{RCPT}> ".encode())) == "250"
                assert (await client.command(b"DATA")) == "354"
                client.writer.write(b"x\r\n.\r\n")
                assert (await client.reply()) == "250"
            await client.close()
        seen.append((code, recorder.addresses))
    (ours_code, ours_addresses), (stock_code, stock_addresses) = seen
    assert ours_code == stock_code == expected
    assert ours_addresses == stock_addresses
