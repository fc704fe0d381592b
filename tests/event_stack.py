"""Test helpers for the event stream, wait_for_email, tail and listen (not a test module).

`local_stack(...)` puts the real local backend (the `local_backend` fixture) behind its
WebSocket hub and a real aiosmtpd listener on an ephemeral loopback port; `hosted_stack(...)`
does the same for the strict fake hosted API. Both wrap the ASGI app in `RequestWatch`, so a
test can await "the client has listed the inbox" instead of sleeping.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import anyio
import httpx2
from starlette.types import ASGIApp, Receive, Scope, Send

from mam_mcp.client import MamClient
from mam_mcp.local.api.app import create_app
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.api.websocket import websocket_routes
from mam_mcp.local.events.hub import EventHub
from mam_mcp.local.smtp.ingress import SmtpIngress
from tests.fakes.hosted_api import FakeHostedAPI
from tests.fakes.hosted_transport import FakeTransport

__all__ = [
    "CODE",
    "HTML",
    "LINK",
    "PLAIN",
    "HostedStack",
    "LocalStack",
    "RequestWatch",
    "hosted_stack",
    "local_stack",
    "until",
    "verification_mail",
]

CODE = "483921"
LINK = "https://app.example.com/verify?token=7f3a9c2e"


class RequestWatch:
    """ASGI wrapper that records request paths and lets a test await the next one matching a pattern."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []
        self._waiters: list[list[Any]] = []  # [pattern, event, answers still to wait for]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = f"{scope.get('method', 'WS')} {scope['path']}"
        self.seen.append(request)

        async def watched_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                for waiter in list(self._waiters):
                    pattern, event, _ = waiter
                    if pattern.search(request):
                        waiter[2] -= 1
                        if waiter[2] == 0:
                            self._waiters.remove(waiter)
                            event.set()

        await self.app(scope, receive, watched_send)

    def answered(self, pattern: str, times: int = 1) -> anyio.Event:
        """Set once the next `times` requests matching `pattern` (`METHOD /path`) are fully answered; arm it first."""
        event = anyio.Event()
        self._waiters.append([re.compile(pattern), event, times])
        return event


async def until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Await a condition on state the test cannot subscribe to (bounded in time and steps)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


PLAIN = (
    f"Hi,\n\nYour Acme verification code is {CODE}. It expires in 10 minutes.\n\n"
    f"Or confirm your address: {LINK}\n\nOrder 2025-118 ships March 3, 2026. Call +1 415 555 0100.\n"
)
HTML = (
    f"<html><body><p>Hi,</p><p>Your Acme verification code is <b>{CODE}</b>.</p>"
    f'<p><a href="{LINK}">Verify email</a></p><p><a href="https://acme.example.com/privacy">Privacy</a></p>'
    "</body></html>"
)


def verification_mail(sender: str, to: str, *, subject: str = "Confirm your Acme account") -> bytes:
    """A realistic multipart sign-up mail: plain + HTML, a code, a verify button, decoy numbers."""
    message = EmailMessage()
    message["From"] = f"Acme <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(PLAIN)
    message.add_alternative(HTML, subtype="html")
    return message.as_bytes()


@dataclass
class LocalStack:
    backend: LocalBackend
    hub: EventHub
    watch: RequestWatch
    tenant_key: str
    smtp_port: int
    inboxes: list[dict[str, Any]] = field(default_factory=list)

    def client(self) -> MamClient:
        return MamClient(
            base_url="http://local.test", api_key=self.tenant_key, transport=FakeTransport(self.watch)
        )

    async def create_inbox(self, username: str) -> dict[str, Any]:
        async with httpx2.AsyncClient(
            transport=FakeTransport(self.watch),
            base_url="http://local.test",
            headers={"X-API-Key": self.tenant_key},
        ) as api:
            response = await api.post("/v1/inboxes", json={"username": username})
            assert response.status_code == 201, response.text
            inbox: dict[str, Any] = response.json()
        return inbox

    async def send_smtp(self, to: str, raw: bytes, sender: str = "noreply@acme.example.com") -> str:
        """Deliver over real SMTP; returns the server's reply to DATA (250 means stored)."""
        _, reply = await aiosmtplib.send(
            raw, sender=sender, recipients=[to], hostname="127.0.0.1", port=self.smtp_port, start_tls=False
        )
        return reply


@asynccontextmanager
async def local_stack(
    local_backend: tuple[LocalBackend, Any, str], *, websockets: bool = True
) -> AsyncIterator[LocalStack]:
    """The local backend with (or, to test the polling fallback, without) its `/v1/ws` routes."""
    backend, _, tenant_key = local_backend
    hub = EventHub()
    backend.add_event_sink(hub.publish)
    routes = (
        websocket_routes(
            hub, authenticate=backend.authenticate, inbox_owner=backend.inbox_owner, ping_interval=3600
        )
        if websockets
        else []
    )
    watch = RequestWatch(create_app(backend, extra_routes=routes))
    smtp = SmtpIngress(ingest=backend.ingest, is_local_recipient=backend.is_local_recipient, port=0)
    await smtp.start()
    try:
        yield LocalStack(backend=backend, hub=hub, watch=watch, tenant_key=tenant_key, smtp_port=smtp.port)
    finally:
        hub.close()
        await smtp.stop()


@dataclass
class HostedStack:
    fake: FakeHostedAPI
    watch: RequestWatch

    def client(self) -> MamClient:
        return MamClient(
            base_url="http://fake", api_key=self.fake.api_key, transport=FakeTransport(self.watch)
        )


@asynccontextmanager
async def hosted_stack(fake: FakeHostedAPI) -> AsyncIterator[HostedStack]:
    yield HostedStack(fake=fake, watch=RequestWatch(fake.app))

