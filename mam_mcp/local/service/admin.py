"""What the REST routes do with admin resources: address lists, domains, webhooks and metrics.

Scope checks answer 404 `NOT_FOUND` for a resource outside the caller's key scope, exactly as
for one that does not exist. Webhook deliveries are the dispatcher's (`local/webhooks/`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.rows import ConflictError

__all__ = ["AdminService"]

Row = dict[str, Any]


class AdminService:
    def __init__(self, config: LocalConfig, store: EmailStore) -> None:
        self._config = config
        self._admin = store.admin

    # ------------------------------------------------------------ address lists

    async def create_list(self, inbox_id: str, name: str, description: str | None) -> Row:
        return await self._admin.create_list(inbox_id, name, description)

    async def lists(self, inbox_id: str) -> list[Row]:
        return await self._admin.list_lists(inbox_id)

    async def address_list(self, inbox_id: str, list_id: str) -> Row:
        """The list (with its entries) if it is this inbox's; 404 otherwise."""
        row = await self._admin.get_list(inbox_id, list_id)
        if row is None:
            raise BackendError.not_found("list")
        return row

    async def delete_list(self, inbox_id: str, list_id: str) -> None:
        await self._admin.delete_list(inbox_id, list_id)

    async def add_entry(self, list_id: str, address: str, display_name: str | None, metadata: Any) -> Row:
        return await self._admin.add_list_entry(list_id, address, display_name, metadata)

    async def remove_entry(self, list_id: str, entry_id: str) -> None:
        if not await self._admin.remove_list_entry(list_id, entry_id):
            raise BackendError.not_found("entry")

    # ------------------------------------------------------------ domains

    async def check_domain_usable(self, scope: KeyScope, domain: str, workspace_id: str | None) -> None:
        """The local domain is always usable; a custom one must be this tenant's and verified."""
        if domain.lower() == self._config.domain.lower():
            return
        row = await self._admin.get_domain(domain)
        if row is None or row["tenant_id"] != scope.tenant_id:
            raise BackendError(403, "DOMAIN_NOT_VERIFIED", f"domain {domain} is not registered and verified")
        if row["workspace_id"] is not None and row["workspace_id"] != workspace_id:
            raise BackendError(403, "DOMAIN_WRONG_WORKSPACE", f"domain {domain} belongs to a different workspace")
        if row["status"] != "verified":
            raise BackendError(403, "DOMAIN_NOT_VERIFIED", f"domain {domain} is not verified yet")

    async def visible_domain(self, scope: KeyScope, domain: str) -> Row:
        row = await self._admin.get_domain(domain.lower())
        if row is None or not scope.can_see(tenant_id=row["tenant_id"], workspace_id=row["workspace_id"], inbox_id=None):
            raise BackendError.not_found("domain")
        return row

    async def create_domain(self, *, tenant_id: str, workspace_id: str | None, domain: str, token: str) -> Row:
        try:
            return await self._admin.create_domain(tenant_id=tenant_id, workspace_id=workspace_id, domain=domain, token=token)
        except ConflictError as exc:
            raise BackendError(409, "CONFLICT", str(exc)) from None

    async def domains(self, tenant_id: str, workspace_id: str | None) -> list[Row]:
        return await self._admin.list_domains(tenant_id, workspace_id)

    async def set_domain_status(self, row: Row, status: str) -> Row:
        """Record a new verification status; the domain as it is now."""
        if status != row["status"]:
            await self._admin.set_domain_status(row["domain"], status)
        return await self._admin.get_domain(row["domain"]) or row

    async def delete_domain(self, domain: str) -> None:
        await self._admin.delete_domain(domain)

    # ------------------------------------------------------------ webhooks

    async def visible_webhook(self, scope: KeyScope, webhook_id: str) -> Row:
        row = await self._admin.get_webhook(webhook_id)
        if row is None or not scope.can_see(tenant_id=row["tenant_id"], workspace_id=row["workspace_id"], inbox_id=None):
            raise BackendError.not_found("webhook")
        return row

    async def create_webhook(
        self,
        *,
        tenant_id: str,
        workspace_id: str | None,
        inbox_id: str | None,
        url: str,
        events: Sequence[str],
        secret: str,
    ) -> Row:
        return await self._admin.create_webhook(
            tenant_id=tenant_id, workspace_id=workspace_id, inbox_id=inbox_id, url=url, events=events, secret=secret
        )

    async def webhooks(self, tenant_id: str, workspace_id: str | None) -> list[Row]:
        return await self._admin.list_webhooks(tenant_id, workspace_id)

    async def update_webhook(
        self, row: Row, *, url: str | None, events: Sequence[str] | None, is_active: bool | None
    ) -> Row:
        await self._admin.update_webhook(row["id"], url=url, events=events, is_active=is_active)
        return await self._admin.get_webhook(row["id"]) or row

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._admin.delete_webhook(webhook_id)

    # ------------------------------------------------------------ metrics

    async def metrics(
        self, tenant_id: str, *, workspace_id: str | None, inbox_id: str | None, start: str | None, end: str | None
    ) -> Row:
        return await self._admin.metrics(tenant_id, workspace_id=workspace_id, inbox_id=inbox_id, start=start, end=end)
