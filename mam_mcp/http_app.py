"""The MCP server over HTTP: streamable HTTP (`/mcp`) or SSE (`/sse` + `/messages/`), guarded.

    app = build_http_app(settings, HttpOptions(transport="http", host="127.0.0.1", port=8000))

Three checks sit in front of the SDK's app (DESIGN §6):
- Origin (and Host) against DNS rebinding on every bind address; the SDK checks them only
  when bound to loopback, so `RequestGuard` does it itself and the SDK gets the same lists.
- A static bearer token (`--auth-token` / MAM_MCP_AUTH_TOKEN), compared in constant time; it
  is required whenever the bind address is not loopback (`build_http_app` refuses otherwise).
  The SDK's own bearer auth expects OAuth, hence our small middleware.
- Per-request tool selection (`X-MCP-Toolsets`, `X-MCP-Tools`, `X-MCP-Readonly`) that can
  only narrow the tools the server was started with.

Narrowing is one server middleware over one server, not one server per selection: tools/list
is filtered and tools/call of a hidden tool is refused per request, from the headers of that
very request (the SDK hands every HTTP transport's Starlette request to middleware). So
differently scoped agents share one connection pool and one Runtime, nothing has to be
started or evicted per selection, and stateless workers need no shared state.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mam_mcp.client.errors import MamError
from mam_mcp.config import Settings
from mam_mcp.loopback import LOOPBACK_NAMES, is_loopback
from mam_mcp.toolkit.results import fail
from mam_mcp.toolkit.runtime import ClientFactory
from mam_mcp.tools.catalog import SelectionError, select_tools
from mam_mcp.tools.draft_review import REVIEW_APP_TOOLS, review_app_tools_beside

__all__ = [
    "SELECTION_HEADERS",
    "HttpAppFactory",
    "StreamEnder",
    "HttpOptions",
    "HttpStartRefused",
    "RequestGuard",
    "SessionLimit",
    "ToolNarrowing",
    "build_http_app",
]

logger = logging.getLogger("mam_mcp.http")

SELECTION_HEADERS = ("x-mcp-toolsets", "x-mcp-tools", "x-mcp-readonly")
_MAX_SELECTION_HEADER = 4096  # a selection header longer than every tool name together is abuse


class HttpStartRefused(ValueError):
    """The HTTP transport would be unsafe with these options (e.g. public bind, no token)."""


class HttpOptions(BaseModel):
    """How to serve over HTTP (the `serve --transport http|sse` flags)."""

    model_config = ConfigDict(frozen=True)

    transport: Literal["http", "sse"] = "http"
    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/mcp"
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    stateless: bool = False
    json_response: bool = False

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def origins(self) -> list[str]:
        """Origins a browser page may call us from: loopback pages when bound to loopback, plus the flags."""
        base = [f"http://{name}:*" for name in LOOPBACK_NAMES] + [f"http://{n}" for n in LOOPBACK_NAMES]
        return [*(base if self.loopback else []), *self.allowed_origins]

    def hosts(self) -> list[str]:
        """Host header values we answer: loopback names on loopback, plus `--allowed-host`."""
        base = [f"{name}:*" for name in LOOPBACK_NAMES] + list(LOOPBACK_NAMES)
        return [*(base if self.loopback else []), *self.allowed_hosts]


def _matches(value: str, allowed: Sequence[str]) -> bool:
    """Exact match, or `base:*` = base with any port (the SDK's pattern syntax)."""
    for pattern in allowed:
        if value == pattern:
            return True
        if pattern.endswith(":*") and value.startswith(pattern[:-1]) and value[len(pattern) - 1 :].isdigit():
            return True
    return False


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class ToolNarrowing:
    """Server middleware: per-request `X-MCP-*` headers narrow the registered tools, never widen them."""

    def __init__(self, settings: Settings, registered: Sequence[str]) -> None:
        self._mode = settings.mode
        self._registered = frozenset(registered)
        catalogued = tuple(name for name in registered if name not in REVIEW_APP_TOOLS)
        specs, _ = select_tools(mode=settings.mode, tools=catalogued) if catalogued else ([], [])
        self._read_only = frozenset(spec.name for spec in specs if spec.read_only)
        self._resolve_cached = lru_cache(maxsize=256)(self._resolve)

    def allowed(self, headers: Mapping[str, str]) -> frozenset[str] | None:
        """The tool names this request may see, or None when it asks for no narrowing.

        Raises SelectionError for unknown names or an oversized header (answered with 400).
        """
        values = tuple((headers.get(name) or "").strip() for name in SELECTION_HEADERS)
        if not any(values):
            return None
        if any(len(v) > _MAX_SELECTION_HEADER for v in values):
            raise SelectionError("a tool selection header is too long")
        return self._resolve_cached(*values)

    def _resolve(self, toolsets: str, tools: str, readonly: str) -> frozenset[str]:
        wanted_sets, wanted_tools = _split(toolsets), _split(tools)
        if wanted_sets or wanted_tools:
            specs, _ = select_tools(mode=self._mode, toolsets=wanted_sets or None, tools=wanted_tools or None)
            chosen = {spec.name for spec in specs} & self._registered
        else:
            chosen = set(self._registered)
        if _truthy(readonly):
            chosen &= self._read_only
        return frozenset(chosen | (review_app_tools_beside(chosen) & self._registered))

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in _NARROWED_METHODS:
            return await call_next(ctx)
        request = ctx.request
        headers = getattr(request, "headers", None)
        if headers is None:  # not an HTTP request (stdio, in-memory): nothing to narrow
            return await call_next(ctx)
        allowed = self.allowed(headers)  # already validated by RequestGuard, so this does not raise
        if allowed is None:
            return await call_next(ctx)
        if ctx.method in ("resources/read", "resources/subscribe"):
            needed = _tool_for_mail_resource(str((ctx.params or {}).get("uri", "")))
            if needed is not None and needed not in allowed:
                logger.info("resource refused: %s is outside this request's tool selection", needed)
                raise MCPError(
                    INVALID_PARAMS,
                    f"this resource is not available to this client (it needs the {needed} tool);"
                    " its X-MCP-* headers narrow what it may read",
                )
            return await call_next(ctx)
        if ctx.method == "subscriptions/listen":
            notifications = (ctx.params or {}).get("notifications")
            uris = notifications.get("resourceSubscriptions") if isinstance(notifications, dict) else None
            needed_tools = {_tool_for_mail_resource(str(uri)) for uri in uris or ()} - {None}
            if not needed_tools <= allowed:
                raise MCPError(
                    INVALID_PARAMS,
                    "these resources are not available to this client (they need the "
                    f"{', '.join(sorted(t for t in needed_tools - allowed if t))} tool);"
                    " its X-MCP-* headers narrow what it may follow",
                )
            return await call_next(ctx)
        if ctx.method == "resources/templates/list":
            return _filter_templates(await call_next(ctx), allowed)
        if ctx.method == "tools/call":
            name = str((ctx.params or {}).get("name"))
            if name not in allowed:
                logger.info("tool %s refused: outside this request's tool selection", name[:80])
                return fail(
                    MamError(
                        f"tool {name[:80]!r} is not available to this client",
                        code="TOOL_NOT_AVAILABLE",
                        hint="Call only tools listed by tools/list; this client's X-MCP-* headers narrow them.",
                    )
                )
            return await call_next(ctx)
        result = await call_next(ctx)
        return _filter_tool_list(result, allowed)


_NARROWED_METHODS = (
    "tools/list", "tools/call", "resources/read", "resources/subscribe", "resources/templates/list",
    "subscriptions/listen",
)  # fmt: skip
# Mail read through a resource template follows the tool that reads the same thing: a client
# narrowed away from get_message must not read messages as resources instead (nor an inbox's
# message list, or follow it, without list_messages).
_MAIL_TEMPLATE_TOOLS = {"messages": "list_messages", "message": "get_message", "attachment": "get_attachment"}
_MAIL_URI_PREFIX = "myagentmail://inboxes/"


def _tool_for_mail_resource(uri: str) -> str | None:
    if not uri.startswith(_MAIL_URI_PREFIX):
        return None  # SKILL.md and the reference docs stay readable
    if "/attachments/" in uri:
        return _MAIL_TEMPLATE_TOOLS["attachment"]
    return _MAIL_TEMPLATE_TOOLS["messages" if uri.endswith("/messages") else "message"]


def _filter_templates(result: HandlerResult, allowed: frozenset[str]) -> HandlerResult:
    def keep(template: Any) -> bool:
        uri = getattr(template, "uri_template", None) or (
            template.get("uriTemplate") if isinstance(template, dict) else ""
        )
        needed = _tool_for_mail_resource(str(uri or ""))
        return needed is None or needed in allowed

    return _filter_listing(result, "resource_templates", "resourceTemplates", keep)


def _filter_tool_list(result: HandlerResult, allowed: frozenset[str]) -> HandlerResult:
    def keep(tool: Any) -> bool:
        return (tool.get("name") if isinstance(tool, dict) else getattr(tool, "name", None)) in allowed

    return _filter_listing(result, "tools", "tools", keep)


def _filter_listing(
    result: HandlerResult, field: str, wire_key: str, keep: Callable[[Any], bool]
) -> HandlerResult:
    """A list result (typed model or wire dict) with only the entries `keep` accepts."""
    entries = getattr(result, field, None)
    if entries is not None:
        return result.model_copy(update={field: [e for e in entries if keep(e)]})  # type: ignore[union-attr]
    if isinstance(result, dict) and isinstance(result.get(wire_key), list):
        return {**result, wire_key: [e for e in result[wire_key] if keep(e)]}
    return result


class RequestGuard:
    """ASGI middleware in front of the SDK's app: Origin/Host, then the bearer token, then the selection headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        options: HttpOptions,
        auth_token: str | None,
        narrowing: ToolNarrowing,
        session_limit: SessionLimit | None = None,
    ) -> None:
        self.app = app
        self._origins = options.origins()
        self._hosts = options.hosts()
        self._token = auth_token.encode("utf-8") if auth_token else None
        self._narrowing = narrowing
        self._session_limit = session_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan passes through; the app serves no WebSockets
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if self._session_limit is not None and "mcp-session-id" not in headers:
            send = self._session_limit.explain_refusal(send)  # a request that would open a session
        await self.app(scope, receive, send)

    def _check(self, headers: Headers) -> JSONResponse | None:
        origin = headers.get("origin")
        if origin is not None and not _matches(origin, self._origins):
            logger.warning(
                "refused a request from origin %r (not allowed; see --allowed-origin)", origin[:200]
            )
            return _refusal(403, "FORBIDDEN_ORIGIN", "this Origin is not allowed (DNS-rebinding protection)")
        host = headers.get("host")
        if self._hosts and (host is None or not _matches(host, self._hosts)):
            logger.warning(
                "refused a request for host %r (not allowed; see --allowed-host)", (host or "")[:200]
            )
            return _refusal(
                421, "MISDIRECTED_HOST", "this Host is not served here (DNS-rebinding protection)"
            )
        if self._token is not None and not self._token_ok(headers.get("authorization")):
            response = _refusal(401, "AUTH_REQUIRED", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="mam-mcp"'
            return response
        try:
            self._narrowing.allowed(headers)
        except SelectionError as error:
            return _refusal(400, "VALIDATION_ERROR", f"tool selection headers: {error}")
        return None

    def _token_ok(self, authorization: str | None) -> bool:
        assert self._token is not None
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time whatever the presented value is: compare_digest on equal-typed bytes.
        return hmac.compare_digest(presented.strip().encode("utf-8"), self._token)


@dataclass(frozen=True)
class SessionLimit:
    """The streamable HTTP session cap (enforced by the SDK) and idle expiry, explained when it refuses."""

    max_sessions: int
    idle_timeout_seconds: float
    retry_after_seconds: int = 5

    def explain_refusal(self, send: Send) -> Send:
        """`send` with the SDK's terse 503 for one session too many replaced by one that says what to do."""
        refused = False

        async def explaining(message: MutableMapping[str, Any]) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 503:
                refused = True
                return  # the SDK's own body follows: ours replaces both
            if not refused:
                await send(message)
                return
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                body = self._body()
                await send({
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(self.retry_after_seconds).encode()),
                    ],
                })  # fmt: skip
                await send({"type": "http.response.body", "body": body})

        return explaining

    def _body(self) -> bytes:
        message = (
            f"too many open sessions: this server holds at most {self.max_sessions} "
            "(--max-sessions / MAM_MCP_MAX_SESSIONS); retry in a few seconds. A session ends when its "
            f"client sends DELETE with its Mcp-Session-Id, or after {self.idle_timeout_seconds:g} s without "
            "a request (--session-idle-timeout)."
        )
        error = {"code": -32000, "message": message, "data": {"code": "TOO_MANY_SESSIONS", "retry_after_seconds": self.retry_after_seconds}}
        return json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()


