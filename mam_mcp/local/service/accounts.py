"""What the REST routes do with tenants' accounts: inboxes and their addresses, workspaces, API keys.

The scope checks live here too, so every route answers the same way: a resource outside the
caller's key scope is 404 `NOT_FOUND`, exactly like one that does not exist (existence is never
revealed). A unique name already taken is 409 `CONFLICT`.
"""

from __future__ import annotations

from typing import Any

from mam_mcp.local.auth.keys import KeyRing, MintedKey
from mam_mcp.local.auth.scope import KeyKind, KeyScope
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.directory import InboxRecord
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.rows import ConflictError

__all__ = ["AccountService", "InboxRecord"]

Row = dict[str, Any]


class AccountService:
    def __init__(self, store: EmailStore, keys: KeyRing) -> None:
        self._store = store
        self._accounts = store.accounts
        self.keys = keys

    # ------------------------------------------------------------ scope

    def visible_inbox(self, scope: KeyScope, inbox_id: str) -> InboxRecord:
        """The inbox if the key may see it; 404 otherwise."""
        record = self._accounts.inbox_record(inbox_id)
        if record is None or not scope.can_see(
            tenant_id=record.tenant_id, workspace_id=record.workspace_id, inbox_id=record.id
        ):
            raise BackendError.not_found("inbox")
        return record

    async def check_tenant_workspace(self, scope: KeyScope, workspace_id: str) -> None:
        """404 unless the workspace a tk_ key names is in its own tenant."""
        workspace = await self._accounts.get_workspace(workspace_id)
        if workspace is None or workspace["tenant_id"] != scope.tenant_id:
            raise BackendError.not_found("workspace")

    async def visible_workspace(self, scope: KeyScope, workspace_id: str) -> Row:
        """The workspace if the key may see it; 404 otherwise."""
        row = await self._accounts.get_workspace(workspace_id)
        if row is None or not scope.can_see(tenant_id=row["tenant_id"], workspace_id=row["id"], inbox_id=None):
            raise BackendError.not_found("workspace")
        return row

    # ------------------------------------------------------------ inboxes and addresses

    async def create_inbox(
        self,
        *,
        tenant_id: str,
        workspace_id: str | None,
        username: str,
        domain: str,
        display_name: str | None,
        metadata: dict[str, Any] | None,
        expires_at: str | None = None,
    ) -> tuple[Row, MintedKey]:
        """The new inbox and its first ak_ key; `expires_at` makes it ephemeral (deleted by the daemon)."""
        try:
            row = await self._accounts.create_inbox(
                tenant_id=tenant_id, workspace_id=workspace_id, username=username, domain=domain,
                display_name=display_name, metadata=metadata, expires_at=expires_at,
            )  # fmt: skip
        except ConflictError as exc:
            raise BackendError(409, "CONFLICT", str(exc)) from None
        minted = await self.keys.mint(
            "ak", tenant_id=tenant_id, workspace_id=workspace_id, inbox_id=row["id"], name="inbox key"
        )
        return row, minted

    async def inboxes(
        self, tenant_id: str, *, workspace_id: str | None, inbox_id: str | None, limit: int, offset: int
    ) -> list[Row]:
        return await self._accounts.list_inboxes(
            tenant_id, workspace_id=workspace_id, inbox_id=inbox_id, limit=limit, offset=offset
        )

    async def inbox(self, inbox_id: str) -> Row:
        """The inbox with its addresses."""
        row = await self._accounts.get_inbox(inbox_id)
        if row is None:
            raise BackendError.not_found("inbox")
        return row

    async def update_inbox(self, inbox_id: str, *, display_name: str | None, metadata: Any, set_meta: bool) -> Row:
        await self._accounts.update_inbox(inbox_id, display_name=display_name, metadata=metadata, set_meta=set_meta)
        return await self.inbox(inbox_id)

    async def delete_inbox(self, inbox_id: str) -> None:
        await self._store.delete_inbox(inbox_id)
        self.keys.forget(lambda key: key.inbox_id == inbox_id)

    async def add_address(self, inbox_id: str, address: str, *, primary: bool) -> Row:
        try:
            await self._accounts.add_address(inbox_id, address, primary=primary)
        except ConflictError as exc:
            raise BackendError(409, "CONFLICT", str(exc)) from None
        return await self.inbox(inbox_id)

    async def remove_address(self, inbox_id: str, address: str) -> Row:
        if not await self._accounts.remove_address(inbox_id, address):
            raise BackendError.not_found("address")
        return await self.inbox(inbox_id)

    # ------------------------------------------------------------ workspaces and keys

    async def create_workspace(self, tenant_id: str, name: str) -> Row:
        return await self._accounts.create_workspace(tenant_id, name)

    async def workspaces(self, tenant_id: str, only_id: str | None) -> list[Row]:
        return await self._accounts.list_workspaces(tenant_id, only_id)

    async def delete_workspace(self, workspace_id: str) -> None:
        await self._store.delete_workspace(workspace_id)
        self.keys.forget(lambda key: key.workspace_id == workspace_id)

    async def mint(
        self,
        kind: KeyKind,
        *,
        tenant_id: str,
        workspace_id: str | None = None,
        inbox_id: str | None = None,
        name: str | None = None,
    ) -> MintedKey:
        return await self.keys.mint(kind, tenant_id=tenant_id, workspace_id=workspace_id, inbox_id=inbox_id, name=name)

    async def workspace_keys(self, workspace_id: str) -> list[Row]:
        return await self._accounts.list_keys(workspace_id=workspace_id)

    async def revoke_workspace_key(self, workspace_id: str, key_id: str) -> None:
        key = await self._accounts.get_key(key_id)
        if key is None or key["workspace_id"] != workspace_id or key["kind"] != "wk":
            raise BackendError.not_found("key")
        await self.keys.revoke(key["id"])
