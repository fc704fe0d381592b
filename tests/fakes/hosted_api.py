"""A strict, stateful fake of the hosted MyAgentMail /v1 API, for hosted-mode tests (DESIGN §7).

    fake = FakeHostedAPI()
    async with httpx2.AsyncClient(transport=fake.transport(), base_url="http://fake") as http:
        ...                                  # in-process, HTTP and WebSockets
    async with fake.serving() as base_url:   # real uvicorn on 127.0.0.1, for subprocesses
        ...

It rejects what the reference does not document (unknown paths or methods, missing `X-API-Key`,
unknown body fields or query parameters) and lists each such request in `.violations`;
every request is kept in `.requests`; `.script(...)` replaces the next answers (429, 5xx,
delays, dropped connections).

LinkedIn: when `tests/fakes/hosted_linkedin.py` exists, its `linkedin_routes(fake) -> list[BaseRoute]`
is called from `__init__` and its routes (paths relative, e.g. "/signals/{signal_id}") are served
under `/v1/linkedin` behind the same gate (auth, strict query, scripting, recording). Build them
with `fake.route(method, path, handler, query=[...])`; in handlers use `fake.key_scope(request)`,
`await fake.parse_body(request, Model)` (a `StrictBody` subclass) and raise `FakeApiError(...)`
or return `fake.error(status, code, message)`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from mam_mcp.local.auth.scope import KeyScope
from tests.asgi_server import serve_asgi
from tests.fakes.hosted_account_routes import AccountRoutes
from tests.fakes.hosted_bodies import StrictBody
from tests.fakes.hosted_email_routes import EmailRoutes
from tests.fakes.hosted_errors import FakeApiError, error_response
from tests.fakes.hosted_events import EventHub, SocketSession
from tests.fakes.hosted_gate import ABORT_CONNECTION, FakeRoute, StrictGate
from tests.fakes.hosted_mail import MailFlow
from tests.fakes.hosted_records import DEFAULT_DOMAIN, InboxRecord, new_id
from tests.fakes.hosted_scripting import RecordedRequest, ScriptedAnswer, default_error_code
from tests.fakes.hosted_state import HostedState
from tests.fakes.hosted_transport import FakeTransport

__all__ = ["FakeApiError", "FakeHostedAPI", "FakeRoute", "RecordedRequest", "ScriptedAnswer"]

BodyT = TypeVar("BodyT", bound=StrictBody)
DEFAULT_API_KEY = "tk_fake_0123456789abcdef"
LINKEDIN_PREFIX = "/v1/linkedin"
_LINKEDIN_MODULE = "tests.fakes.hosted_linkedin"


async def _render_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FakeApiError)
    return exc.response()


class FakeHostedAPI:
    """The fake. `api_key` is the tenant (`tk_`) key; `inbox_key`, if given, becomes the `ak_` key
    of the first inbox created."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        inbox_key: str | None = None,
        ws_ping_interval: float = 30.0,
    ) -> None:
        self.api_key = api_key
        self.state = HostedState()
        self.state.add_key("tk", key=api_key)
        self.hub = EventHub()
        self.mail = MailFlow(self.state, self.hub)
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.refuse_websockets = False
        self.ws_ping_interval = ws_ping_interval
        self.undeliverable_domains: set[str] = {"example.invalid"}
        self._pending_inbox_key = inbox_key
        self._scripts: list[ScriptedAnswer] = []
        self.routes: list[BaseRoute] = self.build_routes()
        self.app = Starlette(
            routes=self.routes,
            middleware=[Middleware(StrictGate, fake=self)],
            exception_handlers={FakeApiError: _render_error},
        )

    # --- routes ---------------------------------------------------------------------------------
    def build_routes(self) -> list[BaseRoute]:
        """Every route of the fake; LinkedIn's come from hosted_linkedin when it exists."""
        routes: list[BaseRoute] = [*EmailRoutes(self).routes(), *AccountRoutes(self).routes()]
        routes.append(WebSocketRoute("/v1/ws", self._websocket))
        routes.append(WebSocketRoute("/v1/inboxes/{inbox_id}/ws", self._websocket))
        if importlib.util.find_spec(_LINKEDIN_MODULE) is not None:
            module = importlib.import_module(_LINKEDIN_MODULE)
            routes.extend(self._under_prefix(LINKEDIN_PREFIX, module.linkedin_routes(self)))
        return routes

    @staticmethod
    def _under_prefix(prefix: str, routes: Sequence[BaseRoute]) -> list[BaseRoute]:
        """Re-root routes under `prefix` flat (not as a Mount) so the gate can tell 404 from 405."""
        rooted: list[BaseRoute] = []
        for route in routes:
            methods = sorted(route.methods) if isinstance(route, Route) and route.methods else None
            if isinstance(route, FakeRoute):
                rooted.append(
                    FakeRoute(
                        prefix + route.path, route.endpoint, methods=methods or [], query=route.allowed_query
                    )
                )
            elif isinstance(route, Route):
                rooted.append(Route(prefix + route.path, route.endpoint, methods=methods))
            elif isinstance(route, WebSocketRoute):
                rooted.append(WebSocketRoute(prefix + route.path, route.endpoint))
            else:
                raise TypeError(f"cannot mount {route!r} under {prefix}")
        return rooted

    def route(self, method: str, path: str, handler: Any, *, query: Sequence[str] = ()) -> FakeRoute:
        """A strict route: `query` lists the only query parameters the reference documents."""
        return FakeRoute(path, handler, methods=[method], query=query)

    # --- helpers for route modules (email here, LinkedIn in hosted_linkedin) ------------------------
    def violation(self, message: str) -> None:
        self.violations.append(message)

    def error(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> JSONResponse:
        return error_response(status, code, message, details=details)

    def key_scope(self, request: Request) -> KeyScope:
        """The scope of the key that authenticated this request (set by the gate)."""
        scope: KeyScope = request.state.key_scope
        return scope

    async def parse_body(self, request: Request, model: type[BodyT]) -> BodyT:
        """The body validated strictly against `model`; 400 VALIDATION_ERROR + a violation if not."""
        raw = await request.body()
        where = f"{request.method} {request.url.path}"
        if not raw:
            self.violation(f"{where}: JSON body missing")
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "a JSON body is required",
                details=[{"path": "(body)", "message": "required"}],
            )
        return self._validate(where, json.loads(raw), model)

    async def parse_optional_body(self, request: Request, model: type[BodyT]) -> BodyT | None:
        raw = await request.body()
        if not raw:
            return None
        return self._validate(f"{request.method} {request.url.path}", json.loads(raw), model)

    def _validate(self, where: str, data: Any, model: type[BodyT]) -> BodyT:
        if not isinstance(data, dict):
            self.violation(f"{where}: body is not a JSON object")
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "body must be a JSON object",
                details=[{"path": "(body)", "message": "expected an object"}],
            )
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            details = [
                {"path": ".".join(str(part) for part in err["loc"]) or "(body)", "message": err["msg"]}
                for err in exc.errors()
            ]
            hint = " (hosted bodies use plainBody/htmlBody)" if {"text", "html"} & set(data) else ""
            self.violation(f"{where}: body does not match the contract{hint}: {details}")
            raise FakeApiError(
                400, "VALIDATION_ERROR", f"invalid request body{hint}", details=details
            ) from None

    # --- keys and seeded state ------------------------------------------------------------------------
    def add_inbox_key(self, inbox_id: str) -> str:
        """A new `ak_` key scoped to one inbox."""
        inbox = self.state.inboxes.get(inbox_id)
        if inbox is None:
            raise KeyError(f"no inbox {inbox_id}")
        return self.state.add_key("ak", inbox_id=inbox.id, workspace_id=inbox.workspace_id)

    def mint_inbox_key(self, inbox_id: str) -> str:
        """The key returned by inbox creation: the `inbox_key` given to __init__ for the first inbox."""
        preset, self._pending_inbox_key = self._pending_inbox_key, None
        if preset is None:
            return self.add_inbox_key(inbox_id)
        inbox = self.state.inboxes[inbox_id]
        return self.state.add_key("ak", inbox_id=inbox.id, workspace_id=inbox.workspace_id, key=preset)

    def seed_inbox(
        self, username: str | None = None, *, display_name: str | None = None, workspace_id: str | None = None
    ) -> dict[str, Any]:
        """Create an inbox without a request (test set-up); returns its wire dict."""
        username = username or f"seed-{new_id()[:8]}"
        address = f"{username}@{DEFAULT_DOMAIN}"
        inbox = InboxRecord(
            id=new_id(),
            username=username,
            domain=DEFAULT_DOMAIN,
            display_name=display_name,
            workspace_id=workspace_id,
            imap_password="seeded-imap-password",
            addresses=[{"email": address, "primary": True, "createdAt": None}],
        )
        inbox.addresses[0]["createdAt"] = inbox.created_at
        self.state.inboxes[inbox.id] = inbox
        self.mint_inbox_key(inbox.id)
        return inbox.wire()

    def pause_inbox(self, inbox_id: str, paused: bool = True) -> None:
        """Sends from a paused inbox answer 403 INBOX_PAUSED (the API's auto-pause after bounces)."""
        (self.state.paused_inboxes.add if paused else self.state.paused_inboxes.discard)(inbox_id)

    def limit_inboxes(self, limit: int | None) -> None:
        """Creating an inbox beyond `limit` answers 403 PLAN_LIMIT_REACHED."""
        self.state.inbox_limit = limit

    def bounce(self, message_id: str) -> None:
        """An outbound message bounced: status `bounced`, a `message.bounced` event, metrics count it."""
        message = self.state.messages[message_id]
        if message.direction != "outbound":
            raise ValueError("only outbound messages bounce")
        self.mail.bounce(message)

    def mark_domain_dns_ready(self, domain: str) -> None:
        """The next `GET /v1/domains/:domain/verify` finds the DNS records in place."""
        self.state.dns_ready.add(domain.lower())

    def verify_address(self, email: str) -> dict[str, Any]:
        local, at, domain = email.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in email):
            return {"email": email, "valid": False, "reason": "invalid_syntax", "mx": []}
        if domain.lower() in self.undeliverable_domains:
            return {"email": email, "valid": False, "reason": "no_mx", "mx": []}
        return {"email": email, "valid": True, "reason": "ok", "mx": [f"mx1.{domain.lower()}"]}

    def stored_messages(self, inbox_id: str, direction: str | None = None) -> list[dict[str, Any]]:
        """Non-deleted messages of an inbox, oldest first (for assertions)."""
        found = [
            m
            for m in self.state.messages.values()
            if m.inbox_id == inbox_id and not m.deleted and direction in (None, m.direction)
        ]
        return [m.wire(with_attachments=True) for m in sorted(found, key=lambda m: m.seq)]

    def deliver_inbound(
        self,
        inbox_id: str,
        *,
        from_address: str,
        subject: str,
        plain_body: str | None,
        html_body: str | None = None,
        from_name: str | None = None,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        in_reply_to: str | None = None,
    ) -> dict[str, Any]:
        """Mail arrives (`in_reply_to`: our id or the RFC Message-ID of a message it answers).
        Publishes `message.received`; returns the stored message's wire dict."""
        inbox = self.state.inboxes.get(inbox_id)
        if inbox is None:
            raise KeyError(f"no inbox {inbox_id}")
        message = self.mail.deliver(
            inbox,
            from_address=from_address,
            subject=subject,
            plain_body=plain_body,
            html_body=html_body,
            from_name=from_name,
            attachments=attachments,
            in_reply_to=in_reply_to,
        )
        return message.wire(with_attachments=True)

    def deliver_inbound_raw(self, inbox_id: str, raw: bytes) -> dict[str, Any]:
        """Mail arrives as a raw RFC 5322 source: stored with the fields the service parses from it,
        and served byte for byte by the raw route (GET .../messages/:mid/raw)."""
        inbox = self.state.inboxes.get(inbox_id)
        if inbox is None:
            raise KeyError(f"no inbox {inbox_id}")
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        sender = parsed["From"].addresses[0] if parsed["From"] and parsed["From"].addresses else None
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        message = self.mail.deliver(
            inbox,
            from_address=f"{sender.username}@{sender.domain}" if sender else "unknown@unknown.invalid",
            from_name=sender.display_name or None if sender else None,
            subject=str(parsed["Subject"] or ""),
            plain_body=text_part.get_content() if text_part is not None else None,
            html_body=html_part.get_content() if html_part is not None else None,
            raw=raw,
        )
        return message.wire(with_attachments=True)

    # --- scripting ----------------------------------------------------------------------------------
    def script(
        self,
        method: str,
        path: str,
        *,
        status: int,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int = 1,
        after_handler: bool = False,
        code: str | None = None,
        message: str | None = None,
    ) -> ScriptedAnswer:
        """Answer the next `times` requests matching `method` and `path` (`*` = one segment) with
        `status` and `json` (default `{"error", "code"}`; `code` picks the code) instead of the
        normal answer. The handler does not run unless `after_handler` (the action happened, the
        answer is lost). `drop` closes the connection without an answer; `delay` waits first.
        A 429 gets `Retry-After: 1` and `X-RateLimit-Bucket` unless `headers` are given."""
        if json is None and (code is not None or message is not None):
            chosen = code or default_error_code(status)
            json = {"error": message or f"scripted {status} {chosen}", "code": chosen}
        if headers is None:
            headers = {"Retry-After": "1", "X-RateLimit-Bucket": "default"} if status == 429 else {}
        answer = ScriptedAnswer(
            method=method,
            path=path,
            status=status,
            json=json,
            headers=headers,
            delay=delay,
            drop=drop,
            times=times,
            after_handler=after_handler,
        )
        self._scripts.append(answer)
        return answer

    def take_script(self, method: str, path: str) -> ScriptedAnswer | None:
        for answer in self._scripts:
            if answer.matches(method, path):
                answer.times -= 1
                if answer.times <= 0:
                    self._scripts.remove(answer)
                return answer
        return None

    @property
    def pending_scripts(self) -> list[ScriptedAnswer]:
        return list(self._scripts)

    # --- WebSockets ---------------------------------------------------------------------------------
    async def _websocket(self, websocket: WebSocket) -> None:
        key_scope = websocket.state.key_scope
        legacy: InboxRecord | None = None
        inbox_id = websocket.path_params.get("inbox_id")
        if inbox_id is not None:
            try:
                legacy = self.state.inbox(key_scope, inbox_id)
            except FakeApiError as exc:
                await websocket.send_denial_response(exc.response())
                return
        session = SocketSession(
            websocket,
            state=self.state,
            hub=self.hub,
            ping_interval=self.ws_ping_interval,
            record_violation=self.violation,
        )
        await session.run(key_scope, legacy)

    def disconnect_websockets(self, code: int = 1012) -> None:
        """Close every open socket from the server side (to test a client's reconnect or polling)."""
        self.hub.disconnect_all(code)

    # --- running it -----------------------------------------------------------------------------------
    def transport(self) -> FakeTransport:
        """In-process transport: an httpx2.ASGITransport that also speaks WebSocket."""
        return FakeTransport(self.app)

    async def _served_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Under uvicorn, give the gate a way to drop the TCP connection without an answer."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if scope["type"] == "http" and transport is not None:

            async def abort() -> None:
                transport.abort()
                for _ in range(100):  # connection_lost runs on a later loop turn
                    if getattr(cycle, "disconnected", False):
                        return
                    await anyio.lowlevel.checkpoint()
                cycle.disconnected = True  # type: ignore[union-attr]

            scope[ABORT_CONNECTION] = abort
        await self.app(scope, receive, send)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Run under uvicorn on an ephemeral 127.0.0.1 port; yields the base URL (no `/v1`)."""
        async with serve_asgi(
            self._served_app,
            interface="asgi3",
            http="h11",
            ws="wsproto",
            lifespan="off",
            proxy_headers=False,
            ws_max_size=32 * 1024 * 1024,
        ) as base_url:
            yield base_url
