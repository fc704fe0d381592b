"""Domain, workspace, webhook, metrics and verify-email routes of the fake hosted API (under /v1)."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute

from mam_mcp.local.events.model import EVENT_TYPES
from mam_mcp.local.timestamps import utc_now_iso
from tests.fakes.hosted_bodies import (
    CreateDomainBody,
    CreateKeyBody,
    CreateWebhookBody,
    CreateWorkspaceBody,
    UpdateWebhookBody,
    VerifyEmailBody,
)
from tests.fakes.hosted_errors import FakeApiError
from tests.fakes.hosted_records import (
    DEFAULT_DOMAIN,
    TENANT_ID,
    DomainRecord,
    WebhookRecord,
    WorkspaceKeyRecord,
    WorkspaceRecord,
    new_id,
)
from tests.fakes.hosted_route_group import OK_BODY, RouteGroup

__all__ = ["AccountRoutes"]


class AccountRoutes(RouteGroup):
    """Tenant-level resources: domains, workspaces and their keys, webhooks, metrics, verify-email."""

    def routes(self) -> list[BaseRoute]:
        r = self.fake.route
        return [
            r("POST", "/v1/domains", self.create_domain),
            r("GET", "/v1/domains", self.list_domains),
            r("GET", "/v1/domains/{domain}", self.get_domain),
            r("GET", "/v1/domains/{domain}/verify", self.verify_domain),
            r("GET", "/v1/domains/{domain}/zone-file", self.zone_file),
            r("DELETE", "/v1/domains/{domain}", self.delete_domain),
            r("POST", "/v1/workspaces", self.create_workspace),
            r("GET", "/v1/workspaces", self.list_workspaces),
            r("GET", "/v1/workspaces/{workspace_id}", self.get_workspace),
            r("DELETE", "/v1/workspaces/{workspace_id}", self.delete_workspace),
            r("POST", "/v1/workspaces/{workspace_id}/keys", self.create_workspace_key),
            r("GET", "/v1/workspaces/{workspace_id}/keys", self.list_workspace_keys),
            r("DELETE", "/v1/workspaces/{workspace_id}/keys/{key_id}", self.revoke_workspace_key),
            r("POST", "/v1/webhooks", self.create_webhook),
            r("GET", "/v1/webhooks", self.list_webhooks),
            r("GET", "/v1/webhooks/{webhook_id}", self.get_webhook),
            r("PATCH", "/v1/webhooks/{webhook_id}", self.update_webhook),
            r("DELETE", "/v1/webhooks/{webhook_id}", self.delete_webhook),
            r("GET", "/v1/metrics", self.metrics, query=("from", "to", "workspace", "inbox")),
            r("POST", "/v1/verify-email", self.verify_email),
        ]

    # --- domains --------------------------------------------------------------------------------
    async def create_domain(self, request: Request) -> Response:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        body = await self.fake.parse_body(request, CreateDomainBody)
        if body.domain in self.state.domains or body.domain == DEFAULT_DOMAIN:
            raise FakeApiError(409, "CONFLICT", f"domain {body.domain} is already registered")
        record = DomainRecord(domain=body.domain, workspace_id=scope.workspace_id)
        self.state.domains[record.domain] = record
        return JSONResponse({"domain": record.wire()}, status_code=201)

    def _domain(self, request: Request) -> DomainRecord:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        return self.state.domain(scope, request.path_params["domain"])

    async def list_domains(self, request: Request) -> Response:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        found = [
            d
            for d in self.state.domains.values()
            if scope.kind == "tk" or d.workspace_id == scope.workspace_id
        ]
        return JSONResponse({"domains": [d.wire() for d in found]})

    async def get_domain(self, request: Request) -> Response:
        return JSONResponse({"domain": self._domain(request).wire()})

    async def verify_domain(self, request: Request) -> Response:
        record = self._domain(request)
        if record.domain in self.state.dns_ready:
            record.status, record.verified_at = "verified", record.verified_at or utc_now_iso()
        elif record.status != "verified":
            record.status = "failed"
        return JSONResponse({"domain": record.wire()})

    async def zone_file(self, request: Request) -> Response:
        return PlainTextResponse(self._domain(request).zone_file())

    async def delete_domain(self, request: Request) -> Response:
        del self.state.domains[self._domain(request).domain]
        return JSONResponse(OK_BODY)

    # --- workspaces -----------------------------------------------------------------------------
    def _workspace(self, request: Request) -> WorkspaceRecord:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        workspace_id = request.path_params["workspace_id"]
        if scope.kind == "wk" and workspace_id != scope.workspace_id:
            raise FakeApiError(404, "NOT_FOUND", f"workspace {workspace_id} not found")
        return self.state.workspace(workspace_id)

    async def create_workspace(self, request: Request) -> Response:
        self._forbid_unless(self._scope(request), "tk")
        body = await self.fake.parse_body(request, CreateWorkspaceBody)
        record = WorkspaceRecord(id=new_id(), name=body.name)
        self.state.workspaces[record.id] = record
        return JSONResponse(record.wire(), status_code=201)

    async def list_workspaces(self, request: Request) -> Response:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        found = [
            w for w in self.state.workspaces.values() if scope.kind == "tk" or w.id == scope.workspace_id
        ]
        return JSONResponse({"workspaces": [w.wire() for w in found]})

    async def get_workspace(self, request: Request) -> Response:
        return JSONResponse(self._workspace(request).wire())

    async def delete_workspace(self, request: Request) -> Response:
        self._forbid_unless(self._scope(request), "tk")
        self.state.delete_workspace(self._workspace(request).id)
        return JSONResponse(OK_BODY)

    async def create_workspace_key(self, request: Request) -> Response:
        self._forbid_unless(self._scope(request), "tk")
        workspace = self._workspace(request)
        body = await self.fake.parse_body(request, CreateKeyBody)
        key = self.state.add_key("wk", workspace_id=workspace.id)
        record = WorkspaceKeyRecord(
            id=self.state.keys[key].key_id, workspace_id=workspace.id, name=body.name, key=key
        )
        self.state.workspace_keys[record.id] = record
        return JSONResponse(record.wire(with_key=True), status_code=201)

    async def list_workspace_keys(self, request: Request) -> Response:
        workspace = self._workspace(request)
        keys = [k.wire() for k in self.state.workspace_keys.values() if k.workspace_id == workspace.id]
        return JSONResponse({"keys": keys})

    async def revoke_workspace_key(self, request: Request) -> Response:
        self._forbid_unless(self._scope(request), "tk")
        workspace = self._workspace(request)
        key_id = request.path_params["key_id"]
        record = self.state.workspace_keys.get(key_id)
        if record is None or record.workspace_id != workspace.id:
            raise FakeApiError(404, "NOT_FOUND", f"key {key_id} not found")
        self.state.revoke_workspace_key(key_id)
        return JSONResponse(OK_BODY)

    # --- webhooks -------------------------------------------------------------------------------
    @staticmethod
    def _check_events(events: list[str]) -> None:
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                f"unknown events: {', '.join(unknown)}",
                details=[{"path": "events", "message": f"unknown event {e}"} for e in unknown],
            )

    async def create_webhook(self, request: Request) -> Response:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        body = await self.fake.parse_body(request, CreateWebhookBody)
        self._check_events(body.events)
        if body.inbox_id is not None:
            self.state.inbox(scope, body.inbox_id)
        workspace_id = scope.workspace_id if scope.kind == "wk" else body.workspace_id
        if workspace_id is not None:
            self.state.workspace(workspace_id)
        record = WebhookRecord(
            id=new_id(),
            url=body.url,
            events=body.events,
            inbox_id=body.inbox_id,
            workspace_id=workspace_id,
            secret="whsec_" + secrets.token_hex(24),
        )
        self.state.webhooks[record.id] = record
        return JSONResponse(record.wire(with_secret=True), status_code=201)

    def _webhook(self, request: Request) -> WebhookRecord:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        return self.state.webhook(scope, request.path_params["webhook_id"])

    async def list_webhooks(self, request: Request) -> Response:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        found = [
            h
            for h in self.state.webhooks.values()
            if scope.kind == "tk" or h.workspace_id == scope.workspace_id
        ]
        return JSONResponse({"webhooks": [h.wire() for h in found]})

    async def get_webhook(self, request: Request) -> Response:
        return JSONResponse(self._webhook(request).wire())

    async def update_webhook(self, request: Request) -> Response:
        record = self._webhook(request)
        body = await self.fake.parse_body(request, UpdateWebhookBody)
        if body.events is not None:
            self._check_events(body.events)
            record.events = body.events
        if body.url is not None:
            record.url = body.url
        if body.is_active is not None:
            record.is_active = body.is_active
        return JSONResponse(record.wire())

    async def delete_webhook(self, request: Request) -> Response:
        del self.state.webhooks[self._webhook(request).id]
        return JSONResponse(OK_BODY)

    # --- metrics and verify ---------------------------------------------------------------------
    async def metrics(self, request: Request) -> Response:
        scope = self._scope(request)
        params = request.query_params
        workspace_id = scope.workspace_id if scope.kind != "tk" else params.get("workspace")
        inbox_id = scope.inbox_id if scope.kind == "ak" else params.get("inbox")
        inboxes = [
            i
            for i in self.state.visible_inboxes(scope)
            if workspace_id in (None, i.workspace_id) and inbox_id in (None, i.id)
        ]
        ids = {i.id for i in inboxes}
        start, end = params.get("from"), params.get("to")
        counts = {"sent": 0, "received": 0, "bounced": 0}
        for message in self.state.messages.values():
            stamp = message.received_at or message.sent_at or message.created_at
            if (
                message.inbox_id in ids
                and (start is None or stamp >= start)
                and (end is None or stamp <= end)
            ):
                counts["sent" if message.direction == "outbound" else "received"] += 1
                counts["bounced"] += message.status == "bounced"
        domains = [d for d in self.state.domains.values() if workspace_id in (None, d.workspace_id)]
        return JSONResponse(
            {
                "counts": counts,
                "resources": {"inboxes": len(inboxes), "domains": len(domains)},
                "scope": {"tenantId": TENANT_ID, "workspaceId": workspace_id, "inboxId": inbox_id},
                "window": {"from": start, "to": end},
            }
        )

    async def verify_email(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, VerifyEmailBody)
        if body.email is not None:
            return JSONResponse(self.fake.verify_address(body.email))
        return JSONResponse({"results": [self.fake.verify_address(e) for e in body.emails or []]})
