"""A real aiosmtpd SMTP server standing in for the outbound relay, with scripted answers.

`serve_sink()` listens on an ephemeral 127.0.0.1 port and records every message it accepts
(the exact bytes). It can require AUTH (and refuse a wrong password with 535), refuse recipients
(550), answer DATA with a code (451, 554; or a list of answers, then accept), or drop the connection at RCPT or after the message
was sent (DATA received, no answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["SINK_PASSWORD", "SINK_USER", "RelaySink", "serve_sink"]

SINK_USER = "relay-user"
SINK_PASSWORD = "relay-Secret-9f3b"


@dataclass
class RelaySink:
    port: int = 0
    received: list[Envelope] = field(default_factory=list)
    rcpt_answers: dict[str, str] = field(default_factory=dict)
    data_answer: str | None = None
    data_answers: list[str] = field(default_factory=list)  # answered first, one per DATA, before data_answer
    drop: Literal["rcpt", "data"] | None = None
    data_attempts: int = 0  # DATA commands that got as far as the message (answered or not)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def url_with_login(self, password: str = SINK_PASSWORD) -> str:
        return f"smtp://{SINK_USER}:{password}@127.0.0.1:{self.port}"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.drop == "rcpt":
            assert server.transport is not None
            server.transport.abort()
            return "250 never seen"
        if address in self.rcpt_answers:
            return self.rcpt_answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        async with self.changed:
            self.data_attempts += 1
            if self.drop == "data":  # the whole message arrived; the answer never leaves
                assert server.transport is not None
                server.transport.abort()
                self.changed.notify_all()
                return "250 never seen"
            answer = self.data_answers.pop(0) if self.data_answers else self.data_answer
            if answer is not None:
                self.changed.notify_all()
                return answer
            self.received.append(envelope)
            self.changed.notify_all()
        return "250 OK queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (SINK_USER.encode(), SINK_PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235, or 535 on a wrong password

    async def wait_for(self, *, received: int = 0, data_attempts: int = 0) -> None:
        async with self.changed:
            await self.changed.wait_for(
                lambda: len(self.received) >= received and self.data_attempts >= data_attempts
            )

    def by_message_id(self, message_id: str) -> list[Envelope]:
        needle = f"Message-ID: {message_id}".encode()
        return [e for e in self.received if needle in (e.original_content or b"")]


@asynccontextmanager
async def serve_sink(*, auth_required: bool = False) -> AsyncIterator[RelaySink]:
    loop = asyncio.get_running_loop()
    sink = RelaySink()

    def factory() -> SMTP:
        return SMTP(
            sink, hostname="relay.test", authenticator=sink.authenticate, auth_required=auth_required,
            auth_require_tls=False, loop=loop,
        )  # fmt: skip

    server = await loop.create_server(factory, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()
