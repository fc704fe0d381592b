"""Accounts and keys: tenants, workspaces, inboxes with their addresses, API keys (hashes only)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from mam_mcp.local.auth.scope import KeyKind
from mam_mcp.local.store.directory import InboxDirectory, InboxRecord
from mam_mcp.local.store.engine import Database
from mam_mcp.local.store.rows import ConflictError, Row, new_id, row_or_none
from mam_mcp.local.timestamps import utc_now_iso

__all__ = [
    "AccountRepository",
    "KeyRecord",
    "delete_inbox_rows",
    "delete_workspace_rows",
    "expired_inbox_ids",
    "workspace_inbox_ids",
]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    kind: KeyKind
    tenant_id: str
    workspace_id: str | None
    inbox_id: str | None
    key_hash: str


class AccountRepository:
    def __init__(self, db: Database, directory: InboxDirectory) -> None:
        self._db = db
        self._directory = directory

    # ------------------------------------------------------------ tenants and workspaces

    async def create_tenant(self) -> str:
        tenant_id = new_id()
        await self._db.write(
            lambda c: c.execute("INSERT INTO tenants VALUES (?, ?)", (tenant_id, utc_now_iso()))
        )
        return tenant_id

    async def first_tenant(self) -> str | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT id FROM tenants ORDER BY created_at LIMIT 1").fetchone()
        )
        return row["id"] if row else None

    async def create_workspace(self, tenant_id: str, name: str) -> Row:
        row = {"id": new_id(), "tenant_id": tenant_id, "name": name, "created_at": utc_now_iso()}
        await self._db.write(
            lambda c: c.execute("INSERT INTO workspaces VALUES (:id, :tenant_id, :name, :created_at)", row)
        )
        return row

    async def get_workspace(self, workspace_id: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(c.execute("SELECT * FROM workspaces WHERE id=?", (workspace_id,)).fetchone())
        )

    async def list_workspaces(self, tenant_id: str, only_id: str | None = None) -> list[Row]:
        sql = (
            "SELECT * FROM workspaces WHERE tenant_id=?"
            + (" AND id=?" if only_id else "")
            + " ORDER BY created_at"
        )
        args: tuple[str, ...] = (tenant_id, only_id) if only_id else (tenant_id,)
        return await self._db.read(lambda c: [dict(r) for r in c.execute(sql, args)])

    # ------------------------------------------------------------ api keys

    async def insert_key(
        self,
        *,
        kind: KeyKind,
        tenant_id: str,
        workspace_id: str | None,
        inbox_id: str | None,
        name: str | None,
        prefix: str,
        key_hash: str,
    ) -> Row:
        row = {
            "id": new_id(), "kind": kind, "tenant_id": tenant_id, "workspace_id": workspace_id,
            "inbox_id": inbox_id, "name": name, "prefix": prefix, "key_hash": key_hash,
            "created_at": utc_now_iso(), "revoked_at": None,
        }  # fmt: skip
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO api_keys VALUES (:id, :kind, :tenant_id, :workspace_id, :inbox_id, :name, :prefix,"
                " :key_hash, :created_at, :revoked_at)",
                row,
            )
        )
        return row

    async def list_keys(self, *, workspace_id: str | None = None, inbox_id: str | None = None) -> list[Row]:
        column, value = ("workspace_id", workspace_id) if workspace_id else ("inbox_id", inbox_id)
        kind = "wk" if workspace_id else "ak"
        sql = f"SELECT * FROM api_keys WHERE {column}=? AND kind=? ORDER BY created_at"
        return await self._db.read(lambda c: [dict(r) for r in c.execute(sql, (value, kind))])

    async def get_key(self, key_id: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(c.execute("SELECT * FROM api_keys WHERE id=?", (key_id,)).fetchone())
        )

    async def revoke_key(self, key_id: str) -> None:
        await self._db.write(
            lambda c: c.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (utc_now_iso(), key_id)
            )
        )

    async def active_keys(self) -> list[KeyRecord]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL").fetchall()
        )
        return [_key_record(r) for r in rows]

    def active_keys_sync(self) -> list[KeyRecord]:
        """Active keys read on the calling thread (a composition root built outside a coroutine)."""
        return self._db.read_now(
            lambda c: [_key_record(r) for r in c.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL")]
        )

    # ------------------------------------------------------------ inboxes and addresses

    def inbox_for_address(self, address: str) -> tuple[str, str, str | None] | None:
        """(inbox_id, tenant_id, workspace_id) of the inbox mail to an address goes to (its owner, the
        owner of its address without `+tag`, or the catch-all); in memory (RCPT checks)."""
        delivery = self._directory.route(address)
        record = delivery.inbox if delivery else None
        return (record.id, record.tenant_id, record.workspace_id) if record else None

    def inbox_record(self, inbox_id: str) -> InboxRecord | None:
        return self._directory.record(inbox_id)

    async def create_inbox(
        self,
        *,
        tenant_id: str,
        workspace_id: str | None,
        username: str,
        domain: str,
        display_name: str | None,
        metadata: dict[str, Any] | None = None,
        expires_at: str | None = None,
    ) -> Row:
        """`expires_at` (a wire timestamp): the daemon deletes the inbox and its mail after it."""
        now = utc_now_iso()
        email_addr = f"{username}@{domain}"
        inbox_id = new_id()
        row = {
            "id": inbox_id, "tenant_id": tenant_id, "workspace_id": workspace_id, "username": username,
            "domain": domain, "email": email_addr, "display_name": display_name,
            "metadata": json.dumps(metadata) if metadata is not None else None, "created_at": now,
            "expires_at": expires_at,
        }  # fmt: skip

        def run(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM addresses WHERE email=?", (email_addr,)).fetchone():
                raise ConflictError(f"address {email_addr} is already in use")
            c.execute(
                "INSERT INTO inboxes (id, tenant_id, workspace_id, username, domain, email, display_name,"
                " metadata, created_at, expires_at) VALUES (:id, :tenant_id, :workspace_id, :username, :domain,"
                " :email, :display_name, :metadata, :created_at, :expires_at)",
                row,
            )
            c.execute("INSERT INTO addresses VALUES (?, ?, 1, ?)", (email_addr, row["id"], now))

        await self._db.write(run)
        self._directory.add_inbox(InboxRecord(inbox_id, tenant_id, workspace_id, email_addr))
        return row

    async def get_inbox(self, inbox_id: str) -> Row | None:
        def run(c: sqlite3.Connection) -> Row | None:
            row = row_or_none(c.execute("SELECT * FROM inboxes WHERE id=?", (inbox_id,)).fetchone())
            if row is not None:
                row["addresses"] = [
                    dict(r)
                    for r in c.execute(
                        "SELECT email, is_primary, created_at FROM addresses WHERE inbox_id=? ORDER BY created_at",
                        (inbox_id,),
                    )
                ]
            return row

        return await self._db.read(run)

    async def list_inboxes(
        self,
        tenant_id: str,
        *,
        workspace_id: str | None = None,
        inbox_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Row]:
        sql = "SELECT * FROM inboxes WHERE tenant_id=?"
        args: list[Any] = [tenant_id]
        if workspace_id is not None:
            sql += " AND workspace_id=?"
            args.append(workspace_id)
        if inbox_id is not None:
            sql += " AND id=?"
            args.append(inbox_id)
        sql += " ORDER BY created_at DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        return await self._db.read(lambda c: [dict(r) for r in c.execute(sql, args)])

    async def update_inbox(
        self, inbox_id: str, *, display_name: str | None, metadata: Any, set_meta: bool
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            if display_name is not None:
                c.execute("UPDATE inboxes SET display_name=? WHERE id=?", (display_name, inbox_id))
            if set_meta:
                c.execute("UPDATE inboxes SET metadata=? WHERE id=?", (json.dumps(metadata), inbox_id))

        await self._db.write(run)

    async def add_address(self, inbox_id: str, address: str, *, primary: bool) -> None:
        def run(c: sqlite3.Connection) -> None:
            owner = c.execute("SELECT inbox_id FROM addresses WHERE email=?", (address,)).fetchone()
            if owner is not None and owner["inbox_id"] != inbox_id:
                raise ConflictError(f"address {address} is already in use")
            if owner is None:
                c.execute("INSERT INTO addresses VALUES (?, ?, 0, ?)", (address, inbox_id, utc_now_iso()))
            if primary:
                c.execute("UPDATE addresses SET is_primary=(email=?) WHERE inbox_id=?", (address, inbox_id))

        await self._db.write(run)
        self._directory.add_address(address, inbox_id)

    async def remove_address(self, inbox_id: str, address: str) -> bool:
        """False when the address is not on this inbox. The canonical address is checked by the caller."""

        def run(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "SELECT is_primary FROM addresses WHERE email=? AND inbox_id=?", (address, inbox_id)
            ).fetchone()
            if row is None:
                return False
            c.execute("DELETE FROM addresses WHERE email=?", (address,))
            if row["is_primary"]:  # the canonical address becomes primary again
                c.execute("UPDATE addresses SET is_primary=1 WHERE email=(SELECT email FROM inboxes WHERE id=?)",
                          (inbox_id,))  # fmt: skip
            return True

        removed = await self._db.write(run)
        if removed:
            self._directory.remove_address(address)
        return removed

    async def primary_address(self, inbox_id: str) -> str | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT email FROM addresses WHERE inbox_id=? AND is_primary=1", (inbox_id,)
            ).fetchone()
        )
        return row["email"] if row else None

    async def inbox_addresses(self, inbox_id: str) -> list[str]:
        return await self._db.read(
            lambda c: [
                r["email"] for r in c.execute("SELECT email FROM addresses WHERE inbox_id=?", (inbox_id,))
            ]
        )


# ---------------------------------------------------------------- writer-thread functions


def _key_record(row: sqlite3.Row | Row) -> KeyRecord:
    return KeyRecord(
        row["id"], row["kind"], row["tenant_id"], row["workspace_id"], row["inbox_id"], row["key_hash"]
    )


def workspace_inbox_ids(c: sqlite3.Connection, workspace_id: str) -> list[str]:
    return [r["id"] for r in c.execute("SELECT id FROM inboxes WHERE workspace_id=?", (workspace_id,))]


def expired_inbox_ids(c: sqlite3.Connection, now: str, limit: int) -> list[str]:
    """Up to `limit` inboxes whose `expires_at` is at or before `now`, the longest expired first."""
    sql = "SELECT id FROM inboxes WHERE expires_at IS NOT NULL AND expires_at<=? ORDER BY expires_at LIMIT ?"
    return [r["id"] for r in c.execute(sql, (now, limit))]


def delete_inbox_rows(c: sqlite3.Connection, inbox_id: str) -> None:
    """The inbox, its addresses and its keys (the facade deletes its mail and admin rows first)."""
    c.execute("DELETE FROM addresses WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM api_keys WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM inboxes WHERE id=?", (inbox_id,))


def delete_workspace_rows(c: sqlite3.Connection, workspace_id: str) -> None:
    """The workspace and its keys (its inboxes are deleted one by one before)."""
    c.execute("DELETE FROM api_keys WHERE workspace_id=?", (workspace_id,))
    c.execute("DELETE FROM workspaces WHERE id=?", (workspace_id,))