class StreamEnder:
    """ASGI wrapper: a response the app started but left open (an SSE stream cut by shutdown) is ended
    properly, and what the app sends after its response ended is dropped (the SDK's SSE endpoint
    sends a second, empty response), so Ctrl-C stops the server without an error in its log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "ended": False, "second": False}

        async def tracked(message: Any) -> None:
            if message["type"] == "http.response.start" and state["started"]:
                state["second"] = True  # a second response on one request: drop it, end the first below
            if state["ended"] or state["second"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await send(message)

        await self.app(scope, receive, tracked)
        if state["started"] and not state["ended"]:
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the client is already gone
                pass


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def _sdk_security(options: HttpOptions) -> TransportSecuritySettings:
    """The SDK's own check, given our lists explicitly (it would otherwise only guess, and only on loopback)."""
    hosts = options.hosts()
    if not hosts:  # a public bind without --allowed-host: the SDK cannot skip Host alone; ours checks Origin
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=options.origins()
    )


def check_start(settings: Settings, options: HttpOptions) -> None:
    """Refuse unsafe start-ups before anything listens."""
    if not options.loopback and settings.auth_token is None:
        raise HttpStartRefused(
            f"refusing to serve on {options.host} (not loopback) without a bearer token: "
            "set MAM_MCP_AUTH_TOKEN (or --auth-token), or bind to 127.0.0.1"
        )
    if settings.auth_token is not None and len(settings.auth_token.get_secret_value()) < 16:
        raise HttpStartRefused(
            "the bearer token is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)"
        )


