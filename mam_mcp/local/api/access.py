"""Who is calling and what they may touch: every /v1 route starts here, with `caller()`.

`caller(request, *kinds)` authenticates the key (`X-API-Key` or `Authorization: Bearer`), refuses
a key kind the route never serves (403 `AUTH_FORBIDDEN`) and returns a `Caller`: the key's scope
and the backend's services. `Caller.inbox()` resolves the path's inbox. A resource outside the
key's scope answers 404, exactly as one that does not exist (existence is never revealed); the
services (`service/accounts.py`, `service/admin.py`) apply the same rule to workspaces, domains
and webhooks. Routes call services only, never the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import Request

from mam_mcp.local.auth.credentials import presented_key
from mam_mcp.local.auth.scope import KeyKind, KeyScope
from mam_mcp.local.service.accounts import InboxRecord
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError

__all__ = [
    "Caller",
    "authenticate",
    "backend_of",
    "caller",
    "require_kind",
    "visible_inbox",
]


@dataclass(frozen=True, slots=True)
class Caller:
    """One request's authenticated caller: its key scope, the backend, and the path it asked for."""

    request: Request
    scope: KeyScope
    backend: LocalBackend

    def inbox(self) -> InboxRecord:
        """The path's `{inbox_id}` if the key may see it; 404 otherwise."""
        return self.backend.accounts.visible_inbox(self.scope, self.request.path_params["inbox_id"])

    def param(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value


def caller(request: Request, *kinds: KeyKind) -> Caller:
    """Authenticate (401/429), and with `kinds`, refuse any other kind of key (403)."""
    scope = authenticate(request)
    if kinds:
        require_kind(scope, *kinds)
    return Caller(request, scope, backend_of(request))


def backend_of(request: Request) -> LocalBackend:
    backend: LocalBackend = request.app.state.backend
    return backend


def authenticate(request: Request) -> KeyScope:
    """The caller's scope from `X-API-Key` or `Authorization: Bearer`; 401/429 otherwise."""
    presented = presented_key(request)
    if presented is None:
        raise BackendError(401, "AUTH_MISSING", "an API key is required (X-API-Key header)")
    backend = backend_of(request)
    locked_for = backend.keys.lockout_seconds(presented)
    if locked_for > 0:
        seconds = math.ceil(locked_for)
        raise BackendError(
            429,
            "AUTH_LOCKOUT",
            f"too many failed attempts with this key; locked for {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    scope = backend.authenticate(presented)
    if scope is None:
        raise BackendError(401, "AUTH_INVALID", "the API key is not valid")
    return scope


def require_kind(scope: KeyScope, *kinds: KeyKind) -> None:
    """403 for a resource type this kind of key may never use."""
    if scope.kind not in kinds:
        raise BackendError(403, "AUTH_FORBIDDEN", f"a {scope.kind}_ key cannot use this endpoint")


def visible_inbox(backend: LocalBackend, scope: KeyScope, inbox_id: str) -> InboxRecord:
    """The inbox if the key may see it; 404 otherwise (existence is never revealed)."""
    return backend.accounts.visible_inbox(scope, inbox_id)
