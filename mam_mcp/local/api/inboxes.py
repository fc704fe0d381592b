"""/v1/inboxes: create (with `reveal=true` redaction), list, get, update, delete, addresses, keys."""

from __future__ import annotations

import re
import secrets
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mam_mcp.local.api.access import (
    authenticate,
    backend_of,
    check_tenant_workspace,
    inbox_in_scope,
    require_kind,
)
from mam_mcp.local.api.creates import create_once
from mam_mcp.local.api.params import (
    CreateKey,
    StrictBody,
    bool_param,
    check_header_argument,
    page_params,
    parse_body,
    valid_address,
)
from mam_mcp.local.api.wire import inbox_wire, json_response, ok
from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.rows import ConflictError

__all__ = ["inbox_routes"]

_USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")


class CreateInbox(StrictBody):
    username: str | None = Field(default=None, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    domain: str | None = Field(default=None, max_length=253)
    workspace_id: str | None = None
    metadata: dict[str, Any] | None = None


class UpdateInbox(StrictBody):
    display_name: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] | None = None


class AddAddress(StrictBody):
    email: str = Field(max_length=320)
    primary: bool = False


def _check_display_name(value: str | None) -> None:
    check_header_argument("displayName", value)  # it becomes the From header's display name


async def _target_workspace(backend: LocalBackend, scope: KeyScope, requested: str | None) -> str | None:
    if scope.kind == "wk":
        if requested is not None and requested != scope.workspace_id:
            raise BackendError.not_found("workspace")
        return scope.workspace_id
    if requested is None:
        return None
    await check_tenant_workspace(backend, scope, requested)
    return requested


async def check_domain_usable(
    backend: LocalBackend, scope: KeyScope, domain: str, workspace_id: str | None
) -> None:
    """The local domain is always usable; a custom one must be this tenant's and verified."""
    if domain.lower() == backend.config.domain.lower():
        return
    row = await backend.store.admin.get_domain(domain)
    if row is None or row["tenant_id"] != scope.tenant_id:
        raise BackendError(403, "DOMAIN_NOT_VERIFIED", f"domain {domain} is not registered and verified")
    if row["workspace_id"] is not None and row["workspace_id"] != workspace_id:
        raise BackendError(403, "DOMAIN_WRONG_WORKSPACE", f"domain {domain} belongs to a different workspace")
    if row["status"] != "verified":
        raise BackendError(403, "DOMAIN_NOT_VERIFIED", f"domain {domain} is not verified yet")


def _credentials(backend: LocalBackend, email: str) -> dict[str, Any]:
    # The local backend has no IMAP server and its SMTP ingress takes no password: passwords are "".
    host = backend.config.host
    return {
        "imap": {"host": host, "port": None, "username": email, "password": ""},
        "smtp": {"host": host, "port": backend.smtp_port, "username": email, "password": ""},
    }