def build_http_app(
    settings: Settings,
    options: HttpOptions,
    *,
    client_factory: ClientFactory | None = None,
    server: MCPServer | None = None,
) -> RequestGuard:
    """The guarded ASGI app. Raises HttpStartRefused for unsafe options, SelectionError for bad names.

    The returned app's `.server` is the MCPServer (its `.runtime` must be closed by the caller).
    """
    check_start(settings, options)
    if server is None:
        from mam_mcp.server import build_server

        server = build_server(settings, client_factory=client_factory)
    registered = [tool.name for tool in server._tool_manager.list_tools()]  # the SDK has no public getter
    narrowing = ToolNarrowing(settings, registered)
    _install_first(server, narrowing)
    security = _sdk_security(options)
    inner: ASGIApp
    session_limit = None
    if options.transport == "sse":
        inner = server.sse_app(transport_security=security, host=options.host)
    else:
        inner = server.streamable_http_app(
            streamable_http_path=options.path,
            stateless_http=options.stateless,
            json_response=options.json_response,
            transport_security=security,
            host=options.host,
            session_idle_timeout=settings.session_idle_timeout_seconds,
            max_sessions=settings.max_sessions,
        )
        if not options.stateless:
            session_limit = SessionLimit(settings.max_sessions, settings.session_idle_timeout_seconds)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    guard = RequestGuard(
        StreamEnder(inner), options=options, auth_token=token, narrowing=narrowing, session_limit=session_limit
    )
    guard.server = server  # type: ignore[attr-defined]
    return guard


def _install_first(server: MCPServer, narrowing: ToolNarrowing) -> None:
    """Put the narrowing before our argument checks, so a hidden tool is refused before its arguments are read."""
    chain = server.middleware
    index = next((i for i, m in enumerate(chain) if type(m).__name__ == "ArgumentGuard"), len(chain))
    chain.insert(index, narrowing)


@dataclass(frozen=True)
class HttpAppFactory:
    """Builds the app inside each worker process (`--workers N`): picklable, so uvicorn can spawn workers with it."""

    settings: Settings
    options: HttpOptions

    def __call__(self) -> RequestGuard:
        return build_http_app(self.settings, self.options)
