"""Outbound delivery of the local backend through a configured SMTP relay (aiosmtplib).

`SmtpRelay` implements the backend's `OutboundRelay` protocol: `await relay.send(mail_from,
rcpts, raw)` returns when the relay accepted the message, raises `RelayRefused` when it
answered no (or could not be reached), and `RelayOutcomeUnknown` when the connection failed
after the message itself was handed over (DATA): the relay may have it, so it is not retried.
The relay password never appears in logs, `repr` or exception text.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

__all__ = ["RelayOutcomeUnknown", "RelayRefused", "RelayUrl", "SmtpRelay"]

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class RelayRefused(Exception):
    """The relay did not take the message. `permanent` (5xx) means bounce; otherwise try again later.

    When some recipients were accepted and others refused, `accepted` lists the ones that got the
    message (do not resend to them) and `refused` maps the others to the relay's answer.
    """

    def __init__(
        self,
        permanent: bool,
        message: str,
        *,
        code: int | None = None,
        accepted: tuple[str, ...] = (),
        refused: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.message = message
        self.code = code
        self.accepted = accepted
        self.refused = refused or {}

    def __repr__(self) -> str:
        return f"RelayRefused(permanent={self.permanent}, code={self.code}, message={self.message!r})"

    def reply(self) -> str:
        """What the relay said, in one line: its answer, and each refused recipient's answer."""
        refused = "; ".join(f"{address}: {answer}" for address, answer in list(self.refused.items())[:10])
        return " ".join(f"{self.message} ({refused})".split()) if refused else " ".join(self.message.split())


class RelayOutcomeUnknown(Exception):
    """The connection failed after the message was handed over: the relay may have accepted it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def reply(self) -> str:
        return " ".join(self.message.split())


class _Smtp(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when the message itself starts going over (DATA)."""

    data_started = False
    data_answered = False  # the relay said 250 to the message: anything after (QUIT) does not matter

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        response = await super().data(*args, **kwargs)
        self.data_answered = True
        return response


@dataclass(frozen=True, slots=True)
class RelayUrl:
    """A parsed relay URL: `smtp://host:25`, `smtp+starttls://user:pass@host:587`, `smtps://user:pass@host:465`."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> RelayUrl:
        # Errors name the part that is wrong, never the URL itself (it carries the password).
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(
                f"relay URL scheme must be one of smtp, smtp+starttls, smtps (got {scheme or 'none'!r})"
            )
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError("relay URL has an invalid port") from None
        if not parts.hostname:
            raise ValueError("relay URL has no host")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(scheme=scheme, host=parts.hostname, port=port, username=username, password=password)

    def redacted(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"RelayUrl({self.redacted()})"


class SmtpRelay:
    """Sends raw messages through one SMTP relay; a new connection per message (sends are rare)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self._url = RelayUrl.parse(url)
        self._timeout_seconds = timeout_seconds
        self._tls_context = tls_context  # tests and private relays pass a context trusting their CA
        self._local_hostname = local_hostname or socket.gethostname()  # not getfqdn(): no DNS wait

    @property
    def endpoint(self) -> str:
        """Where mail goes, for logs and `doctor`, without the password."""
        return self._url.redacted()

    def __repr__(self) -> str:
        return f"SmtpRelay({self._url.redacted()})"

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        if not rcpts:
            raise RelayRefused(True, "no recipients")
        # aiosmtplib "cleans" odd addresses (drops CR/LF, cuts at a space) and would send to another
        # mailbox than the one asked for: refuse anything that is not a bare addr-spec instead.
        bad = [
            address
            for address in (*rcpts, *([mail_from] if mail_from else []))
            if not _is_bare_address(address)
        ]
        if bad:
            raise self._rejected(True, f"invalid address: {bad[0][:200]!r}")
        client = _Smtp(
            hostname=self._url.host,
            port=self._url.port,
            username=self._url.username,
            password=self._url.password,
            use_tls=self._url.scheme == "smtps",
            start_tls=self._url.scheme == "smtp+starttls",  # plain smtp:// never upgrades silently
            tls_context=self._tls_context,
            timeout=self._timeout_seconds,
            local_hostname=self._local_hostname,
        )
        errors: dict[str, aiosmtplib.SMTPResponse] = {}
        try:
            async with client:
                if client.is_ehlo_or_helo_needed:  # without TLS or AUTH nothing has said EHLO yet
                    await _greet(client)
                errors, _ = await client.sendmail(
                    mail_from, rcpts, raw, mail_options=self._mail_options(client, mail_from, rcpts, raw)
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}
            permanent = all(r.code >= 500 for r in exc.recipients)
            raise self._rejected(permanent, f"all {len(rcpts)} recipients refused", refused=refused) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._rejected(
                exc.code >= 500, f"relay answered {exc.code} {exc.message}", code=exc.code
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            # The relay lacks something we need (STARTTLS, SMTPUTF8, AUTH): a set-up problem, not a bounce.
            raise self._rejected(False, f"relay cannot take this message: {exc}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if client.data_answered:
                logger.info("relay: connection trouble after the relay took the message: %s", type(exc).__name__)
            elif client.data_started:  # the relay may have the message and its answer got lost
                message = self._redact(
                    f"connection lost after the message was sent, before the relay answered: {type(exc).__name__}: {exc}"
                )
                logger.warning("relay: outcome unknown via %s: %s", self.endpoint, message)
                raise RelayOutcomeUnknown(message) from None
            else:
                # Connection trouble, TLS failures and timeouts before DATA are worth another try later.
                raise self._rejected(False, f"relay unreachable: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # aiosmtplib refuses an address it cannot put on the wire
            raise self._rejected(True, f"invalid address: {exc}") from None
        if errors:
            refused = {address: f"{response.code} {response.message}" for address, response in errors.items()}
            accepted = tuple(r for r in rcpts if r not in errors)
            permanent = all(response.code >= 500 for response in errors.values())
            raise self._rejected(
                permanent,
                f"{len(errors)} of {len(rcpts)} recipients refused",
                accepted=accepted,
                refused=refused,
            )
        logger.info("relay: sent %d bytes to %d rcpts via %s", len(raw), len(rcpts), self.endpoint)

    def _rejected(
        self,
        permanent: bool,
        message: str,
        *,
        code: int | None = None,
        accepted: tuple[str, ...] = (),
        refused: dict[str, str] | None = None,
    ) -> RelayRefused:
        message = self._redact(message)
        refused = {address: self._redact(text) for address, text in (refused or {}).items()}
        logger.warning(
            "relay: %s rejection via %s: %s",
            "permanent" if permanent else "temporary",
            self.endpoint,
            message,
        )
        return RelayRefused(permanent, message, code=code, accepted=accepted, refused=refused)

    def _redact(self, text: str) -> str:
        # A relay could echo credentials back; never let them travel further.
        password = self._url.password
        return text.replace(password, "***") if password else text

    @staticmethod
    def _mail_options(client: aiosmtplib.SMTP, mail_from: str, rcpts: list[str], raw: bytes) -> list[str]:
        options: list[str] = []
        if not raw.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in (mail_from, *rcpts)):
            options.append("SMTPUTF8")
        return options


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO before MAIL, so `_mail_options` sees the relay's extensions (8BITMIME); HELO for a relay without ESMTP."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


def _is_bare_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    if not (at and local and domain):
        return False
    return not any(ch.isspace() or ch in "<>" or ord(ch) < 32 or ord(ch) == 127 for ch in address)
