"""/v1/inboxes: create (with `reveal=true` redaction), list, get, update, delete, addresses, keys."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mam_mcp.local.api.access import caller
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
from mam_mcp.local.timestamps import iso_utc

__all__ = ["inbox_routes"]

_USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
TTL_MIN_SECONDS = 60
TTL_MAX_SECONDS = 30 * 86_400


class CreateInbox(StrictBody):
    username: str | None = Field(default=None, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    domain: str | None = Field(default=None, max_length=253)
    workspace_id: str | None = None
    metadata: dict[str, Any] | None = None
    # Local only (the hosted API has no such field): the daemon deletes the inbox and its mail after it.
    ttl_seconds: int | None = Field(default=None, ge=TTL_MIN_SECONDS, le=TTL_MAX_SECONDS)


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
    await backend.accounts.check_tenant_workspace(scope, requested)
    return requested


def _credentials(backend: LocalBackend, email: str) -> dict[str, Any]:
    # The local backend has no IMAP server and its SMTP ingress takes no password: passwords are "".
    host = backend.config.host
    return {
        "imap": {"host": host, "port": None, "username": email, "password": ""},
        "smtp": {"host": host, "port": backend.smtp_port, "username": email, "password": ""},
    }


def _inbox_detail(backend: LocalBackend, row: dict[str, Any]) -> dict[str, Any]:
    out = inbox_wire(row)
    out.update(_credentials(backend, row["email"]))
    return out


async def create_inbox(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    scope, backend = who.scope, who.backend
    body = await parse_body(request, CreateInbox, optional=True)
    _check_display_name(body.display_name)
    username = (body.username or f"agent-{secrets.token_hex(4)}").strip().lower()
    if not _USERNAME_RE.match(username):
        raise BackendError.validation("username", "use letters, digits and . _ + - (max 64)")
    workspace_id = await _target_workspace(backend, scope, body.workspace_id)
    domain = (body.domain or backend.config.domain).strip().lower()
    await backend.admin.check_domain_usable(scope, domain, workspace_id)
    expires_at = None
    if body.ttl_seconds is not None:
        expires_at = iso_utc(datetime.now(UTC) + timedelta(seconds=body.ttl_seconds))
    reveal = bool_param(request, "reveal") is True

    async def make() -> dict[str, Any]:
        row, minted = await backend.accounts.create_inbox(
            tenant_id=scope.tenant_id,
            workspace_id=workspace_id,
            username=username,
            domain=domain,
            display_name=body.display_name,
            metadata=body.metadata,
            expires_at=expires_at,
        )
        out = _inbox_detail(backend, row)
        out["apiKey"] = minted.key if reveal else ""
        out["imapPassword"] = ""
        out["credentialsRevealed"] = reveal
        return out

    return await create_once(request, scope, make, secret_fields=("apiKey",))


async def list_inboxes(request: Request) -> JSONResponse:
    who = caller(request)
    scope = who.scope
    limit, offset = page_params(request, default_limit=100)
    workspace = request.query_params.get("workspace") or None
    if scope.kind == "tk":
        workspace_id = workspace
    else:
        if workspace is not None and workspace != scope.workspace_id:
            return json_response({"inboxes": []})
        workspace_id = scope.workspace_id if scope.kind == "wk" else None
    rows = await who.backend.accounts.inboxes(
        scope.tenant_id,
        workspace_id=workspace_id,
        inbox_id=scope.inbox_id if scope.kind == "ak" else None,
        limit=limit,
        offset=offset,
    )
    return json_response({"inboxes": [inbox_wire(r) for r in rows]})


async def get_inbox(request: Request) -> JSONResponse:
    who = caller(request)
    return json_response(_inbox_detail(who.backend, await who.backend.accounts.inbox(who.inbox().id)))


async def update_inbox(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, UpdateInbox)
    _check_display_name(body.display_name)
    row = await who.backend.accounts.update_inbox(
        record.id,
        display_name=body.display_name,
        metadata=body.metadata,
        set_meta="metadata" in body.model_fields_set,
    )
    return json_response(_inbox_detail(who.backend, row))


async def delete_inbox(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    await who.backend.accounts.delete_inbox(who.inbox().id)
    return ok()


async def add_address(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, AddAddress)
    address = valid_address(body.email, "email").lower()
    backend = who.backend
    await backend.admin.check_domain_usable(who.scope, address.rpartition("@")[2], record.workspace_id)

    async def make() -> dict[str, Any]:
        return _inbox_detail(backend, await backend.accounts.add_address(record.id, address, primary=body.primary))

    return await create_once(request, who.scope, make, status=200)


async def remove_address(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    address = who.param("address").strip().lower()
    if address == record.email.lower():
        raise BackendError.validation("address", "the canonical address cannot be removed")
    return json_response(_inbox_detail(who.backend, await who.backend.accounts.remove_address(record.id, address)))


async def create_inbox_key(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    record = who.inbox()
    body = await parse_body(request, CreateKey, optional=True)

    async def make() -> dict[str, Any]:
        minted = await who.backend.accounts.mint(
            "ak", tenant_id=record.tenant_id, workspace_id=record.workspace_id, inbox_id=record.id, name=body.name
        )
        return {
            "id": minted.id,
            "key": minted.key,
            "name": minted.name,
            "prefix": minted.prefix,
            "createdAt": minted.created_at,
        }

    return await create_once(request, who.scope, make, secret_fields=("key",))


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
