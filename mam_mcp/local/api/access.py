"""Who is calling and what they may touch: every /v1 route starts here.

A key is read from `X-API-Key` or `Authorization: Bearer`; an inbox or workspace outside the
key's scope answers 404, exactly as one that does not exist (existence is never revealed).
"""

from __future__ import annotations

import math

from starlette.requests import Request

from mam_mcp.local.auth.credentials import presented_key
from mam_mcp.local.auth.scope import KeyKind, KeyScope
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.directory import InboxRecord

__all__ = ["authenticate", "backend_of", "check_tenant_workspace", "inbox_in_scope", "require_kind", "visible_inbox"]


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


def inbox_in_scope(request: Request, scope: KeyScope) -> InboxRecord:
    """The path's inbox if the key may see it; 404 otherwise (existence is never revealed)."""
    return visible_inbox(backend_of(request), scope, request.path_params["inbox_id"])


def visible_inbox(backend: LocalBackend, scope: KeyScope, inbox_id: str) -> InboxRecord:
    """The inbox if the key may see it; 404 otherwise (existence is never revealed)."""
    record = backend.store.accounts.inbox_record(inbox_id)
    if record is None or not scope.can_see(
        tenant_id=record.tenant_id, workspace_id=record.workspace_id, inbox_id=record.id
    ):
        raise BackendError.not_found("inbox")
    return record


async def check_tenant_workspace(backend: LocalBackend, scope: KeyScope, workspace_id: str) -> None:
    """404 unless the workspace a tk_ key names is in its own tenant."""
    workspace = await backend.store.accounts.get_workspace(workspace_id)
    if workspace is None or workspace["tenant_id"] != scope.tenant_id:
        raise BackendError.not_found("workspace")
