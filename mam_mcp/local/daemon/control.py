"""The daemon's own routes beside the API: `POST /_mam/shutdown` and `GET /_mam/status`."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import mam_mcp
from mam_mcp.local.auth.credentials import presented_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.activity import ActivityTracker

__all__ = ["shutdown_route", "status_route"]


def shutdown_route(tenant_key: str, request_shutdown: Callable[[], None]) -> Route:
    """`POST /_mam/shutdown`: stop the daemon (the launcher's way to replace a stale one)."""

    async def shutdown(request: Request) -> JSONResponse:
        presented = presented_key(request)
        if not presented or not hmac.compare_digest(presented.encode(), tenant_key.encode()):
            return JSONResponse(
                {"error": "a valid tenant key is required", "code": "AUTH_INVALID"}, status_code=401
            )
        request_shutdown()
        return JSONResponse({"ok": True}, status_code=202)

    return Route("/_mam/shutdown", shutdown, methods=["POST"])


def status_route(config: LocalConfig, tracker: ActivityTracker, started: float) -> Route:
    """`GET /_mam/status`: uptime and idle time for `mam-mcp local status` (not counted as activity)."""

    async def status(request: Request) -> JSONResponse:
        now = time.monotonic()
        idle_since = tracker.idle_since
        return JSONResponse(
            {
                "service": "mam-mcp-local",
                "version": mam_mcp.__version__,
                "pid": os.getpid(),
                "httpPort": config.http_port,
                "smtpPort": config.smtp_port,
                "uptimeSeconds": round(now - started, 1),
                "idleSeconds": None if idle_since is None else round(now - idle_since, 1),  # None: a client is on
                "idleTimeoutSeconds": config.idle_timeout_seconds,
            }
        )

    return Route("/_mam/status", status, methods=["GET"])
