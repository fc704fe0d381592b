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

from mam_mcp.local.api.access import Caller, caller
from mam_mcp.local.api.creates import create_once
from mam_mcp.local.api.params import CreateKey, StrictBody, iso_param, parse_body, valid_address
from mam_mcp.local.api.wire import Row, json_response, ok
from mam_mcp.local.dns import DnsError
from mam_mcp.local.events.model import EVENT_TYPES
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError

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
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, CreateList)

    async def make() -> dict[str, Any]:
        return _list_wire(await who.backend.admin.create_list(record.id, body.name, body.description))

    return await create_once(request, who.scope, make)


async def list_lists(request: Request) -> JSONResponse:
    who = caller(request)
    rows = await who.backend.admin.lists(who.inbox().id)
    return json_response({"lists": [_list_wire(r) for r in rows]})


async def _address_list(who: Caller) -> tuple[str, Row]:
    """The path's inbox id and list, if the key may see them; 404 otherwise."""
    inbox_id = who.inbox().id
    return inbox_id, await who.backend.admin.address_list(inbox_id, who.param("list_id"))


async def get_list(request: Request) -> JSONResponse:
    _, row = await _address_list(caller(request))
    return json_response(_list_wire(row))


async def delete_list(request: Request) -> JSONResponse:
    who = caller(request)
    inbox_id, row = await _address_list(who)
    await who.backend.admin.delete_list(inbox_id, row["id"])
    return ok()


async def add_entry(request: Request) -> JSONResponse:
    who = caller(request)
    _, row = await _address_list(who)
    body = await parse_body(request, AddEntry)
    address = valid_address(body.email, "email")

    async def make() -> dict[str, Any]:
        return _entry_wire(await who.backend.admin.add_entry(row["id"], address, body.display_name, body.metadata))

    return await create_once(request, who.scope, make)


async def remove_entry(request: Request) -> JSONResponse:
    who = caller(request)
    _, row = await _address_list(who)
    await who.backend.admin.remove_entry(row["id"], who.param("entry_id"))
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


async def _domain(who: Caller) -> Row:
    """The path's domain if the key may see it; 404 otherwise."""
    return await who.backend.admin.visible_domain(who.scope, who.param("domain"))


