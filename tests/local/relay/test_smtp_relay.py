"""Outbound relay against a real aiosmtpd on an ephemeral port (AUTH PLAIN/LOGIN, STARTTLS, implicit TLS).

TLS certificates are made at test time with `trustme` (a throwaway CA; no files left behind).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mam_mcp.local.relay.smtp_relay import RelayRefused, RelayUrl, SmtpRelay

USER = "relay-user@example.com"
PASSWORD = "p@ss:w/rd%with?odd#chars"
# The far side of some tests takes AUTH without TLS on purpose (smtp:// with credentials, or implicit TLS).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

PASSWORD_IN_URL = "p%40ss%3Aw%2Frd%25with%3Fodd%23chars"
USER_IN_URL = "relay-user%40example.com"

RAW = b"From: agent@mam.localhost\r\nTo: person@example.org\r\nSubject: hi\r\n\r\nHello \xc3\xa9\r\n"


@dataclass
class RelayHandler:
    """The far side: records what it got, answers with scripted codes."""

    received: list[Envelope] = field(default_factory=list)
    rcpt_answers: dict[str, str] = field(default_factory=dict)
    data_answer: str | None = None
    authenticated_as: list[bytes] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_answers:
            return self.rcpt_answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answer is not None:
            return self.data_answer
        self.received.append(envelope)
        return "250 OK queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
        if ok:
            self.authenticated_as.append(auth_data.login)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 235 or 535


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@dataclass
class RunningRelay:
    handler: RelayHandler
    port: int


async def serve(
    handler: RelayHandler, *, server_ssl: ssl.SSLContext | None = None, **smtp_kwargs: Any
) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler, hostname="relay.test", authenticator=handler.authenticate, loop=loop, **smtp_kwargs
        )

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def start_relay() -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(*, server_ssl: ssl.SSLContext | None = None, **smtp_kwargs: Any) -> RunningRelay:
        handler = RelayHandler()
        server, port = await serve(handler, server_ssl=server_ssl, **smtp_kwargs)
        servers.append(server)
        return RunningRelay(handler, port)

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_plain_smtp_without_auth(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}", local_hostname="mam.test")
    with anyio.fail_after(5):
        await relay.send("agent@mam.localhost", ["person@example.org", "second@example.org"], RAW)
    [envelope] = far.handler.received
    assert envelope.mail_from == "agent@mam.localhost"
    assert envelope.rcpt_tos == ["person@example.org", "second@example.org"]
    assert envelope.original_content == RAW


async def test_eight_bit_mail_is_declared_to_a_plain_relay_without_auth(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()  # no STARTTLS and no AUTH: nothing makes the client say EHLO before MAIL
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}", local_hostname="mam.test")
    with anyio.fail_after(5):
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    [envelope] = far.handler.received
    assert "BODY=8BITMIME" in envelope.mail_options


async def test_plain_smtp_with_auth_decodes_user_and_password(start_relay: Callable[..., Any]) -> None:
    far = await start_relay(auth_require_tls=False, auth_required=True)
    relay = SmtpRelay(f"smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{far.port}")
    with anyio.fail_after(5):
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert far.handler.authenticated_as == [USER.encode()]
    assert len(far.handler.received) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_with_auth_plain_and_login(
    start_relay: Callable[..., Any], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, mechanism: str
) -> None:
    excluded = [m for m in ("PLAIN", "LOGIN") if m != mechanism]
    far = await start_relay(
        tls_context=server_tls, require_starttls=True, auth_required=True, auth_exclude_mechanism=excluded
    )
    relay = SmtpRelay(
        f"smtp+starttls://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{far.port}", tls_context=client_tls
    )
    with anyio.fail_after(5):
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert far.handler.authenticated_as == [USER.encode()]
    [envelope] = far.handler.received
    assert envelope.original_content == RAW


async def test_implicit_tls_smtps(
    start_relay: Callable[..., Any], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    far = await start_relay(server_ssl=server_tls, auth_require_tls=False, auth_required=True)
    relay = SmtpRelay(f"smtps://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{far.port}", tls_context=client_tls)
    with anyio.fail_after(5):
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert far.handler.authenticated_as == [USER.encode()]
    assert len(far.handler.received) == 1


async def test_untrusted_certificate_is_a_temporary_failure(
    start_relay: Callable[..., Any], server_tls: ssl.SSLContext
) -> None:
    far = await start_relay(tls_context=server_tls, require_starttls=True)
    relay = SmtpRelay(f"smtp+starttls://127.0.0.1:{far.port}")  # system trust store: our test CA is unknown
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert rejected.value.permanent is False
    assert far.handler.received == []


async def test_wrong_password_is_permanent_and_never_shows_the_password(
    start_relay: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    far = await start_relay(auth_require_tls=False, auth_required=True)
    wrong = "Wr0ng-S3cret%21"
    relay = SmtpRelay(f"smtp://{USER_IN_URL}:{wrong}@127.0.0.1:{far.port}")
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert rejected.value.permanent is True
    assert rejected.value.code == 535
    shown = "\n".join(
        [
            str(rejected.value),
            repr(rejected.value),
            "".join(traceback.format_exception(rejected.value)),
            repr(relay),
            relay.endpoint,
            caplog.text,
        ]
    )
    for form in ("Wr0ng-S3cret!", "Wr0ng-S3cret%21"):
        assert form not in shown
    assert "***" in repr(relay)
    assert USER in repr(relay)


def test_repr_and_parse_errors_hide_the_password() -> None:
    relay = SmtpRelay(f"smtp+starttls://{USER_IN_URL}:{PASSWORD_IN_URL}@mail.example.com")
    assert repr(relay) == f"SmtpRelay(smtp+starttls://{USER}:***@mail.example.com:587)"
    assert PASSWORD not in repr(RelayUrl.parse(f"smtps://u:{PASSWORD_IN_URL}@h"))
    for bad in (
        f"http://u:{PASSWORD_IN_URL}@h",
        f"smtp://u:{PASSWORD_IN_URL}@h:notaport",
        f"smtp://u:{PASSWORD_IN_URL}@",
    ):
        with pytest.raises(ValueError) as error:
            SmtpRelay(bad)
        assert PASSWORD_IN_URL not in str(error.value)
        assert PASSWORD not in str(error.value)


def test_default_ports_by_scheme() -> None:
    assert RelayUrl.parse("smtp://h").port == 25
    assert RelayUrl.parse("smtp+starttls://h").port == 587
    assert RelayUrl.parse("smtps://h").port == 465
    parsed = RelayUrl.parse(f"smtps://{USER_IN_URL}:{PASSWORD_IN_URL}@h:2465")
    assert (parsed.port, parsed.username, parsed.password) == (2465, USER, PASSWORD)


async def test_recipient_refused_5xx_is_permanent(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()
    far.handler.rcpt_answers["gone@example.org"] = "550 5.1.1 User unknown"
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}")
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["gone@example.org"], RAW)
    assert rejected.value.permanent is True
    assert rejected.value.refused == {"gone@example.org": "550 5.1.1 User unknown"}
    assert rejected.value.accepted == ()


async def test_recipient_refused_4xx_is_temporary(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()
    far.handler.rcpt_answers["busy@example.org"] = "450 4.2.1 Mailbox busy"
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}")
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["busy@example.org"], RAW)
    assert rejected.value.permanent is False


async def test_partial_refusal_says_who_got_the_message(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()
    far.handler.rcpt_answers["gone@example.org"] = "550 5.1.1 User unknown"
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}")
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["person@example.org", "gone@example.org"], RAW)
    assert rejected.value.permanent is True
    assert rejected.value.accepted == ("person@example.org",)
    assert set(rejected.value.refused) == {"gone@example.org"}
    assert far.handler.received[0].rcpt_tos == ["person@example.org"]


@pytest.mark.parametrize(
    ("answer", "permanent"), [("554 5.7.1 Spam rejected", True), ("451 4.3.0 Try later", False)]
)
async def test_data_refusal_maps_code_to_permanence(
    start_relay: Callable[..., Any], answer: str, permanent: bool
) -> None:
    far = await start_relay()
    far.handler.data_answer = answer
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}")
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert rejected.value.permanent is permanent
    assert rejected.value.code == int(answer[:3])
    assert answer[4:] in rejected.value.message


async def test_unreachable_relay_is_temporary() -> None:
    probe = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    relay = SmtpRelay(f"smtp://u:{PASSWORD_IN_URL}@127.0.0.1:{port}", timeout_seconds=2)
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["person@example.org"], RAW)
    assert rejected.value.permanent is False
    assert PASSWORD not in str(rejected.value)


async def test_an_address_that_cannot_go_on_the_wire_is_permanent(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}")
    hostile = [
        "victim@example.org>\r\nRCPT TO:<other@example.org",
        "a\r\nb@x.org",
        "bad address",
        "no-at-sign",
        "@x.org",
    ]
    for address in hostile:
        with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
            await relay.send("agent@mam.localhost", ["fine@example.org", address], RAW)
        assert rejected.value.permanent is True
        assert "invalid address" in rejected.value.message
    with pytest.raises(RelayRefused):
        await relay.send("agent@mam.localhost>\r\nX", ["fine@example.org"], RAW)
    assert far.handler.received == []  # nothing went out, not even to the valid recipient


async def test_utf8_addresses_need_a_relay_that_speaks_smtputf8(start_relay: Callable[..., Any]) -> None:
    far = await start_relay()  # aiosmtpd without enable_SMTPUTF8
    relay = SmtpRelay(f"smtp://127.0.0.1:{far.port}")
    with anyio.fail_after(5), pytest.raises(RelayRefused) as rejected:
        await relay.send("agent@mam.localhost", ["jürgen@example.org"], RAW)
    assert rejected.value.permanent is False
    utf8 = await start_relay(enable_SMTPUTF8=True)
    with anyio.fail_after(5):
        await SmtpRelay(f"smtp://127.0.0.1:{utf8.port}").send(
            "agent@mam.localhost", ["jürgen@example.org"], RAW
        )
    assert utf8.handler.received[0].rcpt_tos == ["jürgen@example.org"]
