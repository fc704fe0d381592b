"""SMTP ingress of the local backend (aiosmtpd, RFC 5321), served on the caller's event loop.

Only speaks SMTP: recipients are checked with `is_local_recipient`, the message bytes are handed
to `ingest` and 250 is said only after `ingest` returned (the message is durable by then).

aiosmtpd does the protocol. Two of its per-message steps are replaced because they were most of
its cost under load (bench/README.md, "SMTP ingest"): the address of MAIL FROM / RCPT TO is
matched with one regular expression when it is a plain `<local@domain>` (anything else goes to
aiosmtpd's full RFC 5322 parser), and DATA is read in a few large pieces instead of one
`readuntil` per line. Both keep aiosmtpd's behaviour; tests/local/smtp/test_ingress.py holds them to it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Self

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from mam_mcp.loopback import is_loopback

__all__ = ["IngestCallable", "LocalRecipientCheck", "SmtpIngress"]

logger = logging.getLogger(__name__)

IngestCallable = Callable[[bytes, str, list[str]], Awaitable[object]]
LocalRecipientCheck = Callable[[str], bool | Awaitable[bool]]

# Long lines beyond RFC 5321's 1000 octets are common in app-generated HTML mail; a local dev
# server should take them rather than bounce a signup mail (Mailpit does the same).
LINE_LENGTH_LIMIT = 1_000_000
# aiosmtpd logs every command (addresses included) at INFO and DATA lines at DEBUG on this logger.
AIOSMTPD_LOGGER = "mail.log"
STOP_GRACE_SECONDS = 5.0

# A plain `<dot-atom@domain>` path (RFC 5321 4.1.2 without quoted local parts, source routes or
# address literals): what nearly every client sends. The rest goes to aiosmtpd's parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
_END_OF_DATA = b"\r\n.\r\n"


class _IngressHandler:
    """aiosmtpd handler: one RCPT check and one DATA hand-off per message."""

    def __init__(self, ingest: IngestCallable, is_local_recipient: LocalRecipientCheck) -> None:
        self._ingest = ingest
        self._is_local_recipient = is_local_recipient
        self.in_flight: set[asyncio.Task[None]] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        try:
            verdict = self._is_local_recipient(address)
            known = await verdict if inspect.isawaitable(verdict) else verdict
        except Exception:
            logger.exception("smtp: recipient check failed (peer %s)", _peer(session))
            return "451 4.3.0 Temporary failure checking recipient, try again later"
        if not known:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content if envelope.original_content is not None else b""
        # aiosmtpd reports the null reverse-path of bounces (MAIL FROM:<>) as "<>"; it means no sender.
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        rcpt_tos = list(envelope.rcpt_tos)
        # The ingest runs as its own task: a client hanging up mid-ingest cancels only our wait on
        # `outcome`, never the store transaction. The task fills `outcome` itself as it ends, so
        # the 250 goes out one loop turn after the commit (asyncio.shield would take two).
        outcome: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        task: asyncio.Task[None] = asyncio.ensure_future(self._run_ingest(outcome, raw, mail_from, rcpt_tos))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        try:
            result = await outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            # Temporary failure: the sender keeps the message and retries; never a 250 we can't honour.
            logger.exception(
                "smtp: ingest failed (peer %s, %d bytes, %d rcpts)", _peer(session), len(raw), len(rcpt_tos)
            )
            return "451 4.3.0 Temporary failure storing message, try again later"
        ids = _message_ids(result)
        logger.debug(  # per message: at INFO it cost ~12% of the daemon's time under load
            "smtp: accepted %d bytes for %d rcpts from %s%s",
            len(raw),
            len(rcpt_tos),
            _peer(session),
            f" as {','.join(ids)}" if ids else "",
        )
        return "250 2.0.0 OK: queued" + (f" as {ids[0]}" if len(ids) == 1 else "")

    async def _run_ingest(
        self, outcome: asyncio.Future[object], raw: bytes, mail_from: str, rcpt_tos: list[str]
    ) -> None:
        try:
            result = await self._ingest(raw, mail_from, rcpt_tos)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting session, which answers 451
            if not outcome.done():
                outcome.set_exception(exc)
            else:
                logger.error("smtp: ingest failed after the session ended: %s", type(exc).__name__)
            return
        except BaseException:  # this task itself was cancelled (shutdown): the session must not wait on
            if not outcome.done():
                outcome.cancel()
            raise
        if not outcome.done():
            outcome.set_result(result)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default echoes the exception text to the client; we log it and say little.
        logger.error("smtp: session error %s", type(error).__name__, exc_info=error)
        return "451 4.3.0 Temporary server error, try again later"


class _DataTooBig(Exception):
    """DATA went over the size limit; the rest was read and thrown away."""


class _IngressSMTP(SMTP):
    """aiosmtpd's protocol with a faster address match and DATA reader (see the module doc).

    Registered with its listener so `stop()` can close open sessions.
    """

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(self, handler: _IngressHandler, *, sessions: set[_IngressSMTP], **kwargs: Any) -> None:
        self._deadline = 0.0
        self._timer_armed = False
        super().__init__(handler, **kwargs)
        self._sessions = sessions

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sessions.discard(self)
        super().connection_lost(exc)

    def abort(self) -> None:
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd arms a fresh call_later per command and cancels the last one, and cancelled timers
        # pile up in the loop's heap. One timer per session instead, re-armed when it fires early.
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or not self._timer_armed or handle.when() > self._deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._idle_check)
            self._timer_armed = True

    def _idle_check(self) -> None:
        self._timer_armed = False
        if self.loop.time() < self._deadline:  # there was activity since this timer was armed
            self._timeout_handle = self.loop.call_at(self._deadline, self._idle_check)
            self._timer_armed = True
            return
        self._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: str | bytes) -> None:
        # aiosmtpd's push, without awaiting drain() when the reply already left in full.
        response = (
            status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        )
        self._writer.write(response + b"\r\n")
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():  # type: ignore[attr-defined]
            await self._writer.drain()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.match(arg)
        if match is not None:
            address, rest = match.group(1), arg[match.end() :]
            # Left to aiosmtpd: an encoded word it decodes (`=?utf-8?q?...?=@`), and anything but
            # a space after `>` (it skips a comment there: `<a@b>(note) SIZE=1`).
            plain = not address.startswith("=?") and (not rest or rest[0] == " ")
            if plain and (not self.local_part_limit or address.rindex("@") <= self.local_part_limit):
                return address, rest
        return super()._getaddr(arg)

    async def smtp_DATA(self, arg: str) -> None:
        # The checks and replies of aiosmtpd's smtp_DATA (1.4), with `_read_data` for its line loop.
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await self._read_data()
        except asyncio.CancelledError:
            logger.debug("smtp: connection lost during DATA")
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            self._writer.close()  # the client went away mid-message; nothing to answer
            return
        except _DataTooBig:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> bytes:
        """The message up to the lone `.` line, dot-stuffing undone (RFC 5321 4.5.2).

        Lines end with CRLF, as in aiosmtpd. Fast path, two reads for most mail: up to the first
        CR, then up to the first LF `.` CRLF; a CR before that LF makes it the end of the data.
        Anything else (an empty message, a bare CR or LF next to a `.` line) finishes line by line.
        """
        limit = self.data_size_limit or 0
        data = bytearray()
        over = False  # past the size limit: keep reading to the end, keep only a short tail

        def keep(piece: bytes) -> None:
            nonlocal over
            data.extend(piece)
            if limit and len(data) > limit + len(_END_OF_DATA):
                over = True
            if over:
                del data[: -len(_END_OF_DATA)]

        async def read_until(separator: bytes) -> bytes:
            """Up to and including `separator`; only the first piece is returned (enough for a `.` line)."""
            first: bytes | None = None
            while True:
                try:
                    piece = await self._reader.readuntil(separator)
                    found = True
                except asyncio.LimitOverrunError as exc:  # a long stretch without it: take it in pieces
                    piece = await self._reader.readexactly(exc.consumed)
                    found = False
                if first is None:
                    first = piece
                    if found and piece == b".\r\n":
                        return piece  # a `.` line is never kept; the caller decides what it is
                keep(piece)
                if found:
                    return first

        await read_until(b"\r")
        if data == b".\r":
            data.extend(await self._reader.readexactly(1))
            if data == b".\r\n":
                return b""  # an empty message
        else:
            await read_until(b"\n.\r\n")
            if data.endswith(_END_OF_DATA):
                del data[-3:]  # the `.` line; the CRLF before it ends the last line
                return self._finish_data(data, over, limit)
        # Slow path: first complete a CRLF split by the fast path, then read whole lines.
        while data.endswith(b"\r"):
            keep(await self._reader.readexactly(1))
        line_start = data.endswith(b"\r\n")
        while True:
            line = await read_until(b"\r\n")
            if line == b".\r\n":
                if line_start:
                    return self._finish_data(data, over, limit)
                keep(line)
            line_start = True

    @staticmethod
    def _finish_data(data: bytearray, over: bool, limit: int) -> bytes:
        if over or (limit and len(data) > limit):
            raise _DataTooBig
        content = bytes(data)
        if content.startswith(b"."):
            content = content[1:]
        return content.replace(b"\r\n.", b"\r\n")


class SmtpIngress:
    """The loopback SMTP listener that stores mail for local inboxes.

    `start()`/`stop()` run on the caller's event loop (the store and event hub live there), not in
    aiosmtpd's threaded Controller. `port=0` binds an ephemeral port; read `.port` after `start()`.
    """

    def __init__(
        self,
        *,
        ingest: IngestCallable,
        is_local_recipient: LocalRecipientCheck,
        host: str = "127.0.0.1",
        port: int = 2525,
        max_message_bytes: int = 25 * 1024 * 1024,
        hostname: str = "localhost",
        timeout_seconds: float = 300.0,
    ) -> None:
        self._handler = _IngressHandler(ingest, is_local_recipient)
        self._host = host
        self._requested_port = port
        self._max_message_bytes = max_message_bytes
        self._hostname = hostname  # given, not socket.getfqdn(): that can block for seconds on DNS
        self._timeout_seconds = timeout_seconds
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[_IngressSMTP] = set()
        self.port: int = port

    @property
    def host(self) -> str:
        return self._host

    @property
    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SmtpIngress already started")
        if not is_loopback(self._host):
            logger.warning(
                "smtp: listening on non-loopback address %s; anyone who can reach it can deliver mail",
                self._host,
            )
        aiosmtpd_log = logging.getLogger(AIOSMTPD_LOGGER)
        # Quieted unless the application configured that logger itself (then its choice stands).
        if aiosmtpd_log.level == logging.NOTSET:
            aiosmtpd_log.setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, host=self._host, port=self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("smtp: listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            session.abort()  # a client idling in a session must not hold the shutdown
        if self._handler.in_flight:
            # Let accepted DATA finish storing before the caller closes the store.
            await asyncio.wait(list(self._handler.in_flight), timeout=STOP_GRACE_SECONDS)
        try:
            await asyncio.wait_for(server.wait_closed(), STOP_GRACE_SECONDS)
        except TimeoutError:
            logger.warning("smtp: listener did not close within %.0f s", STOP_GRACE_SECONDS)
        logger.info("smtp: stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _new_session(self) -> _IngressSMTP:
        return _IngressSMTP(
            self._handler,
            sessions=self._sessions,
            data_size_limit=self._max_message_bytes,  # advertised as SIZE, enforced with 552
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="mam-mcp local ESMTP",
            timeout=self._timeout_seconds,
            loop=asyncio.get_running_loop(),
        )


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return str(peer)


def _message_ids(result: object) -> list[str]:
    """Ids for the log line, whatever `ingest` returned (ids, events or objects with an `id`)."""
    items = result if isinstance(result, list | tuple) else [result]
    ids: list[str] = []
    for item in items:
        if isinstance(item, str):
            ids.append(item)
            continue
        message = getattr(item, "message", None)
        candidate = message.get("message_id") if isinstance(message, dict) else getattr(item, "id", None)
        if isinstance(candidate, str):
            ids.append(candidate)
    return ids
