"""The console's ASGI app, mounted by the daemon at CONSOLE_PATH: the page, its files, the login
link, the JSON API and the live event stream, all behind one guard.

The guard runs before any route: a Host that is not ours (DNS rebinding) or an Origin that is not
ours is refused; a request without a valid session cookie gets 401 (the page: a sign-in hint);
every request but the page itself must also carry the session's page key (access.py says why), and
a state-changing one must come from our origin and carry it as a header. Every
answer carries no-store, nosniff, no-referrer and a strict Content-Security-Policy (scripts and
styles only from the console's own files, no framing by anyone else).
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mam_mcp.local.api.access import authenticate, require_kind
from mam_mcp.local.console.access import (
    KEY_HEADER,
    KEY_PARAM,
    SESSION_SCOPE_KEY,
    SESSION_SECONDS,
    ConsoleAccess,
    allowed_host,
    allowed_origin,
    cookie_name,
    session_of,
)
from mam_mcp.local.console.api import api_routes
from mam_mcp.local.console.live import event_stream
from mam_mcp.local.console.reads import ConsoleReads
from mam_mcp.local.events.hub import EventHub
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError
from mam_mcp.web import ASSETS, asset

__all__ = ["CONSOLE_PATH", "PAGE_CSP", "Console"]

CONSOLE_PATH: Final = "/console"
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
_OPEN_PATHS: Final = ("/login", "/static/", "/api/login-token")  # reachable without a session
_SIGNED_OUT_PAGE: Final = (
    "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>mam-mcp console</title>"
    "<link rel=stylesheet href=\"{base}/static/console.css\"><main class=signed-out><h1>mam-mcp console</h1>"
    "<p>{message}</p><p>Open it with <code>mam-mcp console</code> in a terminal: it prints (or opens) a "
    "one-time sign-in link.</p></main></html>"
)

_SIGN_IN_PAGE: Final = (
    "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>mam-mcp console</title>"
    "<meta name=mam-base content=\"{base}\"><meta name=mam-page-key content=\"{key}\">"
    "<link rel=stylesheet href=\"{base}/static/console.css\"><main class=signed-out><h1>mam-mcp console</h1>"
    "<p>Signing in…</p></main><script src=\"{base}/static/sign_in.js\"></script></html>"
)
# The event stream (EventSource sends no header) may carry the page key in its query: it is no
# navigation, so its URL is kept in no history. The mail frame's src is one: it carries a one-use
# ticket instead (`/frame`). Every other request (downloads included: fetched, then saved) sends
# the header.
_EVENTS: Final = "/api/events"
_FRAME: Final = re.compile(r"^/api/inboxes/[^/]+/messages/[^/]+/html$")

Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """The console over one backend and its event hub; `app` is what the daemon mounts, `close` at exit."""

    def __init__(self, backend: LocalBackend, hub: EventHub, *, live_check_seconds: float = 2.0) -> None:
        self.access = ConsoleAccess()
        self.reads = ConsoleReads(backend.config.db_path)
        inner = Starlette(
            routes=[
                Route("/", _page, methods=["GET"]),
                Route("/login", _login, methods=["GET"]),
                Route("/logout", _logout, methods=["POST"]),
                Route("/static/{name}", _static, methods=["GET"]),
                Route("/api/login-token", _login_token, methods=["POST"]),
                Route("/api/events", event_stream, methods=["GET"]),
                *api_routes(),
            ],
            exception_handlers={BackendError: _backend_error, HTTPException: _http_error},
        )
        inner.state.backend = backend
        inner.state.hub = hub
        inner.state.access = self.access
        inner.state.reads = self.reads
        inner.state.live_check_seconds = live_check_seconds
        self.app: ASGIApp = _Guard(inner, self.access)

    def close(self) -> None:
        self.reads.close()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


async def _backend_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendError)
    return _error(exc.status, exc.code, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, "NOT_FOUND" if exc.status_code == 404 else "HTTP_ERROR", str(exc.detail))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


# ------------------------------------------------------------------ pages


async def _page(request: Request) -> Response:
    """The page shell: it holds no secret (the page key reached the page once, in the sign-in answer)."""
    page = asset("console.html").decode("utf-8")
    page = page.replace("{{base}}", html.escape(_base(request)))
    return Response(page, media_type="text/html; charset=utf-8")


async def _login(request: Request) -> Response:
    access: ConsoleAccess = request.app.state.access
    redeemed = access.redeem(request.query_params.get("token", ""))
    if redeemed is None:
        message = "This sign-in link was already used or has expired."
        page = _SIGNED_OUT_PAGE.format(base=html.escape(_base(request)), message=message)
        return Response(page, status_code=403, media_type="text/html; charset=utf-8")
    session_id, session = redeemed
    # The page key goes in this one answer's body, never in a URL (URLs land in the browser's
    # history): sign_in.js keeps it in the origin's storage and replaces this page with the console,
    # so the token leaves the address bar too (it works only once anyway).
    base = html.escape(_base(request))
    page = _SIGN_IN_PAGE.format(base=base, key=html.escape(session.page_key))
    response = Response(page, media_type="text/html; charset=utf-8")
    response.set_cookie(
        cookie_name(_port(request.scope)),
        session_id,
        max_age=int(SESSION_SECONDS),
        path=_base(request) or "/",
        httponly=True,
        samesite="strict",
    )
    return response


async def _logout(request: Request) -> Response:
    access: ConsoleAccess = request.app.state.access
    name = cookie_name(_port(request.scope))
    access.end(request.cookies.get(name))  # the browser's session ...
    access.end_scope(session_of(request).scope)  # ... and every other one of this person (all tabs)
    response = JSONResponse({"ok": True})
    response.delete_cookie(name, path=_base(request) or "/", httponly=True, samesite="strict")
    return response


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        raise HTTPException(404, "not found")
    return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


async def _login_token(request: Request) -> Response:
    """For `mam-mcp console`: the tenant key buys a one-time sign-in link (the key never reaches a page)."""
    scope = authenticate(request)
    require_kind(scope, "tk")
    access: ConsoleAccess = request.app.state.access
    token = access.issue_login_token(scope)
    return JSONResponse({"path": f"{_base(request)}/login?token={token}"}, status_code=201)


# ------------------------------------------------------------------ the guard


def _port(scope: MutableMapping[str, Any]) -> int:
    server = scope.get("server") or ("", 0)
    return int(server[1] or 0)


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: MutableMapping[str, Any], name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _query_value(scope: MutableMapping[str, Any], name: str) -> str | None:
    values = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _presented_key(scope: MutableMapping[str, Any], *, header_only: bool) -> str | None:
    """The page key a request carries: its header, or (where `header_only` is False) the `key` query parameter."""
    presented = _header(scope, KEY_HEADER.encode())
    if presented is None and not header_only:
        presented = _query_value(scope, KEY_PARAM)
    return presented


class _Guard:
    """Host, Origin, session cookie and page key checks before any console route; security headers after."""

    def __init__(self, app: ASGIApp, access: ConsoleAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _security_headers(list(message.get("headers", [])))
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        port = _port(scope)
        if not allowed_host(_header(scope, b"host"), port):
            return _error(403, "FORBIDDEN_HOST", "this Host is not the console's (DNS-rebinding protection)")
        origin = _header(scope, b"origin")
        if origin is not None and not allowed_origin(origin, port):
            return _error(403, "FORBIDDEN_ORIGIN", "requests from other web pages are refused")
        path = scope["path"][len(scope.get("root_path", "")) :] if scope.get("root_path") else scope["path"]
        path = path or "/"
        method = scope["method"]
        if any(path == open_path.rstrip("/") or path.startswith(open_path) for open_path in _OPEN_PATHS):
            return None
        session = self.access.session(_cookie(scope, cookie_name(port)))
        page = path == "/" and method in _SAFE_METHODS
        if session is None:
            if page:
                root = html.escape(str(scope.get("root_path", "")))
                page_html = _SIGNED_OUT_PAGE.format(
                    base=root, message="You are not signed in (or the session ended)."
                )
                return Response(page_html, status_code=401, media_type="text/html; charset=utf-8")
            return _error(401, "CONSOLE_SIGNED_OUT", "not signed in to the console; run `mam-mcp console`")
        if method not in _SAFE_METHODS and origin is None:
            return _error(403, "FORBIDDEN_ORIGIN", "a state-changing request must name its Origin")
        if not page:
            # The cookie alone is not enough: any server on this host can be sent it (access.py). The
            # page key names the session; the cookie must be a live one of the same scope. Two tabs
            # of one browser, signed in twice, share the newer cookie and each keep working.
            from_query = method in _SAFE_METHODS and path == _EVENTS
            keyed = self.access.session_by_key(_presented_key(scope, header_only=not from_query))
            if keyed is None and method in _SAFE_METHODS and _FRAME.match(path):
                keyed = self.access.redeem_frame_ticket(_query_value(scope, "ticket"), path)
            if keyed is None or keyed.scope != session.scope:
                return _error(
                    401,
                    "CONSOLE_SIGNED_OUT",
                    "this page does not hold the console session's key; open a new sign-in link (`mam-mcp console`)",
                )
            session = keyed
        scope[SESSION_SCOPE_KEY] = session
        return None


_DEFAULT_HEADERS: Final = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def _security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    out = list(headers)
    for name, value in _DEFAULT_HEADERS:
        if name == b"x-frame-options" and b"content-security-policy" in present:
            continue  # the response set its own CSP (the mail frame, framed by the console: frame-ancestors)
        if name not in present:
            out.append((name, value))
    return out