async def create_domain(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    scope, backend = who.scope, who.backend
    body = await parse_body(request, CreateDomain)
    domain = body.domain.strip().lower().rstrip(".")
    if (
        "." not in domain
        or not all(part and len(part) <= 63 for part in domain.split("."))
        or not all(ch.isalnum() or ch in "-." for ch in domain)
    ):
        raise BackendError.validation("domain", "not a valid domain name")
    if domain == backend.config.domain.lower():
        raise BackendError(409, "CONFLICT", "that is the local backend's own domain")
    workspace_id = scope.workspace_id if scope.kind == "wk" else body.workspace_id
    if scope.kind == "tk" and workspace_id is not None:
        await backend.accounts.check_tenant_workspace(scope, workspace_id)

    async def make() -> dict[str, Any]:
        row = await backend.admin.create_domain(
            tenant_id=scope.tenant_id, workspace_id=workspace_id, domain=domain, token=secrets.token_hex(16)
        )
        return {"domain": _domain_wire(backend, row)}

    return await create_once(request, scope, make)


async def list_domains(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    scope = who.scope
    rows = await who.backend.admin.domains(scope.tenant_id, scope.workspace_id if scope.kind == "wk" else None)
    return json_response({"domains": [_domain_wire(who.backend, r) for r in rows]})


async def get_domain(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    return json_response({"domain": _domain_wire(who.backend, await _domain(who))})


async def verify_domain(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    row = await _domain(who)
    backend = who.backend
    expected = f"mam-verify={row['verify_token']}"
    try:
        with anyio.fail_after(VERIFY_TIMEOUT_SECONDS):
            texts = await backend.txt_resolver(f"_mam-verify.{row['domain']}")
        status = "verified" if expected in texts else "failed"
    except (TimeoutError, DnsError, OSError):
        status = "verifying" if row["status"] != "verified" else "verified"
    fresh = await backend.admin.set_domain_status(row, status)
    return json_response({"domain": _domain_wire(backend, fresh)})


async def zone_file(request: Request) -> PlainTextResponse:
    who = caller(request, "tk", "wk")
    row = await _domain(who)
    lines = [f"; zone records for {row['domain']} (mam-mcp local backend)"]
    for record in _domain_records(who.backend, row):
        value = (
            f'"{record["value"]}"'
            if record["type"] == "TXT"
            else f"{record.get('priority', '')} {record['value']}."
        )
        lines.append(f"{record['host']}.\t3600\tIN\t{record['type']}\t{value.strip()}")
    return PlainTextResponse("\n".join(lines) + "\n")


async def delete_domain(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    row = await _domain(who)
    await who.backend.admin.delete_domain(row["domain"])
    return ok()


# ---------------------------------------------------------------- workspaces


def _workspace_wire(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "createdAt": row["created_at"]}


def _key_wire(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "prefix": row["prefix"], "createdAt": row["created_at"],
            "revokedAt": row["revoked_at"]}  # fmt: skip


async def _workspace(who: Caller) -> Row:
    """The path's workspace if the key may see it; 404 otherwise."""
    return await who.backend.accounts.visible_workspace(who.scope, who.param("workspace_id"))


async def create_workspace(request: Request) -> JSONResponse:
    who = caller(request, "tk")
    body = await parse_body(request, CreateWorkspace)

    async def make() -> dict[str, Any]:
        return _workspace_wire(await who.backend.accounts.create_workspace(who.scope.tenant_id, body.name))

    return await create_once(request, who.scope, make)


async def list_workspaces(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    scope = who.scope
    rows = await who.backend.accounts.workspaces(scope.tenant_id, scope.workspace_id if scope.kind == "wk" else None)
    return json_response({"workspaces": [_workspace_wire(r) for r in rows]})


async def get_workspace(request: Request) -> JSONResponse:
    return json_response(_workspace_wire(await _workspace(caller(request, "tk", "wk"))))


async def delete_workspace(request: Request) -> JSONResponse:
    who = caller(request, "tk")
    row = await _workspace(who)
    await who.backend.accounts.delete_workspace(row["id"])
    return ok()


async def create_workspace_key(request: Request) -> JSONResponse:
    who = caller(request, "tk")
    row = await _workspace(who)
    body = await parse_body(request, CreateKey, optional=True)

    async def make() -> dict[str, Any]:
        minted = await who.backend.accounts.mint("wk", tenant_id=who.scope.tenant_id, workspace_id=row["id"], name=body.name)
        return {
            "id": minted.id,
            "name": minted.name,
            "key": minted.key,
            "prefix": minted.prefix,
            "createdAt": minted.created_at,
        }

    return await create_once(request, who.scope, make, secret_fields=("key",))


async def list_workspace_keys(request: Request) -> JSONResponse:
    who = caller(request, "tk")
    row = await _workspace(who)
    keys = await who.backend.accounts.workspace_keys(row["id"])
    return json_response({"keys": [_key_wire(k) for k in keys]})


async def revoke_workspace_key(request: Request) -> JSONResponse:
    who = caller(request, "tk")
    row = await _workspace(who)
    await who.backend.accounts.revoke_workspace_key(row["id"], who.param("key_id"))
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


async def _webhook(who: Caller) -> Row:
    """The path's webhook if the key may see it; 404 otherwise."""
    return await who.backend.admin.visible_webhook(who.scope, who.param("webhook_id"))


async def create_webhook(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    scope, backend = who.scope, who.backend
    body = await parse_body(request, CreateWebhook)
    _check_webhook_fields(body.url, body.events)
    workspace_id = scope.workspace_id if scope.kind == "wk" else body.workspace_id
    if scope.kind == "tk" and workspace_id is not None:
        await backend.accounts.check_tenant_workspace(scope, workspace_id)
    if body.inbox_id is not None:
        workspace_id = backend.accounts.visible_inbox(scope, body.inbox_id).workspace_id

    async def make() -> dict[str, Any]:
        row = await backend.admin.create_webhook(
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
    who = caller(request, "tk", "wk")
    scope = who.scope
    rows = await who.backend.admin.webhooks(scope.tenant_id, scope.workspace_id if scope.kind == "wk" else None)
    return json_response({"webhooks": [_webhook_wire(r) for r in rows]})


async def get_webhook(request: Request) -> JSONResponse:
    return json_response(_webhook_wire(await _webhook(caller(request, "tk", "wk"))))


async def update_webhook(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    row = await _webhook(who)
    body = await parse_body(request, UpdateWebhook)
    _check_webhook_fields(body.url, body.events)
    fresh = await who.backend.admin.update_webhook(row, url=body.url, events=body.events, is_active=body.is_active)
    return json_response(_webhook_wire(fresh))


async def delete_webhook(request: Request) -> JSONResponse:
    who = caller(request, "tk", "wk")
    row = await _webhook(who)
    await who.backend.admin.delete_webhook(row["id"])
    return ok()


# ---------------------------------------------------------------- metrics and verify-email


async def metrics(request: Request) -> JSONResponse:
    who = caller(request)
    scope, backend = who.scope, who.backend
    workspace_id = scope.workspace_id if scope.kind != "tk" else request.query_params.get("workspace") or None
    inbox_id = scope.inbox_id if scope.kind == "ak" else request.query_params.get("inbox") or None
    if scope.kind == "tk" and workspace_id is not None:
        await backend.accounts.check_tenant_workspace(scope, workspace_id)
    if inbox_id is not None and scope.kind != "ak":
        backend.accounts.visible_inbox(scope, inbox_id)
    start, end = iso_param(request, "from"), iso_param(request, "to")
    counts = await backend.admin.metrics(
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
    backend = caller(request).backend
    body = await parse_body(request, VerifyEmail)
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
