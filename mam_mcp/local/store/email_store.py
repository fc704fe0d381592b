"""The local backend's store: one SQLite database, its migrations, and a repository per area.

    store = EmailStore(config)
    await store.open()            # migrates to the latest schema, loads the inbox directory
    store.mail                    # messages, threads, attachments, drafts, correspondents, idempotency
    store.sends                   # where each outbound send stands with the relay
    store.accounts                # tenants, workspaces, inboxes and addresses, API keys
    store.admin                   # address lists, domains, webhooks, metrics
    store.outbox                  # webhook deliveries to make (the outbox) and made (their log)
    store.requests                # idempotency records of the create routes
    await store.delete_inbox(id)  # deletions that cross the areas

All writes go through one group-commit writer (engine.py); all rows are plain dicts of columns.
"""

from __future__ import annotations

import sqlite3
from typing import Self

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store import accounts, admin, mail
from mam_mcp.local.store.accounts import AccountRepository
from mam_mcp.local.store.admin import AdminRepository
from mam_mcp.local.store.directory import InboxDirectory
from mam_mcp.local.store.engine import Database
from mam_mcp.local.store.mail import MailRepository, prune_inbound_digests
from mam_mcp.local.store.migrations import migrate
from mam_mcp.local.store.outbox import OutboxRepository
from mam_mcp.local.store.requests import RequestRecordRepository
from mam_mcp.local.store.send_states import SendStateRepository

__all__ = ["EmailStore"]


class EmailStore:
    """All persistent state of the local backend."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.db = Database(config.db_path)
        self._directory = InboxDirectory(domain=config.domain, catch_all=config.catch_all_inbox)
        self.admin = AdminRepository(self.db)
        self.mail = MailRepository(self.db, self._directory, self.admin.may_have_webhooks)
        self.sends = SendStateRepository(self.db)
        self.accounts = AccountRepository(self.db, self._directory)
        self.outbox = OutboxRepository(self.db)
        self.requests = RequestRecordRepository(self.db)

    async def open(self) -> None:
        await self.db.open(self._prepare)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        migrate(conn)
        prune_inbound_digests(conn)
        self._directory.load(conn)
        self.admin.load(conn)

    async def forget_old_digests(self) -> None:
        """Inbound digests past the dedup window (also done at open: a long-running daemon does it here)."""
        await self.db.write(prune_inbound_digests)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ deletions across the areas

    async def delete_inbox(self, inbox_id: str) -> None:
        await self.db.write(lambda c: _delete_inbox_rows(c, inbox_id), offload=True)
        self._directory.forget_inbox(inbox_id)

    async def delete_expired_inboxes(self, now: str, *, limit: int) -> list[str]:
        """Delete up to `limit` inboxes expired at `now` (a wire timestamp) with all their data, in one
        transaction; returns their ids (more may remain: call again)."""

        def run(c: sqlite3.Connection) -> list[str]:
            inbox_ids = accounts.expired_inbox_ids(c, now, limit)
            for inbox_id in inbox_ids:
                _delete_inbox_rows(c, inbox_id)
            return inbox_ids

        deleted = await self.db.write(run, offload=True)
        for inbox_id in deleted:
            self._directory.forget_inbox(inbox_id)
        return deleted

    async def delete_workspace(self, workspace_id: str) -> list[str]:
        """Delete a workspace and everything in it; returns the deleted inbox ids."""

        def run(c: sqlite3.Connection) -> list[str]:
            inbox_ids = accounts.workspace_inbox_ids(c, workspace_id)
            for inbox_id in inbox_ids:
                _delete_inbox_rows(c, inbox_id)
            accounts.delete_workspace_rows(c, workspace_id)
            admin.delete_workspace_rows(c, workspace_id)
            return inbox_ids

        deleted = await self.db.write(run, offload=True)
        for inbox_id in deleted:
            self._directory.forget_inbox(inbox_id)
        return deleted


def _delete_inbox_rows(c: sqlite3.Connection, inbox_id: str) -> None:
    mail.delete_inbox_rows(c, inbox_id)
    admin.delete_inbox_rows(c, inbox_id)
    accounts.delete_inbox_rows(c, inbox_id)
