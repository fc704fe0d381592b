"""Admin: address lists, domains, webhooks (their settings and secrets) and metrics over the mail."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from mam_mcp.local.store.engine import Database
from mam_mcp.local.store.rows import ConflictError, Row, new_id, row_or_none
from mam_mcp.local.timestamps import utc_now_iso

__all__ = ["AdminRepository", "delete_inbox_rows", "delete_workspace_rows"]


class AdminRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._may_have_webhooks = True  # set properly by load()

    def load(self, conn: sqlite3.Connection) -> None:
        self._may_have_webhooks = conn.execute("SELECT 1 FROM webhooks LIMIT 1").fetchone() is not None

    # ------------------------------------------------------------ address lists

    async def create_list(self, inbox_id: str, name: str, description: str | None) -> Row:
        row = {"id": new_id(), "inbox_id": inbox_id, "name": name, "description": description,
               "created_at": utc_now_iso()}  # fmt: skip
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO address_lists VALUES (:id, :inbox_id, :name, :description, :created_at)", row
            )
        )
        return row

    async def list_lists(self, inbox_id: str) -> list[Row]:
        return await self._db.read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT * FROM address_lists WHERE inbox_id=? ORDER BY created_at", (inbox_id,)
                )
            ]
        )

    async def get_list(self, inbox_id: str, list_id: str) -> Row | None:
        def run(c: sqlite3.Connection) -> Row | None:
            row = row_or_none(
                c.execute(
                    "SELECT * FROM address_lists WHERE id=? AND inbox_id=?", (list_id, inbox_id)
                ).fetchone()
            )
            if row is not None:
                row["entries"] = [
                    dict(r)
                    for r in c.execute(
                        "SELECT * FROM list_entries WHERE list_id=? ORDER BY created_at", (list_id,)
                    )
                ]
            return row

        return await self._db.read(run)

    async def delete_list(self, inbox_id: str, list_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("DELETE FROM address_lists WHERE id=? AND inbox_id=?", (list_id, inbox_id))
            if cur.rowcount:
                c.execute("DELETE FROM list_entries WHERE list_id=?", (list_id,))
            return cur.rowcount > 0

        return await self._db.write(run)

    async def add_list_entry(
        self, list_id: str, email_addr: str, display_name: str | None, metadata: Any
    ) -> Row:
        row = {"id": new_id(), "list_id": list_id, "email": email_addr, "display_name": display_name,
               "metadata": json.dumps(metadata) if metadata is not None else None, "created_at": utc_now_iso()}  # fmt: skip
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO list_entries VALUES (:id, :list_id, :email, :display_name, :metadata, :created_at)",
                row,
            )
        )
        return row

    async def remove_list_entry(self, list_id: str, entry_id: str) -> bool:
        return await self._db.write(
            lambda c: (
                c.execute("DELETE FROM list_entries WHERE id=? AND list_id=?", (entry_id, list_id)).rowcount
                > 0
            )
        )

    # ------------------------------------------------------------ domains

    async def create_domain(
        self, *, tenant_id: str, workspace_id: str | None, domain: str, token: str
    ) -> Row:
        row = {"domain": domain, "tenant_id": tenant_id, "workspace_id": workspace_id, "status": "pending",
               "verify_token": token, "created_at": utc_now_iso(), "verified_at": None}  # fmt: skip

        def run(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM domains WHERE domain=?", (domain,)).fetchone():
                raise ConflictError(f"domain {domain} is already registered")
            c.execute(
                "INSERT INTO domains VALUES (:domain, :tenant_id, :workspace_id, :status, :verify_token,"
                " :created_at, :verified_at)",
                row,
            )

        await self._db.write(run)
        return row

    async def get_domain(self, domain: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(c.execute("SELECT * FROM domains WHERE domain=?", (domain,)).fetchone())
        )

    async def list_domains(self, tenant_id: str, workspace_id: str | None = None) -> list[Row]:
        sql = "SELECT * FROM domains WHERE tenant_id=?" + (" AND workspace_id=?" if workspace_id else "")
        args = (tenant_id, workspace_id) if workspace_id else (tenant_id,)
        return await self._db.read(lambda c: [dict(r) for r in c.execute(sql + " ORDER BY created_at", args)])

    async def set_domain_status(self, domain: str, status: str) -> None:
        verified_at = utc_now_iso() if status == "verified" else None
        await self._db.write(
            lambda c: c.execute(
                "UPDATE domains SET status=?, verified_at=COALESCE(?, verified_at) WHERE domain=?",
                (status, verified_at, domain),
            )
        )

    async def delete_domain(self, domain: str) -> None:
        await self._db.write(lambda c: c.execute("DELETE FROM domains WHERE domain=?", (domain,)))

    # ------------------------------------------------------------ webhooks

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
        row = {"id": new_id(), "tenant_id": tenant_id, "workspace_id": workspace_id, "inbox_id": inbox_id,
               "url": url, "events_json": json.dumps(list(events)), "secret": secret, "is_active": 1,
               "created_at": utc_now_iso()}  # fmt: skip
        self._may_have_webhooks = (
            True  # before the insert: a stale True costs a query, a stale False a delivery
        )
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO webhooks VALUES (:id, :tenant_id, :workspace_id, :inbox_id, :url, :events_json,"
                " :secret, :is_active, :created_at)",
                row,
            )
        )
        return row

    async def get_webhook(self, webhook_id: str) -> Row | None:
        return await self._db.read(
            lambda c: row_or_none(c.execute("SELECT * FROM webhooks WHERE id=?", (webhook_id,)).fetchone())
        )

    async def list_webhooks(self, tenant_id: str, workspace_id: str | None = None) -> list[Row]:
        sql = "SELECT * FROM webhooks WHERE tenant_id=?" + (" AND workspace_id=?" if workspace_id else "")
        args = (tenant_id, workspace_id) if workspace_id else (tenant_id,)
        return await self._db.read(lambda c: [dict(r) for r in c.execute(sql + " ORDER BY created_at", args)])

    async def update_webhook(
        self, webhook_id: str, *, url: str | None, events: Sequence[str] | None, is_active: bool | None
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            if url is not None:
                c.execute("UPDATE webhooks SET url=? WHERE id=?", (url, webhook_id))
            if events is not None:
                c.execute(
                    "UPDATE webhooks SET events_json=? WHERE id=?", (json.dumps(list(events)), webhook_id)
                )
            if is_active is not None:
                c.execute("UPDATE webhooks SET is_active=? WHERE id=?", (1 if is_active else 0, webhook_id))

        await self._db.write(run)

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._db.write(lambda c: c.execute("DELETE FROM webhooks WHERE id=?", (webhook_id,)))

    def may_have_webhooks(self) -> bool:
        """False only when no webhook was ever stored: every SMTP accept can then skip the lookup."""
        return self._may_have_webhooks

    async def webhooks_for_event(self, tenant_id: str, workspace_id: str | None, inbox_id: str) -> list[Row]:
        """Active webhooks that cover an inbox: tenant-wide, its workspace's, or its own."""
        return await self._db.read(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT * FROM webhooks WHERE tenant_id=? AND is_active=1"
                    " AND (workspace_id IS NULL OR workspace_id IS ?) AND (inbox_id IS NULL OR inbox_id=?)",
                    (tenant_id, workspace_id, inbox_id),
                )
            ]
        )

    # ------------------------------------------------------------ metrics

    async def metrics(
        self,
        tenant_id: str,
        *,
        workspace_id: str | None,
        inbox_id: str | None,
        start: str | None,
        end: str | None,
    ) -> Row:
        scope_sql = "i.tenant_id=?"
        scope_args: list[Any] = [tenant_id]
        if workspace_id:
            scope_sql += " AND i.workspace_id=?"
            scope_args.append(workspace_id)
        if inbox_id:
            scope_sql += " AND i.id=?"
            scope_args.append(inbox_id)
        window_sql, window_args = "", []
        if start:
            window_sql += " AND m.at >= ?"
            window_args.append(start)
        if end:
            window_sql += " AND m.at <= ?"
            window_args.append(end)

        def run(c: sqlite3.Connection) -> Row:
            counts = c.execute(
                "SELECT SUM(m.direction='outbound' AND m.status IN ('sent', 'delivered', 'captured', 'partial')) AS sent,"
                " SUM(m.direction='inbound') AS received, SUM(m.status='bounced') AS bounced"
                f" FROM messages m JOIN inboxes i ON i.id=m.inbox_id WHERE {scope_sql}{window_sql}",
                scope_args + window_args,
            ).fetchone()
            inboxes = c.execute(f"SELECT COUNT(*) FROM inboxes i WHERE {scope_sql}", scope_args).fetchone()[0]
            dom_sql = "SELECT COUNT(*) FROM domains WHERE tenant_id=?" + (
                " AND workspace_id=?" if workspace_id else ""
            )
            dom_args = (tenant_id, workspace_id) if workspace_id else (tenant_id,)
            domains = c.execute(dom_sql, dom_args).fetchone()[0]
            return {
                "sent": counts["sent"] or 0,
                "received": counts["received"] or 0,
                "bounced": counts["bounced"] or 0,
                "inboxes": inboxes,
                "domains": domains,
            }

        return await self._db.read(run)


# ---------------------------------------------------------------- writer-thread functions


def delete_inbox_rows(c: sqlite3.Connection, inbox_id: str) -> None:
    """The inbox's address lists (with their entries) and its own webhooks."""
    c.execute(
        "DELETE FROM list_entries WHERE list_id IN (SELECT id FROM address_lists WHERE inbox_id=?)",
        (inbox_id,),
    )
    c.execute("DELETE FROM address_lists WHERE inbox_id=?", (inbox_id,))
    c.execute("DELETE FROM webhooks WHERE inbox_id=?", (inbox_id,))


def delete_workspace_rows(c: sqlite3.Connection, workspace_id: str) -> None:
    """The workspace's domains and webhooks."""
    c.execute("DELETE FROM domains WHERE workspace_id=?", (workspace_id,))
    c.execute("DELETE FROM webhooks WHERE workspace_id=?", (workspace_id,))
