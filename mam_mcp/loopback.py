"""What counts as "this machine", in one place: hosts, URLs, and the daemon's request guard.

Used by the HTTP transport (bind checks), the API client (no proxy for loopback), the SMTP
listener and the local daemon, whose guard refuses requests a web page could make through DNS
rebinding: a `Host` that is not a loopback name or address, or an `Origin` of another site.
Standard library and ASGI types only, so `mam_mcp.local` can use it.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_NAMES", "LoopbackRequestGuard", "is_loopback", "is_loopback_url", "loopback_request"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, `localhost` and `*.localhost`; False for 0.0.0.0, :: and any other name
    (a name other than localhost may resolve anywhere)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True for a URL on this machine (localhost, 127.0.0.0/8, ::1)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_loopback(host)


def _host_of(header: str) -> str:
    """The host of a Host header value (`name`, `name:port`, `[v6]:port`)."""
    header = header.strip()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def loopback_request(headers: dict[str, str]) -> str | None:
    """Why a request may not come from this machine's own clients, or None when it may."""
    host = headers.get("host", "")
    if not is_loopback(_host_of(host)):
        return "Host"
    origin = headers.get("origin")
    if origin is not None and not is_loopback_url(origin):  # "null" (a sandboxed page) included
        return "Origin"
    return None


class LoopbackRequestGuard:
    """ASGI middleware: HTTP and WebSocket requests must name a loopback Host, and an Origin, when a
    browser sends one, must be a loopback page. Anything else gets 403 before the app sees it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = loopback_request(headers)
        if refused is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": f"foreign {refused}"})
            return
        body = json.dumps(
            {"error": f"requests from another site are refused (foreign {refused} header)", "code": "FORBIDDEN_ORIGIN"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