async def create_inbox(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    body = await parse_body(request, CreateInbox, optional=True)
    backend = backend_of(request)
    _check_display_name(body.display_name)
    username = (body.username or f"agent-{secrets.token_hex(4)}").strip().lower()
    if not _USERNAME_RE.match(username):
        raise BackendError.validation("username", "use letters, digits and . _ + - (max 64)")
    workspace_id = await _target_workspace(backend, scope, body.workspace_id)
    domain = (body.domain or backend.config.domain).strip().lower()
    await check_domain_usable(backend, scope, domain, workspace_id)
    reveal = bool_param(request, "reveal") is True

    async def make() -> dict[str, Any]:
        try:
            row = await backend.store.accounts.create_inbox(
                tenant_id=scope.tenant_id,
                workspace_id=workspace_id,
                username=username,
                domain=domain,
                display_name=body.display_name,
                metadata=body.metadata,
            )
        except ConflictError as exc:
            raise BackendError(409, "CONFLICT", str(exc)) from None
        minted = await backend.keys.mint(
            "ak", tenant_id=scope.tenant_id, workspace_id=workspace_id, inbox_id=row["id"], name="inbox key"
        )
        out = inbox_wire(row)
        out.update(_credentials(backend, row["email"]))
        out["apiKey"] = minted.key if reveal else ""
        out["imapPassword"] = ""
        out["credentialsRevealed"] = reveal
        return out

    return await create_once(request, scope, make, secret_fields=("apiKey",))


async def list_inboxes(request: Request) -> JSONResponse:
    scope = authenticate(request)
    limit, offset = page_params(request, default_limit=100)
    backend = backend_of(request)
    workspace = request.query_params.get("workspace") or None
    if scope.kind == "tk":
        workspace_id = workspace
    else:
        if workspace is not None and workspace != scope.workspace_id:
            return json_response({"inboxes": []})
        workspace_id = scope.workspace_id if scope.kind == "wk" else None
    rows = await backend.store.accounts.list_inboxes(
        scope.tenant_id,
        workspace_id=workspace_id,
        inbox_id=scope.inbox_id if scope.kind == "ak" else None,
        limit=limit,
        offset=offset,
    )
    return json_response({"inboxes": [inbox_wire(r) for r in rows]})


async def _inbox_detail(backend: LocalBackend, inbox_id: str) -> dict[str, Any]:
    row = await backend.store.accounts.get_inbox(inbox_id)
    if row is None:
        raise BackendError.not_found("inbox")
    out = inbox_wire(row)
    out.update(_credentials(backend, row["email"]))
    return out


async def get_inbox(request: Request) -> JSONResponse:
    scope = authenticate(request)
    record = inbox_in_scope(request, scope)
    return json_response(await _inbox_detail(backend_of(request), record.id))


async def update_inbox(request: Request) -> JSONResponse:
    scope = authenticate(request)
    record = inbox_in_scope(request, scope)
    body = await parse_body(request, UpdateInbox)
    _check_display_name(body.display_name)
    backend = backend_of(request)
    await backend.store.accounts.update_inbox(
        record.id,
        display_name=body.display_name,
        metadata=body.metadata,
        set_meta="metadata" in body.model_fields_set,
    )
    return json_response(await _inbox_detail(backend, record.id))


async def delete_inbox(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    record = inbox_in_scope(request, scope)
    backend = backend_of(request)
    await backend.store.delete_inbox(record.id)
    backend.keys.forget(lambda key: key.inbox_id == record.id)
    return ok()


async def add_address(request: Request) -> JSONResponse:
    scope = authenticate(request)
    record = inbox_in_scope(request, scope)
    body = await parse_body(request, AddAddress)
    address = valid_address(body.email, "email").lower()
    backend = backend_of(request)
    await check_domain_usable(backend, scope, address.rpartition("@")[2], record.workspace_id)

    async def make() -> dict[str, Any]:
        try:
            await backend.store.accounts.add_address(record.id, address, primary=body.primary)
        except ConflictError as exc:
            raise BackendError(409, "CONFLICT", str(exc)) from None
        return await _inbox_detail(backend, record.id)

    return await create_once(request, scope, make, status=200)


async def remove_address(request: Request) -> JSONResponse:
    scope = authenticate(request)
    record = inbox_in_scope(request, scope)
    address = request.path_params["address"].strip().lower()
    if address == record.email.lower():
        raise BackendError.validation("address", "the canonical address cannot be removed")
    backend = backend_of(request)
    if not await backend.store.accounts.remove_address(record.id, address):
        raise BackendError.not_found("address")
    return json_response(await _inbox_detail(backend, record.id))


async def create_inbox_key(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    record = inbox_in_scope(request, scope)
    body = await parse_body(request, CreateKey, optional=True)

    async def make() -> dict[str, Any]:
        minted = await backend_of(request).keys.mint(
            "ak", tenant_id=record.tenant_id, workspace_id=record.workspace_id, inbox_id=record.id, name=body.name
        )
        return {
            "id": minted.id,
            "key": minted.key,
            "name": minted.name,
            "prefix": minted.prefix,
            "createdAt": minted.created_at,
        }

    return await create_once(request, scope, make, secret_fields=("key",))


def inbox_routes() -> list[Route]:
    return [
        Route("/v1/inboxes", create_inbox, methods=["POST"]),
        Route("/v1/inboxes", list_inboxes, methods=["GET"]),
        Route("/v1/inboxes/{inbox_id}", get_inbox, methods=["GET"]),
        Route("/v1/inboxes/{inbox_id}", update_inbox, methods=["PATCH"]),
        Route("/v1/inboxes/{inbox_id}", delete_inbox, methods=["DELETE"]),
        Route("/v1/inboxes/{inbox_id}/addresses", add_address, methods=["POST"]),
        Route("/v1/inboxes/{inbox_id}/addresses/{address}", remove_address, methods=["DELETE"]),
        Route("/v1/inboxes/{inbox_id}/keys", create_inbox_key, methods=["POST"]),
    ]
