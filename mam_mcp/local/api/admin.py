"""/v1 admin resources: address lists, domains, workspaces (+ keys), webhooks, metrics, verify-email."""

from __future__ import annotations

import json
import secrets
from typing import Any

import anyio
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from mam_mcp.local.api.access import (
    authenticate,
    backend_of,
    check_tenant_workspace,
    inbox_in_scope,
    require_kind,
    visible_inbox,
)
from mam_mcp.local.api.creates import create_once
from mam_mcp.local.api.params import CreateKey, StrictBody, iso_param, parse_body, valid_address
from mam_mcp.local.api.wire import json_response, ok
from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.dns import DnsError
from mam_mcp.local.events.model import EVENT_TYPES
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.rows import ConflictError, Row

__all__ = ["admin_routes"]

VERIFY_TIMEOUT_SECONDS = 3.0
MAX_VERIFY_BATCH = 50


class CreateList(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class AddEntry(StrictBody):
    email: str = Field(max_length=320)
    display_name: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] | None = None


class CreateDomain(StrictBody):
    domain: str = Field(min_length=3, max_length=253)
    workspace_id: str | None = None


class CreateWorkspace(StrictBody):
    name: str = Field(min_length=1, max_length=200)


class CreateWebhook(StrictBody):
    url: str = Field(min_length=8, max_length=2000)
    events: list[str] = Field(default_factory=lambda: [str(e) for e in EVENT_TYPES], max_length=10)
    inbox_id: str | None = None
    workspace_id: str | None = None


class UpdateWebhook(StrictBody):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    events: list[str] | None = Field(default=None, max_length=10)
    is_active: bool | None = None


class VerifyEmail(StrictBody):
    email: str | None = Field(default=None, max_length=320)
    emails: list[str] | None = Field(default=None, max_length=MAX_VERIFY_BATCH)


# ---------------------------------------------------------------- lists


def _entry_wire(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "email": row["email"], "displayName": row["display_name"],
            "metadata": json.loads(row["metadata"]) if row["metadata"] else None, "createdAt": row["created_at"]}  # fmt: skip


def _list_wire(row: Row) -> dict[str, Any]:
    out = {"id": row["id"], "inboxId": row["inbox_id"], "name": row["name"], "description": row["description"],
           "createdAt": row["created_at"]}  # fmt: skip
    if "entries" in row:
        out["entries"] = [_entry_wire(e) for e in row["entries"]]
    return out


async def create_list(request: Request) -> JSONResponse:
    scope = authenticate(request)
    record = inbox_in_scope(request, scope)
    body = await parse_body(request, CreateList)

    async def make() -> dict[str, Any]:
        return _list_wire(await backend_of(request).store.admin.create_list(record.id, body.name, body.description))

    return await create_once(request, scope, make)


async def list_lists(request: Request) -> JSONResponse:
    scope = authenticate(request)
    record = inbox_in_scope(request, scope)
    rows = await backend_of(request).store.admin.list_lists(record.id)
    return json_response({"lists": [_list_wire(r) for r in rows]})


async def _list_in_scope(request: Request, scope: KeyScope) -> tuple[str, Row]:
    record = inbox_in_scope(request, scope)
    row = await backend_of(request).store.admin.get_list(record.id, request.path_params["list_id"])
    if row is None:
        raise BackendError.not_found("list")
    return record.id, row


async def get_list(request: Request) -> JSONResponse:
    _, row = await _list_in_scope(request, authenticate(request))
    return json_response(_list_wire(row))


async def delete_list(request: Request) -> JSONResponse:
    inbox_id, row = await _list_in_scope(request, authenticate(request))
    await backend_of(request).store.admin.delete_list(inbox_id, row["id"])
    return ok()


async def add_entry(request: Request) -> JSONResponse:
    scope = authenticate(request)
    _, row = await _list_in_scope(request, scope)
    body = await parse_body(request, AddEntry)
    address = valid_address(body.email, "email")

    async def make() -> dict[str, Any]:
        entry = await backend_of(request).store.admin.add_list_entry(
            row["id"], address, body.display_name, body.metadata
        )
        return _entry_wire(entry)

    return await create_once(request, scope, make)


