"""Every inbox and address, in memory: RCPT checks and scope checks answer without a query.

Loaded when the store opens and kept current by the writes that change inboxes and addresses
(one daemon per data dir, so nothing else writes them).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = ["InboxDirectory", "InboxRecord"]


@dataclass(frozen=True, slots=True)
class InboxRecord:
    id: str
    tenant_id: str
    workspace_id: str | None
    email: str


class InboxDirectory:
    def __init__(self) -> None:
        self._inboxes: dict[str, InboxRecord] = {}
        self._addresses: dict[str, str] = {}  # lower-case address -> inbox id

    def load(self, conn: sqlite3.Connection) -> None:
        for row in conn.execute("SELECT id, tenant_id, workspace_id, email FROM inboxes"):
            self._inboxes[row["id"]] = InboxRecord(row["id"], row["tenant_id"], row["workspace_id"], row["email"])
        for row in conn.execute("SELECT email, inbox_id FROM addresses"):
            self._addresses[row["email"].lower()] = row["inbox_id"]

    def record(self, inbox_id: str) -> InboxRecord | None:
        return self._inboxes.get(inbox_id)

    def owner_of(self, address: str) -> InboxRecord | None:
        """The inbox an address (any case, with or without angle brackets) delivers to."""
        inbox_id = self._addresses.get(address.strip().strip("<>").lower())
        return self._inboxes.get(inbox_id) if inbox_id else None

    def add_inbox(self, record: InboxRecord) -> None:
        self._inboxes[record.id] = record
        self._addresses[record.email.lower()] = record.id

    def add_address(self, address: str, inbox_id: str) -> None:
        self._addresses[address.lower()] = inbox_id

    def remove_address(self, address: str) -> None:
        self._addresses.pop(address.lower(), None)

    def forget_inbox(self, inbox_id: str) -> None:
        self._inboxes.pop(inbox_id, None)
        for addr in [a for a, i in self._addresses.items() if i == inbox_id]:
            del self._addresses[addr]
