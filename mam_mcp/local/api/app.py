"""The local backend's Starlette app: every email endpoint of /v1 (docs/contract.md) plus health.

Errors are always `{"error", "code"}` (+ `details` on 400): never a stack trace, never a secret.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mam_mcp
from mam_mcp.local.api.admin import admin_routes
from mam_mcp.local.api.inboxes import inbox_routes
from mam_mcp.local.api.messages import message_routes
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "VALIDATION_ERROR", 413: "PAYLOAD_TOO_LARGE"}


def _error(status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, object] = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


async def _backend_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendError)
    response = _error(exc.status, exc.code, exc.message, exc.details)
    response.headers.update(exc.headers)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = "not found" if exc.status_code == 404 else str(exc.detail)
    return _error(exc.status_code, code, message)


class _OpaqueErrors:
    """Any unexpected exception becomes a bare 500 INTERNAL_ERROR; the log gets its type and frames only.

    An exception message may quote a key or a mail address, so it is never logged or returned;
    and unlike Starlette's own handler nothing is re-raised for the server to print.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing unexpected leaves as a trace
            frames = "".join(traceback.format_tb(exc.__traceback__))
            logger.error(
                "unhandled %s on %s %s\n%s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                frames,
            )
            if not started:
                await _error(500, "INTERNAL_ERROR", "internal error")(scope, receive, send)


def create_app(backend: LocalBackend, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app over one LocalBackend; `extra_routes` (WebSockets, shutdown) come first."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "ok": True,
                "service": "mam-mcp-local",
                "version": mam_mcp.__version__,
                "pid": os.getpid(),
                "smtpPort": backend.smtp_port,
            }
        )

    routes: list[BaseRoute] = [
        *extra_routes,
        Route("/_mam/health", health, methods=["GET"]),
        *inbox_routes(),
        *message_routes(),
        *admin_routes(),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            BackendError: _backend_error,
            HTTPException: _http_error,
        },
        middleware=[Middleware(_OpaqueErrors)],
    )
    app.state.backend = backend
    return app
