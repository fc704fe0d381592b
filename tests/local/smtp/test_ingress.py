"""SMTP ingress: real aiosmtpd on an ephemeral loopback port, talked to by a real SMTP client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiosmtplib
import anyio
import httpx2
import pytest
from httpx2.websockets import ASGIWebSocketTransport

from mam_mcp.local.api.app import create_app
from mam_mcp.local.api.websocket import websocket_routes
from mam_mcp.local.events.hub import EventHub
from mam_mcp.local.smtp.ingress import SmtpIngress
from mam_mcp.local.webhooks.dispatcher import WebhookDispatcher
from mam_mcp.signatures import verify_signature
from tests.local.conftest import LocalBackendFixture
from tests.local.webhook_receiver import serve_receiver

LOCAL = {"agent@mam.localhost", "other@mam.localhost"}

MESSAGE = (
    b"From: App <noreply@app.example>\r\n"
    b"To: agent@mam.localhost\r\n"
    b"Subject: Your code is 483921\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello \xc3\xa9l\xc3\xa8ve,\r\n"
    b".a line that starts with a dot\r\n"
    b"Your code: 483921\r\n"
)


@dataclass
class RecordingIngest:
    """Stands in for LocalBackend.ingest: records calls, can be gated or made to fail."""

    calls: list[tuple[bytes, str, list[str]]] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    failures_left: int = 0

    async def __call__(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> list[str]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError("database is locked")
        self.calls.append((raw, mail_from, rcpt_tos))
        return [f"msg_{len(self.calls)}"]


def is_local(address: str) -> bool:
    return address.lower() in LOCAL


async def is_local_async(address: str) -> bool:
    await asyncio.sleep(0)
    return is_local(address)


@pytest.fixture
def ingest() -> RecordingIngest:
    return RecordingIngest()


async def start_ingress(
    ingest: Callable[[bytes, str, list[str]], Awaitable[object]],
    *,
    check: Callable[[str], object] = is_local,
    max_message_bytes: int = 1024 * 1024,
) -> SmtpIngress:
    ingress = SmtpIngress(
        ingest=ingest,
        is_local_recipient=check,  # type: ignore[arg-type]
        port=0,
        max_message_bytes=max_message_bytes,
    )
    await ingress.start()
    return ingress


@pytest.fixture
async def ingress(ingest: RecordingIngest) -> AsyncIterator[SmtpIngress]:
    server = await start_ingress(ingest)
    try:
        yield server
    finally:
        await server.stop()


def client_for(ingress: SmtpIngress) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=ingress.port, start_tls=False, timeout=5)


async def test_binds_an_ephemeral_loopback_port(ingress: SmtpIngress) -> None:
    assert ingress.port > 0
    assert ingress.host == "127.0.0.1"
    assert ingress.is_serving


async def test_delivers_exact_bytes_envelope_and_answers_250(
    ingress: SmtpIngress, ingest: RecordingIngest
) -> None:
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            errors, response = await client.sendmail("noreply@app.example", ["agent@mam.localhost"], MESSAGE)
    assert errors == {}
    assert response.startswith("2.0.0 OK")
    assert "msg_1" in response
    [(raw, mail_from, rcpts)] = ingest.calls
    assert raw == MESSAGE  # dot-stuffing undone, 8-bit bytes kept as sent
    assert mail_from == "noreply@app.example"
    assert rcpts == ["agent@mam.localhost"]


async def test_null_sender_of_a_bounce_is_an_empty_mail_from(
    ingress: SmtpIngress, ingest: RecordingIngest
) -> None:
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            await client.ehlo()
            await client.mail("")
            await client.rcpt("agent@mam.localhost")
            await client.data(MESSAGE)
    assert ingest.calls[0][1:] == ("", ["agent@mam.localhost"])


async def test_says_250_only_after_ingest_returned(ingress: SmtpIngress, ingest: RecordingIngest) -> None:
    ingest.gate = asyncio.Event()
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            send = asyncio.create_task(client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE))
            await ingest.entered.wait()
            await asyncio.sleep(0.05)  # give a premature 250 the chance to arrive (it must not)
            assert not send.done()
            assert ingest.calls == []
            ingest.gate.set()
            errors, _ = await send
    assert errors == {}
    assert len(ingest.calls) == 1


async def test_unknown_recipient_gets_550_5_1_1(ingress: SmtpIngress, ingest: RecordingIngest) -> None:
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            await client.ehlo()
            await client.mail("a@app.example")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt("nobody@mam.localhost")
    assert refused.value.code == 550
    assert refused.value.message.startswith("5.1.1 No inbox has this address")  # says why, and what to do
    assert "catch-all" in refused.value.message
    assert ingest.calls == []


async def test_mixed_recipients_deliver_only_to_local_ones(
    ingress: SmtpIngress, ingest: RecordingIngest
) -> None:
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            errors, _ = await client.sendmail(
                "a@app.example",
                ["agent@mam.localhost", "stranger@elsewhere.example", "OTHER@mam.localhost"],
                MESSAGE,
            )
    assert set(errors) == {"stranger@elsewhere.example"}
    assert errors["stranger@elsewhere.example"].code == 550
    assert ingest.calls[0][2] == ["agent@mam.localhost", "OTHER@mam.localhost"]


async def test_all_recipients_unknown_refuses_the_message(
    ingress: SmtpIngress, ingest: RecordingIngest
) -> None:
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await client.sendmail("a@app.example", ["x@elsewhere.example"], MESSAGE)
    assert ingest.calls == []


async def test_async_recipient_check_is_awaited(ingest: RecordingIngest) -> None:
    server = await start_ingress(ingest, check=is_local_async)
    try:
        with anyio.fail_after(5):
            async with client_for(server) as client:
                errors, _ = await client.sendmail(
                    "a@app.example", ["agent@mam.localhost", "no@x.example"], MESSAGE
                )
        assert set(errors) == {"no@x.example"}
        assert ingest.calls[0][2] == ["agent@mam.localhost"]
    finally:
        await server.stop()


async def test_failing_recipient_check_is_a_temporary_451(ingest: RecordingIngest) -> None:
    def broken(address: str) -> bool:
        raise RuntimeError("store closed")

    server = await start_ingress(ingest, check=broken)
    try:
        with anyio.fail_after(5):
            async with client_for(server) as client:
                await client.ehlo()
                await client.mail("a@app.example")
                with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                    await client.rcpt("agent@mam.localhost")
        assert refused.value.code == 451
        assert refused.value.message.startswith("4.3.0")
    finally:
        await server.stop()


async def test_size_is_advertised(ingest: RecordingIngest) -> None:
    server = await start_ingress(ingest, max_message_bytes=4096)
    try:
        with anyio.fail_after(5):
            async with client_for(server) as client:
                await client.ehlo()
                assert client.supports_extension("size")
                assert client.esmtp_extensions["size"] == "4096"
    finally:
        await server.stop()


async def test_declared_size_over_limit_is_refused_with_552(ingest: RecordingIngest) -> None:
    server = await start_ingress(ingest, max_message_bytes=4096)
    try:
        with anyio.fail_after(5):
            async with client_for(server) as client:
                await client.ehlo()
                response = await client.execute_command(b"MAIL", b"FROM:<a@app.example>", b"SIZE=5000")
        assert response.code == 552
    finally:
        await server.stop()


async def test_data_over_limit_is_refused_with_552_and_not_stored(ingest: RecordingIngest) -> None:
    server = await start_ingress(ingest, max_message_bytes=4096)
    big = MESSAGE + b"x" * 76 + b"\r\n"
    big = big * 100  # ~10 KB, with the client not declaring SIZE
    try:
        with anyio.fail_after(5):
            async with client_for(server) as client:
                await client.ehlo()
                await client.mail("a@app.example")
                await client.rcpt("agent@mam.localhost")
                with pytest.raises(aiosmtplib.SMTPDataError) as too_big:
                    await client.data(big)
                # The session stays usable after the refusal.
                errors, _ = await client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE)
        assert too_big.value.code == 552
        assert errors == {}
        assert [call[0] for call in ingest.calls] == [MESSAGE]
    finally:
        await server.stop()


async def test_ingest_failure_is_451_and_never_250(ingress: SmtpIngress, ingest: RecordingIngest) -> None:
    ingest.failures_left = 1
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            with pytest.raises(aiosmtplib.SMTPDataError) as failed:
                await client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE)
            # The sender retries, on the same connection, and succeeds.
            errors, _ = await client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE)
    assert failed.value.code == 451
    assert failed.value.message.startswith("4.3.0")
    assert "database is locked" not in failed.value.message
    assert errors == {}
    assert len(ingest.calls) == 1


async def test_long_lines_are_accepted(ingress: SmtpIngress, ingest: RecordingIngest) -> None:
    html_line = b"<p>" + b"a" * 20_000 + b"</p>\r\n"
    message = b"Subject: long\r\nContent-Type: text/html\r\n\r\n" + html_line
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            errors, _ = await client.sendmail("a@app.example", ["agent@mam.localhost"], message)
    assert errors == {}
    assert ingest.calls[0][0] == message


async def raw_session(port: int, lines: list[bytes]) -> bytes:
    """Writes raw bytes to the listener and returns whatever it answered (bounded in time)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for line in lines:
            writer.write(line)
        await writer.drain()
        received = b""
        with anyio.move_on_after(1):
            while chunk := await reader.read(65536):
                received += chunk
        return received
    finally:
        writer.close()