async def remove_entry(request: Request) -> JSONResponse:
    _, row = await _list_in_scope(request, authenticate(request))
    if not await backend_of(request).store.admin.remove_list_entry(row["id"], request.path_params["entry_id"]):
        raise BackendError.not_found("entry")
    return ok()


# ---------------------------------------------------------------- domains


def _domain_records(backend: LocalBackend, row: Row) -> list[dict[str, Any]]:
    domain = row["domain"]
    return [
        {"type": "TXT", "host": f"_mam-verify.{domain}", "value": f"mam-verify={row['verify_token']}"},
        {"type": "MX", "host": domain, "value": backend.config.host, "priority": 10},
    ]


def _domain_wire(backend: LocalBackend, row: Row) -> dict[str, Any]:
    return {
        "domain": row["domain"],
        "status": row["status"],
        "workspaceId": row["workspace_id"],
        "inboundEnabled": row["status"] == "verified",
        "outboundEnabled": row["status"] == "verified",
        "createdAt": row["created_at"],
        "verifiedAt": row["verified_at"],
        "records": _domain_records(backend, row),
    }


async def _domain_in_scope(request: Request, scope: KeyScope) -> Row:
    require_kind(scope, "tk", "wk")
    row = await backend_of(request).store.admin.get_domain(request.path_params["domain"].lower())
    if row is None or not scope.can_see(
        tenant_id=row["tenant_id"], workspace_id=row["workspace_id"], inbox_id=None
    ):
        raise BackendError.not_found("domain")
    return row


