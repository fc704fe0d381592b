"""The strict gate in front of the fake's routes: records, routes, authenticates, scripts.

A pure ASGI middleware (inside Starlette's error middleware) so that it sees every request
before any handler: unknown paths, wrong methods, missing or wrong keys, undocumented query
parameters and malformed JSON are answered here and recorded as violations.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import httpx2
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes.hosted_errors import error_response
from tests.fakes.hosted_scripting import RecordedRequest, ScriptedAnswer

if TYPE_CHECKING:
    from tests.fakes.hosted_api import FakeHostedAPI

__all__ = ["ABORT_CONNECTION", "FakeRoute", "StrictGate"]

# Set by `FakeHostedAPI.serving()`: a coroutine function that drops the client's connection.
ABORT_CONNECTION = "fake_hosted_api.abort_connection"
_BODYLESS = {"GET", "HEAD", "DELETE"}


class FakeRoute(Route):
    """A route that also declares the query parameters the reference documents for it."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, methods: list[str], query: Iterable[str] = ()
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.allowed_query = frozenset(query)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _client_left_during(delay: float, receive: Receive) -> bool:
    """Sleep `delay`; True if the client disconnected meanwhile (a timed-out client, under uvicorn)."""
    left = False
    async with anyio.create_task_group() as tasks:

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            tasks.cancel_scope.cancel()

        tasks.start_soon(watch)
        await anyio.sleep(delay)
        tasks.cancel_scope.cancel()
    return left


class StrictGate:
    def __init__(self, app: ASGIApp, fake: FakeHostedAPI) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[BaseRoute | None, bool]:
        """(route, method_ok): route None = unknown path; method_ok False = wrong method."""
        partial: BaseRoute | None = None
        for route in self.fake.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route, True
            if match == Match.PARTIAL and partial is None:
                partial = route
        return partial, False

    # --- HTTP ---------------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        body = await _read_body(receive)
        headers, query = _headers(scope), _query(scope)
        parsed: Any = None
        bad_json = False
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                bad_json = True
        record = RecordedRequest(method=method, path=path, query=query, headers=headers, json=parsed)
        self.fake.requests.append(record)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        refusal = self._refusal(scope, record, body, bad_json)
        if refusal is not None:
            await refusal(scope, receive, recording_send)
            return
        body_sent = False

        async def replay() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scripted = self.fake.take_script(method, path)
        if scripted is not None:
            await self._scripted(scripted, scope, replay, recording_send, record)
            return
        record.handler_ran = True
        await self.app(scope, replay, recording_send)

    def _refusal(self, scope: Scope, record: RecordedRequest, body: bytes, bad_json: bool) -> ASGIApp | None:
        """The error answer when the request breaks the contract, else None (and the key's scope is set)."""
        method, path, where = record.method, record.path, f"{record.method} {record.path}"
        route, method_ok = self._match(scope)
        if route is None:
            self.fake.violation(f"{where}: no such endpoint")
            return error_response(404, "NOT_FOUND", f"no route for {method} {path}")
        if not method_ok:
            self.fake.violation(f"{where}: method not allowed")
            allowed = ", ".join(sorted(getattr(route, "methods", None) or ()))
            return error_response(
                405, "METHOD_NOT_ALLOWED", f"{method} not allowed on {path}", headers={"Allow": allowed}
            )
        key = record.headers.get("x-api-key")
        if key is None:
            if record.headers.get("authorization", "").lower().startswith("bearer "):
                self.fake.violation(f"{where}: Authorization: Bearer used; our client must send X-API-Key")
            return error_response(401, "AUTH_MISSING", "missing X-API-Key header")
        key_scope = self.fake.state.keys.get(key)
        if key_scope is None:
            return error_response(401, "AUTH_INVALID", "invalid API key")
        scope.setdefault("state", {})["key_scope"] = key_scope
        allowed_query = getattr(route, "allowed_query", None)
        unknown = sorted(set(record.query) - allowed_query) if allowed_query is not None else []
        if unknown:
            self.fake.violation(f"{where}: undocumented query parameters {unknown}")
            return error_response(
                400,
                "VALIDATION_ERROR",
                f"unknown query parameters: {', '.join(unknown)}",
                details=[{"path": name, "message": "unknown query parameter"} for name in unknown],
            )
        if body and method in _BODYLESS:
            self.fake.violation(f"{where}: a body on a {method}")
            return error_response(400, "VALIDATION_ERROR", f"{method} takes no body")
        content_type = record.headers.get("content-type", "")
        if body and (bad_json or not content_type.startswith("application/json")):
            self.fake.violation(f"{where}: body is not JSON (content-type {content_type!r})")
            return error_response(
                400,
                "VALIDATION_ERROR",
                "body must be JSON",
                details=[{"path": "(body)", "message": "invalid JSON"}],
            )
        return None

    async def _scripted(
        self, answer: ScriptedAnswer, scope: Scope, receive: Receive, send: Send, record: RecordedRequest
    ) -> None:
        record.scripted = True
        if answer.after_handler:
            record.handler_ran = True

            async def discard(message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
        if answer.delay and await _client_left_during(answer.delay, receive):
            record.status = None
            return
        if answer.drop:
            record.status = None
            abort: Callable[[], Awaitable[None]] | None = scope.get(ABORT_CONNECTION)
            if abort is None:
                raise httpx2.RemoteProtocolError(
                    "scripted drop: server closed the connection without a response"
                )
            await abort()
            return
        response = JSONResponse(answer.body(), status_code=answer.status, headers=answer.headers)
        await response(scope, receive, send)

    # --- WebSocket ------------------------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers, query = _headers(scope), _query(scope)
        path = scope["path"]
        self.fake.requests.append(
            RecordedRequest(method="WS", path=path, query=query, headers=headers, json=None)
        )
        route, _ = self._match(scope)
        key = headers.get("x-api-key") or query.get("api_key")
        if route is None:
            self.fake.violation(f"WS {path}: no such endpoint")
            await self._deny(receive, send, 404, "NOT_FOUND", f"no WebSocket endpoint {path}")
            return
        if key is None:
            if headers.get("authorization", "").lower().startswith("bearer "):
                self.fake.violation(f"WS {path}: Authorization: Bearer used; send X-API-Key or ?api_key=")
            await self._deny(receive, send, 401, "AUTH_MISSING", "missing X-API-Key header or api_key")
            return
        key_scope = self.fake.state.keys.get(key)
        if key_scope is None:
            await self._deny(receive, send, 401, "AUTH_INVALID", "invalid API key")
            return
        unknown = sorted(set(query) - {"api_key"})
        if unknown:
            self.fake.violation(f"WS {path}: undocumented query parameters {unknown}")
            await self._deny(receive, send, 400, "VALIDATION_ERROR", f"unknown query parameters: {unknown}")
            return
        if self.fake.refuse_websockets:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "WebSockets refused by the test"})
            return
        scope.setdefault("state", {})["key_scope"] = key_scope
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(receive: Receive, send: Send, status: int, code: str, message: str) -> None:
        """Refuse the upgrade with an HTTP error body (the ASGI WebSocket denial response)."""
        await receive()  # websocket.connect
        body = json.dumps({"error": message, "code": code}).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