async def test_malformed_input_never_kills_the_listener(
    ingress: SmtpIngress, ingest: RecordingIngest
) -> None:
    with anyio.fail_after(15):
        garbage = await raw_session(ingress.port, [b"\x00\xff\xfe garbage\r\n", b"HELO\r\n", b"QUIT\r\n"])
        assert garbage.startswith(b"220 ")
        long_command = await raw_session(ingress.port, [b"EHLO " + b"x" * 100_000 + b"\r\n", b"QUIT\r\n"])
        assert b"500" in long_command
        bad_sequence = await raw_session(
            ingress.port,
            [b"DATA\r\n", b"RCPT TO:<agent@mam.localhost>\r\n", b"MAIL FROM:<<<>>>\r\n", b"QUIT\r\n"],
        )
        assert b"503" in bad_sequence
        # A client that hangs up in the middle of DATA.
        reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
        writer.write(
            b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<agent@mam.localhost>\r\nDATA\r\nSubject: half\r\n"
        )
        await writer.drain()
        await reader.readuntil(b"354")
        writer.close()
        # ...and the listener still takes mail.
        async with client_for(ingress) as client:
            errors, _ = await client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE)
    assert errors == {}
    assert [call[0] for call in ingest.calls] == [MESSAGE]


async def test_stop_closes_idle_client_sessions(ingest: RecordingIngest) -> None:
    server = await start_ingress(ingest)
    client = client_for(server)
    await client.connect()
    await client.ehlo()
    with anyio.fail_after(5):
        await server.stop()
    assert not server.is_serving
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
    client.close()


