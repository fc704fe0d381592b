"""SMTP ingress of the local backend (aiosmtpd, RFC 5321), served on the caller's event loop.

Only speaks SMTP: recipients are checked with `is_local_recipient`, the message bytes are handed
to `ingest` and 250 is said only after `ingest` returned (the message is durable by then).

aiosmtpd does the protocol. Two of its per-message steps are replaced because they were most of
its cost under load (bench/README.md, "SMTP ingest"): the address of MAIL FROM / RCPT TO is
matched with one regular expression when it is a plain `<local@domain>` (anything else goes to
aiosmtpd's full RFC 5322 parser), and DATA is read in a few large pieces instead of one
`readuntil` per line. Both keep aiosmtpd's behaviour; tests/local/smtp/test_ingress.py holds them to it.

Large mail (issue 14, item 5): DATA past `spool_after_bytes` is written to an unnamed temporary
file as it arrives (dot-stuffing undone on the way) and handed to `ingest` as a `SpooledMessage`,
never as one buffer. At most `large_ingest_concurrency` messages over `large_message_bytes` are
received and stored at once: one more is read to its end, kept nowhere, and answered
`451 4.3.2` (try again later); a sender that declares such a SIZE in MAIL FROM hears it there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from mam_mcp.local.mime.source import RawMessage, SpooledMessage
from mam_mcp.loopback import is_loopback

__all__ = ["BUSY_REPLY", "IngestCallable", "LargeIngestSlots", "LocalRecipientCheck", "SmtpIngress"]

logger = logging.getLogger(__name__)

IngestCallable = Callable[[RawMessage, str, list[str]], Awaitable[object]]
LocalRecipientCheck = Callable[[str], bool | Awaitable[bool]]

# Long lines beyond RFC 5321's 1000 octets are common in app-generated HTML mail; a local dev
# server should take them rather than bounce a signup mail (Mailpit does the same).
LINE_LENGTH_LIMIT = 1_000_000
# aiosmtpd logs every command (addresses included) at INFO and DATA lines at DEBUG on this logger.
AIOSMTPD_LOGGER = "mail.log"
STOP_GRACE_SECONDS = 5.0
SPOOL_AFTER_BYTES = 1024 * 1024  # DATA past this goes to a temporary file as it arrives
FLUSH_BYTES = 256 * 1024  # what is written to that file at a time
LARGE_MESSAGE_BYTES = 8 * 1024 * 1024
LARGE_INGEST_CONCURRENCY = 2
BUSY_REPLY = "451 4.3.2 Too many large messages arriving at once, try again later"
SPOOL_FAILED_REPLY = "451 4.3.0 Temporary failure storing message, try again later"

# A plain `<dot-atom@domain>` path (RFC 5321 4.1.2 without quoted local parts, source routes or
# address literals): what nearly every client sends. The rest goes to aiosmtpd's parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
_END_OF_DATA = b"\r\n.\r\n"


class _IngressHandler:
    """aiosmtpd handler: one RCPT check and one DATA hand-off per message."""

    def __init__(
        self, ingest: IngestCallable, is_local_recipient: LocalRecipientCheck, slots: LargeIngestSlots
    ) -> None:
        self._ingest = ingest
        self._is_local_recipient = is_local_recipient
        self.slots = slots
        self.in_flight: set[asyncio.Task[None]] = set()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # A declared SIZE over the large threshold while every slot is taken: refuse before the bytes come.
        size = _declared_size(mail_options)
        if size is not None and size > self.slots.large_after_bytes and not self.slots.available:
            logger.info("smtp: MAIL with SIZE=%d refused, large ingests at the cap (peer %s)", size, _peer(session))
            return BUSY_REPLY
        envelope.mail_from = address  # what aiosmtpd does without a MAIL hook
        envelope.mail_options.extend(mail_options)
        return "250 OK"

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
            # Said so an app's test failure explains itself: nothing by this name here, and how to add it.
            return "550 5.1.1 No inbox has this address on this mam-mcp backend (create it, or set a catch-all)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        received = server.take_received() if isinstance(server, _IngressSMTP) else None
        if received is None:  # not read by our DATA reader (never the case with SmtpIngress)
            received = _Received(envelope.original_content or b"")
        raw = received.content
        # aiosmtpd reports the null reverse-path of bounces (MAIL FROM:<>) as "<>"; it means no sender.
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        rcpt_tos = list(envelope.rcpt_tos)
        # The ingest runs as its own task: a client hanging up mid-ingest cancels only our wait on
        # `outcome`, never the store transaction. The task fills `outcome` itself as it ends, so
        # the 250 goes out one loop turn after the commit (asyncio.shield would take two).
        outcome: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        task: asyncio.Task[None] = asyncio.ensure_future(self._run_ingest(outcome, received, mail_from, rcpt_tos))
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
        self, outcome: asyncio.Future[object], received: _Received, mail_from: str, rcpt_tos: list[str]
    ) -> None:
        try:
            result = await self._ingest(received.content, mail_from, rcpt_tos)
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
        finally:
            received.release()  # the spool file and the large-ingest slot, once stored (or not)
        if not outcome.done():
            outcome.set_result(result)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default echoes the exception text to the client; we log it and say little.
        logger.error("smtp: session error %s", type(error).__name__, exc_info=error)
        return "451 4.3.0 Temporary server error, try again later"


class LargeIngestSlots:
    """How many large messages may be received and stored at once; taking a slot never waits."""

    def __init__(self, limit: int, large_after_bytes: int) -> None:
        if limit < 1:
            raise ValueError("large_ingest_concurrency must be at least 1")
        self.limit = limit
        self.large_after_bytes = large_after_bytes
        self.in_use = 0

    @property
    def available(self) -> bool:
        return self.in_use < self.limit

    def take(self) -> bool:
        if not self.available:
            return False
        self.in_use += 1
        return True

    def give_back(self) -> None:
        self.in_use = max(0, self.in_use - 1)


class _Received:
    """A message read from DATA and what it holds until stored: its spool file, maybe a slot."""

    def __init__(self, content: RawMessage, slots: LargeIngestSlots | None = None) -> None:
        self.content = content
        self._slots = slots  # set when it holds a large-ingest slot

    def release(self) -> None:
        if isinstance(self.content, SpooledMessage):
            self.content.close()
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.give_back()


class _DataTooBig(Exception):
    """DATA went over the size limit; the rest was read and thrown away."""


class _Refused(Exception):
    """DATA was read to its end but not kept (the reply says why: no large-ingest slot, the spool failed)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _DataSink:
    """Where DATA goes as it is read: `data` in memory, flushed to a spool file past `spool_after`.

    The reader appends with `keep` and looks only at the end of `data` (the last bytes always stay
    there). A flush writes a prefix that ends on a byte other than CR or LF, so no `CRLF .` of the
    dot-stuffing straddles two flushes and undoing it piece by piece equals undoing it whole.
    """

    def __init__(self, *, limit: int, spool_after: int, slots: LargeIngestSlots, spool_dir: Path | None) -> None:
        self.data = bytearray()
        self._limit = limit
        self._spool_after = spool_after
        self._flush_bytes = max(1, min(FLUSH_BYTES, spool_after))
        self._slots = slots
        self._spool_dir = spool_dir
        self._received = 0  # bytes read so far, kept or not
        self._flushed = 0  # bytes (as received, still dot-stuffed) already written to the spool
        self._spool: SpooledMessage | None = None
        self._holds_slot = False
        self.over = False  # past the size limit: read to the end, keep only a short tail
        self.refusal: str | None = None  # not to be kept (the reply to give): the same

    def keep(self, piece: bytes) -> None:
        self.data.extend(piece)
        self._received += len(piece)
        received = self._received
        if self._limit and received > self._limit + len(_END_OF_DATA):
            self.over = True
            self._drop()
            return
        if self.refusal is not None:
            del self.data[: -len(_END_OF_DATA)]
            return
        if not self._holds_slot and received > self._slots.large_after_bytes:
            if not self._slots.take():
                self._refuse(BUSY_REPLY)
                return
            self._holds_slot = True
        if received > self._spool_after and len(self.data) >= self._flush_bytes:
            self._flush()

    def _refuse(self, reply: str) -> None:
        self.refusal = reply
        self._drop()

    def _drop(self) -> None:
        del self.data[: -len(_END_OF_DATA)]
        self.discard()

    def _flush(self) -> None:
        cut = len(self.data) - len(_END_OF_DATA)
        while cut > 0 and self.data[cut - 1] in b"\r\n":
            cut -= 1
        if cut <= 0:
            return
        try:
            if self._spool is None:
                self._spool = SpooledMessage(self._spool_dir)
            self._spool.write(self._unstuff(self.data[:cut]))
        except OSError as exc:  # disk full, spool dir gone: read on, then a temporary failure
            logger.error("smtp: cannot spool a large message (%s); it will be refused with 451", type(exc).__name__)
            self._refuse(SPOOL_FAILED_REPLY)
            return
        self._flushed += cut
        del self.data[:cut]

    def _unstuff(self, piece: bytearray) -> bytearray:
        if self._flushed == 0 and piece.startswith(b"."):
            del piece[:1]
        return piece.replace(b"\r\n.", b"\r\n")

    def finish(self) -> _Received:
        """The message (the `.` line already removed from `data`), or _DataTooBig / _Refused."""
        if self.over or (self._limit and self._flushed + len(self.data) > self._limit):
            self.discard()
            raise _DataTooBig
        if self.refusal is not None:
            raise _Refused(self.refusal)
        if self._spool is None:
            received = _Received(bytes(self._unstuff(self.data)), self._slots if self._holds_slot else None)
            self._holds_slot = False
            return received
        try:
            self._spool.write(self._unstuff(self.data))
            spool = self._spool.seal()
        except OSError as exc:
            logger.error("smtp: cannot spool a large message (%s); refused with 451", type(exc).__name__)
            self.discard()
            raise _Refused(SPOOL_FAILED_REPLY) from None
        self._spool = None
        received = _Received(spool, self._slots if self._holds_slot else None)
        self._holds_slot = False
        self.data.clear()
        return received

    def discard(self) -> None:
        """Give back what it holds (DATA failed or was refused)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._holds_slot:
            self._holds_slot = False
            self._slots.give_back()


class _IngressSMTP(SMTP):
    """aiosmtpd's protocol with a faster address match and DATA reader (see the module doc).

    Registered with its listener so `stop()` can close open sessions.
    """

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(
        self,
        handler: _IngressHandler,
        *,
        sessions: set[_IngressSMTP],
        spool_after: int,
        spool_dir: Path | None,
        **kwargs: Any,
    ) -> None:
        self._deadline = 0.0
        self._timer_armed = False
        self._slots = handler.slots
        self._spool_after = spool_after
        self._spool_dir = spool_dir
        self._received: _Received | None = None
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
        sink = _DataSink(
            limit=self.data_size_limit or 0, spool_after=self._spool_after, slots=self._slots, spool_dir=self._spool_dir
        )
        try:
            await self._read_data(sink)
            received = sink.finish()
        except asyncio.CancelledError:
            sink.discard()
            logger.debug("smtp: connection lost during DATA")
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            sink.discard()
            self._writer.close()  # the client went away mid-message; nothing to answer
            return
        except _DataTooBig:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        except _Refused as refused:
            logger.info("smtp: message refused: %s (peer %s)", refused.reply, _peer(self.session))
            await self.push(refused.reply)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        except BaseException:
            sink.discard()
            raise
        content = received.content
        # aiosmtpd's envelope carries bytes; a spooled message travels in `_received` alone.
        self.envelope.content = self.envelope.original_content = content if isinstance(content, bytes) else None
        self._received = received
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self.take_received_and_release()
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    def take_received(self) -> _Received | None:
        """The message DATA read, for the handler, which then releases it (once stored)."""
        received, self._received = self._received, None
        return received

    def take_received_and_release(self) -> None:
        received = self.take_received()
        if received is not None:  # the handler never took it (its hook failed first)
            received.release()

    async def _read_data(self, sink: _DataSink) -> None:
        """The message up to the lone `.` line into `sink` (it undoes the dot-stuffing, RFC 5321 4.5.2).

        Lines end with CRLF, as in aiosmtpd. Fast path, two reads for most mail: up to the first
        CR, then up to the first LF `.` CRLF; a CR before that LF makes it the end of the data.
        Anything else (an empty message, a bare CR or LF next to a `.` line) finishes line by line.
        """
        data = sink.data  # the unflushed end of the message; `keep` may flush its start
        keep = sink.keep

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
                data.clear()
                return  # an empty message
        else:
            await read_until(b"\n.\r\n")
            if data.endswith(_END_OF_DATA):
                del data[-3:]  # the `.` line; the CRLF before it ends the last line
                return
        # Slow path: first complete a CRLF split by the fast path, then read whole lines.
        while data.endswith(b"\r"):
            keep(await self._reader.readexactly(1))
        line_start = data.endswith(b"\r\n")
        while True:
            line = await read_until(b"\r\n")
            if line == b".\r\n":
                if line_start:
                    return
                keep(line)
            line_start = True


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
        large_message_bytes: int = LARGE_MESSAGE_BYTES,
        large_ingest_concurrency: int = LARGE_INGEST_CONCURRENCY,
        spool_after_bytes: int = SPOOL_AFTER_BYTES,
        spool_dir: Path | None = None,
    ) -> None:
        self.large_ingests = LargeIngestSlots(large_ingest_concurrency, large_message_bytes)
        self._handler = _IngressHandler(ingest, is_local_recipient, self.large_ingests)
        self._spool_after_bytes = spool_after_bytes
        self._spool_dir = spool_dir  # None: the system's temporary directory
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
            spool_after=self._spool_after_bytes,
            spool_dir=self._spool_dir,
            data_size_limit=self._max_message_bytes,  # advertised as SIZE, enforced with 552
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="mam-mcp local ESMTP",
            timeout=self._timeout_seconds,
            loop=asyncio.get_running_loop(),
        )


def _declared_size(mail_options: list[str]) -> int | None:
    """The SIZE= of MAIL FROM's parameters (RFC 1870), already checked to be digits by aiosmtpd."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


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