async def create_domain(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    body = await parse_body(request, CreateDomain)
    domain = body.domain.strip().lower().rstrip(".")
    if (
        "." not in domain
        or not all(part and len(part) <= 63 for part in domain.split("."))
        or not all(ch.isalnum() or ch in "-." for ch in domain)
    ):
        raise BackendError.validation("domain", "not a valid domain name")
    backend = backend_of(request)
    if domain == backend.config.domain.lower():
        raise BackendError(409, "CONFLICT", "that is the local backend's own domain")
    workspace_id = scope.workspace_id if scope.kind == "wk" else body.workspace_id
    if scope.kind == "tk" and workspace_id is not None:
        await check_tenant_workspace(backend, scope, workspace_id)

    async def make() -> dict[str, Any]:
        try:
            row = await backend.store.admin.create_domain(
                tenant_id=scope.tenant_id, workspace_id=workspace_id, domain=domain, token=secrets.token_hex(16)
            )
        except ConflictError as exc:
            raise BackendError(409, "CONFLICT", str(exc)) from None
        return {"domain": _domain_wire(backend, row)}

    return await create_once(request, scope, make)


async def list_domains(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    backend = backend_of(request)
    rows = await backend.store.admin.list_domains(
        scope.tenant_id, scope.workspace_id if scope.kind == "wk" else None
    )
    return json_response({"domains": [_domain_wire(backend, r) for r in rows]})


async def get_domain(request: Request) -> JSONResponse:
    row = await _domain_in_scope(request, authenticate(request))
    return json_response({"domain": _domain_wire(backend_of(request), row)})


async def verify_domain(request: Request) -> JSONResponse:
    row = await _domain_in_scope(request, authenticate(request))
    backend = backend_of(request)
    expected = f"mam-verify={row['verify_token']}"
    try:
        with anyio.fail_after(VERIFY_TIMEOUT_SECONDS):
            texts = await backend.txt_resolver(f"_mam-verify.{row['domain']}")
        status = "verified" if expected in texts else "failed"
    except (TimeoutError, DnsError, OSError):
        status = "verifying" if row["status"] != "verified" else "verified"
    if status != row["status"]:
        await backend.store.admin.set_domain_status(row["domain"], status)
    fresh = await backend.store.admin.get_domain(row["domain"]) or row
    return json_response({"domain": _domain_wire(backend, fresh)})


async def zone_file(request: Request) -> PlainTextResponse:
    row = await _domain_in_scope(request, authenticate(request))
    lines = [f"; zone records for {row['domain']} (mam-mcp local backend)"]
    for record in _domain_records(backend_of(request), row):
        value = (
            f'"{record["value"]}"'
            if record["type"] == "TXT"
            else f"{record.get('priority', '')} {record['value']}."
        )
        lines.append(f"{record['host']}.\t3600\tIN\t{record['type']}\t{value.strip()}")
    return PlainTextResponse("\n".join(lines) + "\n")


async def delete_domain(request: Request) -> JSONResponse:
    row = await _domain_in_scope(request, authenticate(request))
    await backend_of(request).store.admin.delete_domain(row["domain"])
    return ok()


# ---------------------------------------------------------------- workspaces


def _workspace_wire(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "createdAt": row["created_at"]}


def _key_wire(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "prefix": row["prefix"], "createdAt": row["created_at"],
            "revokedAt": row["revoked_at"]}  # fmt: skip


async def _workspace_in_scope(request: Request, scope: KeyScope) -> Row:
    require_kind(scope, "tk", "wk")
    row = await backend_of(request).store.accounts.get_workspace(request.path_params["workspace_id"])
    if row is None or not scope.can_see(tenant_id=row["tenant_id"], workspace_id=row["id"], inbox_id=None):
        raise BackendError.not_found("workspace")
    return row


async def create_workspace(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk")
    body = await parse_body(request, CreateWorkspace)

    async def make() -> dict[str, Any]:
        return _workspace_wire(await backend_of(request).store.accounts.create_workspace(scope.tenant_id, body.name))

    return await create_once(request, scope, make)


async def list_workspaces(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    rows = await backend_of(request).store.accounts.list_workspaces(
        scope.tenant_id, scope.workspace_id if scope.kind == "wk" else None
    )
    return json_response({"workspaces": [_workspace_wire(r) for r in rows]})


async def get_workspace(request: Request) -> JSONResponse:
    return json_response(_workspace_wire(await _workspace_in_scope(request, authenticate(request))))


async def delete_workspace(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk")
    row = await _workspace_in_scope(request, scope)
    backend = backend_of(request)
    await backend.store.delete_workspace(row["id"])
    backend.keys.forget(lambda key: key.workspace_id == row["id"])
    return ok()


async def create_workspace_key(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk")
    row = await _workspace_in_scope(request, scope)
    body = await parse_body(request, CreateKey, optional=True)

    async def make() -> dict[str, Any]:
        minted = await backend_of(request).keys.mint("wk", tenant_id=scope.tenant_id, workspace_id=row["id"], name=body.name)
        return {
            "id": minted.id,
            "name": minted.name,
            "key": minted.key,
            "prefix": minted.prefix,
            "createdAt": minted.created_at,
        }

    return await create_once(request, scope, make, secret_fields=("key",))


async def list_workspace_keys(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk")
    row = await _workspace_in_scope(request, scope)
    keys = await backend_of(request).store.accounts.list_keys(workspace_id=row["id"])
    return json_response({"keys": [_key_wire(k) for k in keys]})


async def revoke_workspace_key(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk")
    row = await _workspace_in_scope(request, scope)
    backend = backend_of(request)
    key = await backend.store.accounts.get_key(request.path_params["key_id"])
    if key is None or key["workspace_id"] != row["id"] or key["kind"] != "wk":
        raise BackendError.not_found("key")
    await backend.keys.revoke(key["id"])
    return ok()


# ---------------------------------------------------------------- webhooks


def _webhook_wire(row: Row, *, secret: bool = False) -> dict[str, Any]:
    out = {"id": row["id"], "url": row["url"], "events": json.loads(row["events_json"]),
           "isActive": bool(row["is_active"]), "inboxId": row["inbox_id"], "workspaceId": row["workspace_id"],
           "createdAt": row["created_at"]}  # fmt: skip
    if secret:
        out["secret"] = row["secret"]
    return out


def _check_webhook_fields(url: str | None, events: list[str] | None) -> None:
    if url is not None and (not url.startswith(("http://", "https://")) or any(ch.isspace() for ch in url)):
        raise BackendError.validation("url", "must be an http(s) URL")
    for event in events or []:
        if event not in EVENT_TYPES:
            raise BackendError.validation(
                "events", f"unknown event {event[:60]!r}; use {', '.join(EVENT_TYPES)}"
            )


async def _webhook_in_scope(request: Request, scope: KeyScope) -> Row:
    require_kind(scope, "tk", "wk")
    row = await backend_of(request).store.admin.get_webhook(request.path_params["webhook_id"])
    if row is None or not scope.can_see(
        tenant_id=row["tenant_id"], workspace_id=row["workspace_id"], inbox_id=None
    ):
        raise BackendError.not_found("webhook")
    return row


async def create_webhook(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    body = await parse_body(request, CreateWebhook)
    _check_webhook_fields(body.url, body.events)
    backend = backend_of(request)
    workspace_id = scope.workspace_id if scope.kind == "wk" else body.workspace_id
    if scope.kind == "tk" and workspace_id is not None:
        await check_tenant_workspace(backend, scope, workspace_id)
    if body.inbox_id is not None:
        workspace_id = visible_inbox(backend, scope, body.inbox_id).workspace_id

    async def make() -> dict[str, Any]:
        row = await backend.store.admin.create_webhook(
            tenant_id=scope.tenant_id,
            workspace_id=workspace_id,
            inbox_id=body.inbox_id,
            url=body.url,
            events=body.events,
            secret="whsec_" + secrets.token_urlsafe(32),
        )
        return _webhook_wire(row, secret=True)

    return await create_once(request, scope, make, secret_fields=("secret",))


async def list_webhooks(request: Request) -> JSONResponse:
    scope = authenticate(request)
    require_kind(scope, "tk", "wk")
    rows = await backend_of(request).store.admin.list_webhooks(
        scope.tenant_id, scope.workspace_id if scope.kind == "wk" else None
    )
    return json_response({"webhooks": [_webhook_wire(r) for r in rows]})


async def get_webhook(request: Request) -> JSONResponse:
    return json_response(_webhook_wire(await _webhook_in_scope(request, authenticate(request))))


async def update_webhook(request: Request) -> JSONResponse:
    scope = authenticate(request)
    row = await _webhook_in_scope(request, scope)
    body = await parse_body(request, UpdateWebhook)
    _check_webhook_fields(body.url, body.events)
    store = backend_of(request).store
    await store.admin.update_webhook(row["id"], url=body.url, events=body.events, is_active=body.is_active)
    return json_response(_webhook_wire(await store.admin.get_webhook(row["id"]) or row))


async def delete_webhook(request: Request) -> JSONResponse:
    row = await _webhook_in_scope(request, authenticate(request))
    await backend_of(request).store.admin.delete_webhook(row["id"])
    return ok()


# ---------------------------------------------------------------- metrics and verify-email


async def metrics(request: Request) -> JSONResponse:
    scope = authenticate(request)
    backend = backend_of(request)
    workspace_id = scope.workspace_id if scope.kind != "tk" else request.query_params.get("workspace") or None
    inbox_id = scope.inbox_id if scope.kind == "ak" else request.query_params.get("inbox") or None
    if scope.kind == "tk" and workspace_id is not None:
        await check_tenant_workspace(backend, scope, workspace_id)
    if inbox_id is not None and scope.kind != "ak":
        visible_inbox(backend, scope, inbox_id)
    start, end = iso_param(request, "from"), iso_param(request, "to")
    counts = await backend.store.admin.metrics(
        scope.tenant_id,
        workspace_id=workspace_id if scope.kind != "ak" else None,
        inbox_id=inbox_id,
        start=start,
        end=end,
    )
    return json_response(
        {
            "counts": {k: counts[k] for k in ("sent", "received", "bounced")},
            "resources": {"inboxes": counts["inboxes"], "domains": counts["domains"]},
            "scope": {"tenantId": scope.tenant_id, "workspaceId": workspace_id, "inboxId": inbox_id},
            "window": {"from": start, "to": end},
        }
    )


async def _verify_one(backend: LocalBackend, email: str) -> dict[str, Any]:
    try:
        address = valid_address(email, "email")
    except BackendError:
        return {"email": email, "valid": False, "reason": "invalid_syntax", "mx": []}
    domain = address.rpartition("@")[2].lower()
    if domain == backend.config.domain.lower() or backend.is_local_recipient(address):
        known = backend.is_local_recipient(address)
        return {
            "email": address,
            "valid": known,
            "reason": "local_inbox" if known else "no_such_local_inbox",
            "mx": [],
        }
    try:
        with anyio.fail_after(VERIFY_TIMEOUT_SECONDS):
            mx = await backend.mx_resolver(domain)
    except TimeoutError:
        return {"email": address, "valid": False, "reason": "dns_timeout", "mx": []}
    except (DnsError, OSError, ValueError):
        return {"email": address, "valid": False, "reason": "dns_error", "mx": []}
    return {
        "email": address,
        "valid": bool(mx),
        "reason": "mx_found" if mx else "no_mx_records",
        "mx": list(mx),
    }


async def verify_email(request: Request) -> JSONResponse:
    authenticate(request)
    body = await parse_body(request, VerifyEmail)
    backend = backend_of(request)
    if body.emails is not None:
        results: list[dict[str, Any]] = [{}] * len(body.emails)

        async def check(index: int, email: str) -> None:
            results[index] = await _verify_one(backend, email)

        async with anyio.create_task_group() as tasks:
            for index, email in enumerate(body.emails):
                tasks.start_soon(check, index, email)
        return json_response({"results": results})
    if body.email is None:
        raise BackendError.validation("email", "email or emails is required")
    return json_response(await _verify_one(backend, body.email))


def admin_routes() -> list[Route]:
    lists = "/v1/inboxes/{inbox_id}/lists"
    return [
        Route(lists, create_list, methods=["POST"]),
        Route(lists, list_lists, methods=["GET"]),
        Route(lists + "/{list_id}", get_list, methods=["GET"]),
        Route(lists + "/{list_id}", delete_list, methods=["DELETE"]),
        Route(lists + "/{list_id}/entries", add_entry, methods=["POST"]),
        Route(lists + "/{list_id}/entries/{entry_id}", remove_entry, methods=["DELETE"]),
        Route("/v1/domains", create_domain, methods=["POST"]),
        Route("/v1/domains", list_domains, methods=["GET"]),
        Route("/v1/domains/{domain}", get_domain, methods=["GET"]),
        Route("/v1/domains/{domain}", delete_domain, methods=["DELETE"]),
        Route("/v1/domains/{domain}/verify", verify_domain, methods=["GET", "POST"]),
        Route("/v1/domains/{domain}/zone-file", zone_file, methods=["GET"]),
        Route("/v1/workspaces", create_workspace, methods=["POST"]),
        Route("/v1/workspaces", list_workspaces, methods=["GET"]),
        Route("/v1/workspaces/{workspace_id}", get_workspace, methods=["GET"]),
        Route("/v1/workspaces/{workspace_id}", delete_workspace, methods=["DELETE"]),
        Route("/v1/workspaces/{workspace_id}/keys", create_workspace_key, methods=["POST"]),
        Route("/v1/workspaces/{workspace_id}/keys", list_workspace_keys, methods=["GET"]),
        Route("/v1/workspaces/{workspace_id}/keys/{key_id}", revoke_workspace_key, methods=["DELETE"]),
        Route("/v1/webhooks", create_webhook, methods=["POST"]),
        Route("/v1/webhooks", list_webhooks, methods=["GET"]),
        Route("/v1/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
        Route("/v1/webhooks/{webhook_id}", update_webhook, methods=["PATCH"]),
        Route("/v1/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
        Route("/v1/metrics", metrics, methods=["GET"]),
        Route("/v1/verify-email", verify_email, methods=["POST"]),
    ]