async def test_stop_waits_for_an_accepted_message_to_be_stored(ingest: RecordingIngest) -> None:
    ingest.gate = asyncio.Event()
    server = await start_ingress(ingest)
    client = client_for(server)
    await client.connect()
    send = asyncio.create_task(client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE))
    with anyio.fail_after(5):
        await ingest.entered.wait()
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # the ingest in flight holds the stop
        ingest.gate.set()
        await stopping
    assert len(ingest.calls) == 1  # stored even though the session was torn down
    with pytest.raises(aiosmtplib.SMTPException):
        await send
    client.close()


async def test_a_client_hanging_up_mid_ingest_does_not_cancel_it(
    ingress: SmtpIngress, ingest: RecordingIngest
) -> None:
    ingest.gate = asyncio.Event()
    with anyio.fail_after(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
        for line in (b"EHLO x", b"MAIL FROM:<a@app.example>", b"RCPT TO:<agent@mam.localhost>", b"DATA"):
            writer.write(line + b"\r\n")
        writer.write(MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n")  # dot-stuffed
        await ingest.entered.wait()
        writer.transport.abort()  # gone before the 250
        await asyncio.sleep(0.05)  # the session notices and its handler is cancelled
        ingest.gate.set()
        while not ingest.calls:
            await asyncio.sleep(0.01)
    assert ingest.calls[0][0] == MESSAGE
    assert ingress.is_serving  # and the listener goes on


async def test_idle_sessions_time_out_and_busy_ones_do_not(ingest: RecordingIngest) -> None:
    server = SmtpIngress(ingest=ingest, is_local_recipient=is_local, port=0, timeout_seconds=0.3)
    await server.start()
    try:
        with anyio.fail_after(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert (await reader.readline()).startswith(b"220")
            for _ in range(8):  # 0.7 s of activity, longer than the timeout
                await asyncio.sleep(0.1)
                writer.write(b"NOOP\r\n")
                assert (await reader.readline()).startswith(b"250")
            idle_from = asyncio.get_running_loop().time()
            while await reader.read(1024):  # aiosmtpd says 421 and closes
                pass
            idle_for = asyncio.get_running_loop().time() - idle_from
            writer.close()
        assert 0.25 <= idle_for < 2.0
    finally:
        await server.stop()


async def test_logs_carry_ids_not_content(
    ingress: SmtpIngress, ingest: RecordingIngest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # a daemon logs at INFO; per-message lines are at DEBUG
    caplog.set_level(logging.DEBUG, logger="mam_mcp.local.smtp.ingress")
    ingest.failures_left = 1
    with anyio.fail_after(5):
        async with client_for(ingress) as client:
            with pytest.raises(aiosmtplib.SMTPDataError):
                await client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE)
            await client.sendmail("a@app.example", ["agent@mam.localhost"], MESSAGE)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name == "mam_mcp.local.smtp.ingress")
    assert "msg_1" in ours
    everything = "\n".join(r.getMessage() for r in caplog.records)  # aiosmtpd's own INFO lines included
    for secret_ish in ("483921", "Your code", "agent@mam.localhost", "a@app.example"):
        assert secret_ish not in everything


# --- end to end through the real backend (the `local_backend` fixture) -----------------------------


async def test_mail_over_smtp_reaches_rest_websocket_and_a_signed_webhook(
    local_backend: LocalBackendFixture,
) -> None:
    backend, _, tenant_key = local_backend
    hub = EventHub()
    backend.add_event_sink(hub.publish)
    dispatcher = WebhookDispatcher(
        backend.config.model_copy(update={"webhook_retry_base_seconds": 0.05}),
        backend.store.outbox,
        destination=backend.webhook_destination,
    )
    backend.add_outbox_listener(dispatcher.wake)
    app = create_app(
        backend,
        extra_routes=websocket_routes(
            hub, authenticate=backend.authenticate, inbox_owner=backend.inbox_owner, ping_interval=3600
        ),
    )
    server = SmtpIngress(ingest=backend.ingest, is_local_recipient=backend.is_local_recipient, port=0)
    await server.start()
    await dispatcher.start()
    try:
        async with (
            serve_receiver() as receiver,
            ASGIWebSocketTransport(app) as transport,
            httpx2.AsyncClient(
                transport=transport, base_url="http://local.test", headers={"X-API-Key": tenant_key}
            ) as api,
        ):
            with anyio.fail_after(20):
                inbox = (await api.post("/v1/inboxes", json={"username": "scout"})).json()
                hook = (
                    await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["message.received"]})
                ).json()
                async with api.websocket("/v1/ws", keepalive_ping_interval_seconds=None) as ws:
                    assert json.loads(await ws.receive_text())["type"] == "connected"
                    await ws.send_text(json.dumps({"type": "subscribe", "inbox_ids": [inbox["id"]]}))
                    assert json.loads(await ws.receive_text())["type"] == "subscribed"

                    async with aiosmtplib.SMTP(
                        hostname="127.0.0.1", port=server.port, start_tls=False
                    ) as smtp:
                        errors, response = await smtp.sendmail(
                            "noreply@app.example", [inbox["email"], "nobody@" + inbox["domain"]], MESSAGE
                        )
                    assert set(errors) == {"nobody@" + inbox["domain"]}  # 550 for the unknown mailbox
                    assert response.startswith("2.0.0")

                    frame = json.loads(await ws.receive_text())
                assert frame["type"] == "event" and frame["event_type"] == "message.received"
                message = frame["message"]
                assert message["inbox_id"] == inbox["id"]
                assert message["subject"] == "Your code is 483921"
                assert "483921" in message["plain_body"]

                await receiver.wait_for(1)
                [posted] = receiver.requests
                assert verify_signature(hook["secret"], posted.body, posted.headers["x-mam-signature"])
                payload = json.loads(posted.body)
                assert (payload["event"], payload["inboxId"], payload["messageId"]) == (
                    "message.received",
                    inbox["id"],
                    message["message_id"],
                )

                listed = (await api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"]
                assert [m["id"] for m in listed] == [message["message_id"]]
    finally:
        await dispatcher.stop()
        await server.stop()
