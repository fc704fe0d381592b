"""Large mail over real SMTP: spooled to a file as it arrives, stored byte-exact, and a cap on how
many large messages are received and stored at once (the excess hears 451 4.3.2, then a retry works).

Thresholds are scaled down (large = 64 KB, spooled past 16 KB) so the messages stay small; the
memory figures themselves are measured by bench/large_mail.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio
import httpx2
import pytest

from mam_mcp.local.mime.source import RawMessage, SpooledMessage
from mam_mcp.local.smtp.ingress import SmtpIngress
from tests.local.conftest import LocalBackendFixture
from tests.local.daemon_process import daemon_config, daemon_process

LARGE = 64 * 1024
SPOOL_AFTER = 16 * 1024
RCPT = "agent@mam.localhost"


def message(size: int, tag: str, *, to: str = RCPT) -> tuple[bytes, bytes]:
    """(raw, attachment): a multipart mail of about `size` bytes, mostly one base64 attachment.
    Its text part has lines starting with a dot (dot-stuffed on the wire, undone on arrival)."""
    attachment = os.urandom(max(1, (size - 600) * 3 // 4 // 78 * 76))
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    raw = (
        f"From: App <noreply@app.example>\r\nTo: {to}\r\nSubject: Report {tag}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        f"--b0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n.first line\r\n..second\r\nReport {tag}.\r\n"
        '--b0\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="r.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + encoded + b"--b0--\r\n"
    return raw, attachment


@dataclass
class GatedIngest:
    """Records what arrived (as bytes) and whether it came spooled; holds each call until `gate` opens."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[bytes] = field(default_factory=list)
    spooled: list[SpooledMessage] = field(default_factory=list)

    async def __call__(self, raw: RawMessage, mail_from: str, rcpt_tos: list[str]) -> list[str]:
        self.entered.set()
        await self.gate.wait()
        if isinstance(raw, SpooledMessage):
            self.spooled.append(raw)
            self.received.append(raw.read_all())
        else:
            self.received.append(raw)
        return [f"msg_{len(self.received)}"]


@pytest.fixture
async def gated() -> AsyncIterator[tuple[SmtpIngress, GatedIngest]]:
    ingest = GatedIngest()
    server = SmtpIngress(
        ingest=ingest,
        is_local_recipient=lambda address: address == RCPT,
        port=0,
        large_message_bytes=LARGE,
        large_ingest_concurrency=1,
        spool_after_bytes=SPOOL_AFTER,
    )
    await server.start()
    try:
        yield server, ingest
    finally:
        ingest.gate.set()
        await server.stop()


