"""Every inbox and address, in memory: RCPT checks and scope checks answer without a query.

Loaded when the store opens and kept current by the writes that change inboxes and addresses
(one daemon per data dir, so nothing else writes them).

`route(address)` says where mail to an address goes: the inbox owning it exactly; else, for
`name+tag@domain`, the inbox owning `name@domain`, with the tag; else, on the local domain, the
catch-all inbox when one is configured (off by default).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = ["Delivery", "InboxDirectory", "InboxRecord", "MAX_TAG_CHARS"]

MAX_TAG_CHARS = 64  # a local part's limit (RFC 5321); a longer tag is cut, never refused


@dataclass(frozen=True, slots=True)
class InboxRecord:
    id: str
    tenant_id: str
    workspace_id: str | None
    email: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where mail to one address goes: the inbox, and the plus-address tag (None without one)."""

    inbox: InboxRecord
    tag: str | None = None


class InboxDirectory:
    def __init__(self, *, domain: str | None = None, catch_all: str | None = None) -> None:
        self._inboxes: dict[str, InboxRecord] = {}
        self._addresses: dict[str, str] = {}  # lower-case address -> inbox id
        self._domain = (domain or "").lower()
        # The catch-all inbox's address (a bare username is on the local domain); looked up at each
        # delivery, so an inbox created after start-up under that name takes the mail from then on.
        name = (catch_all or "").strip().lower()
        self._catch_all = (name if "@" in name else f"{name}@{self._domain}") if name else None

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

    def route(self, address: str) -> Delivery | None:
        """Where mail to `address` (any case, with or without angle brackets) is delivered; None: nowhere."""
        plain = address.strip().strip("<>")
        key = plain.lower()
        exact = self.owner_of(key)
        if exact is not None:
            return Delivery(exact)
        local, at, domain = plain.rpartition("@")
        if not at:
            return None
        base, plus, tag = local.partition("+")
        clean_tag = tag[:MAX_TAG_CHARS] or None
        if plus:
            owner = self.owner_of(f"{base}@{domain}")
            if owner is not None:
                return Delivery(owner, clean_tag)
        if self._catch_all is not None and domain.lower() == self._domain:
            owner = self.owner_of(self._catch_all)
            if owner is not None:
                return Delivery(owner, clean_tag)
        return None

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