async def send(server: SmtpIngress, raw: bytes) -> str:
    """MAIL, RCPT, DATA without a SIZE parameter (aiosmtplib's sendmail would declare one): the
    server learns the size only as DATA streams past."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False, timeout=30) as client:
        await client.mail("noreply@app.example")
        await client.rcpt(RCPT)
        return (await client.data(raw)).message


async def test_with_a_cap_of_one_a_second_large_message_hears_451_and_its_retry_is_stored(
    gated: tuple[SmtpIngress, GatedIngest],
) -> None:
    server, ingest = gated
    first, second = message(3 * LARGE, "one")[0], message(3 * LARGE, "two")[0]
    with anyio.fail_after(30):
        first_sent = asyncio.ensure_future(send(server, first))
        await ingest.entered.wait()  # the first holds the only slot while it is stored
        assert server.large_ingests.in_use == 1
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(server, second)
        assert refused.value.code == 451 and "4.3.2" in refused.value.message
        small = b"From: a@app.example\r\nSubject: small\r\n\r\nsmall mail is never capped\r\n"
        ingest.gate.set()
        assert "msg_1" in await first_sent
        assert await send(server, second)  # the retry
        assert await send(server, small)
    assert ingest.received == [first, second, small]  # the refused attempt stored nothing
    assert len(ingest.spooled) == 2  # both large ones arrived through a file
    assert server.large_ingests.in_use == 0
    for spooled in ingest.spooled:  # the ingress closed each file once stored
        with pytest.raises(ValueError):
            spooled.read_all()


async def test_a_declared_size_over_the_threshold_is_refused_at_mail_from_while_the_cap_is_reached(
    gated: tuple[SmtpIngress, GatedIngest],
) -> None:
    server, ingest = gated
    with anyio.fail_after(30):
        held = asyncio.ensure_future(send(server, message(2 * LARGE, "held")[0]))
        await ingest.entered.wait()
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False) as client:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await client.mail("noreply@app.example", options=[f"SIZE={3 * LARGE}"])
            assert refused.value.code == 451 and "4.3.2" in refused.value.message
            # Under the threshold, a declared size changes nothing.
            reply = await client.mail("noreply@app.example", options=[f"SIZE={LARGE // 2}"])
            assert reply.code == 250
        ingest.gate.set()
        await held
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False) as client:
            reply = await client.mail("noreply@app.example", options=[f"SIZE={3 * LARGE}"])
            assert reply.code == 250  # a slot is free again


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes | None) -> bytes:
    if line is not None:
        writer.write(line + b"\r\n")
    while (reply := await reader.readline())[3:4] == b"-":
        pass
    return reply


async def _until(condition: Callable[[], bool]) -> bool:
    for _ in range(300):  # bounded: the server acts on its next read
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_client_gone_mid_data_gives_its_slot_back(gated: tuple[SmtpIngress, GatedIngest]) -> None:
    server, ingest = gated
    ingest.gate.set()
    raw = message(2_000_000, "cut")[0]
    with anyio.fail_after(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for line in (None, b"EHLO test.example", b"MAIL FROM:<a@app.example>", f"RCPT TO:<{RCPT}>".encode()):
            await _command(reader, writer, line)
        assert (await _command(reader, writer, b"DATA")).startswith(b"354")
        writer.write(raw[:1_300_000])  # past the threshold (DATA is read 1 MB at a time): it takes the slot ...
        await writer.drain()
        assert await _until(lambda: server.large_ingests.in_use == 1)
        writer.close()  # ... and hangs up
        await writer.wait_closed()
        assert await _until(lambda: server.large_ingests.in_use == 0)
        assert await send(server, raw)  # the slot is free: a whole message gets through
    assert ingest.received == [raw]


async def test_a_spool_that_cannot_be_written_is_a_451_and_the_session_goes_on(tmp_path: Path) -> None:
    ingest = GatedIngest()
    ingest.gate.set()
    server = SmtpIngress(
        ingest=ingest, is_local_recipient=lambda address: address == RCPT, port=0,
        spool_after_bytes=SPOOL_AFTER, spool_dir=tmp_path / "gone",  # no such directory
    )  # fmt: skip
    await server.start()
    try:
        with anyio.fail_after(30):
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False) as client:
                await client.mail("noreply@app.example")
                await client.rcpt(RCPT)
                with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                    await client.data(message(3 * SPOOL_AFTER, "lost")[0])
                assert refused.value.code == 451
                small = b"Subject: small\r\n\r\nkept in memory\r\n"
                await client.mail("noreply@app.example")
                await client.rcpt(RCPT)
                assert (await client.data(small)).code == 250  # the same session, in step
    finally:
        await server.stop()
    assert ingest.received == [small]
    assert server.large_ingests.in_use == 0


async def test_large_mail_through_the_backend_is_stored_byte_exact_with_its_attachment(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient
) -> None:
    backend, _, _ = local_backend
    inbox = (await local_api.post("/v1/inboxes", json={"username": "big"})).json()
    raw, attachment = message(2_200_000, "stored", to=inbox["email"])  # its attachment goes in by blob I/O too
    server = SmtpIngress(
        ingest=backend.ingest, is_local_recipient=backend.is_local_recipient, port=0,
        large_message_bytes=LARGE, spool_after_bytes=SPOOL_AFTER, spool_dir=backend.config.data_dir,
    )  # fmt: skip
    await server.start()
    try:
        with anyio.fail_after(30):
            _, reply = await aiosmtplib.send(
                raw, sender="noreply@app.example", recipients=[inbox["email"]], hostname="127.0.0.1", port=server.port
            )
    finally:
        await server.stop()
    assert reply.startswith("2.0.0")
    [listed] = (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"]
    base = f"/v1/inboxes/{inbox['id']}/messages/{listed['id']}"
    assert (await local_api.get(base + "/raw")).content == raw
    message_row = (await local_api.get(base)).json()
    assert message_row["subject"] == "Report stored"
    assert message_row["plainBody"] == ".first line\r\n..second\r\nReport stored."  # as sent: the wire's stuffing undone
    [meta] = (await local_api.get(base + "/attachments")).json()["attachments"]
    downloaded = await local_api.get(base + f"/attachments/{meta['id']}")
    assert downloaded.content == attachment
    assert [p.name for p in backend.config.data_dir.iterdir() if p.name.startswith("tmp")] == []


async def test_the_daemon_applies_its_configured_cap(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "local", large_message_bytes=LARGE, large_ingest_concurrency=1)
    async with daemon_process(config) as daemon:
        async with daemon.client() as api:
            inbox = (await api.post("/v1/inboxes", json={"username": "big"})).json()
        raw = message(2_000_000, "held", to=inbox["email"])[0]
        # DATA is read 1 MB at a time (the stream's limit) while no end is in sight: send past that.
        held_back = 1_300_000
        wire = raw.replace(b"\r\n.", b"\r\n..")  # dot-stuffed, as a client sends it
        with anyio.fail_after(60):
            holder = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
            prober = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
            for line in (None, b"EHLO test.example", b"MAIL FROM:<a@app.example>", f"RCPT TO:<{inbox['email']}>".encode()):
                await _command(*holder, line)
            assert (await _command(*holder, b"DATA")).startswith(b"354")
            holder[1].write(wire[:held_back])  # past the threshold: the daemon gives it the only slot
            await holder[1].drain()
            await _command(*prober, None)
            await _command(*prober, b"EHLO test.example")
            for _ in range(300):  # until the daemon has read that far (bounded)
                reply = await _command(*prober, f"MAIL FROM:<b@app.example> SIZE={3 * LARGE}".encode())
                if not reply.startswith(b"250"):
                    break
                await _command(*prober, b"RSET")
                await asyncio.sleep(0.05)
            assert reply.startswith(b"451 4.3.2"), reply
            holder[1].write(wire[held_back:] + b".\r\n")
            assert (await _command(*holder, None)).startswith(b"250")
            assert (await _command(*prober, f"MAIL FROM:<b@app.example> SIZE={3 * LARGE}".encode())).startswith(b"250")
            for _, writer in (holder, prober):
                writer.close()
        async with daemon.client() as api:
            [stored] = (await api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"]
            assert (await api.get(f"/v1/inboxes/{inbox['id']}/messages/{stored['id']}/raw")).content == raw


async def test_a_spooled_mail_to_two_inboxes_sent_twice_is_stored_once_and_read_back_byte_exact(
    local_backend: LocalBackendFixture, local_api: httpx2.AsyncClient
) -> None:
    backend, _, _ = local_backend
    inboxes = [(await local_api.post("/v1/inboxes", json={"username": name})).json() for name in ("one", "two")]
    rcpts = [inbox["email"] for inbox in inboxes]
    raw, _ = message(200_000, "twice", to=rcpts[0])
    raw = raw.replace(b"Subject:", b"Message-ID: <twice@app.example>\r\nSubject:", 1)
    handed: list[RawMessage] = []

    async def ingest(content: RawMessage, mail_from: str, rcpt_tos: list[str]) -> object:
        handed.append(content)
        return await backend.ingest(content, mail_from, rcpt_tos)

    server = SmtpIngress(
        ingest=ingest, is_local_recipient=backend.is_local_recipient, port=0,
        large_message_bytes=LARGE, spool_after_bytes=SPOOL_AFTER, spool_dir=backend.config.data_dir,
    )  # fmt: skip
    await server.start()
    try:
        with anyio.fail_after(30):
            for _ in range(2):  # the second time: a sender's retry after a lost 250
                _, reply = await aiosmtplib.send(
                    raw, sender="noreply@app.example", recipients=rcpts, hostname="127.0.0.1", port=server.port
                )
                assert reply.startswith("2.0.0")
    finally:
        await server.stop()

    def stored(c: Any) -> tuple[list[Any], list[Any]]:
        sources = [(r[0], r[1]) for r in c.execute("SELECT length(raw), tail FROM raw_sources")]
        return sources, [r[0] for r in c.execute("SELECT digest FROM inbound_digests")]

    sources, digests = await backend.store.db.read(stored)
    assert sources == [(len(raw), None)]  # one raw source, whole (never split), shared by both copies
    assert digests == [hashlib.sha256(raw).hexdigest()] * 2
    for inbox in inboxes:
        [listed] = (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"]
        assert (await local_api.get(f"/v1/inboxes/{inbox['id']}/messages/{listed['id']}/raw")).content == raw
    assert [p.name for p in backend.config.data_dir.iterdir() if p.name.startswith("tmp")] == []
    assert len(handed) == 2 and all(isinstance(content, SpooledMessage) for content in handed)
    for content in handed:  # each spool file closed once its mail was stored (or found stored before)
        with pytest.raises(ValueError, match="closed file"):
            content.head(1)
