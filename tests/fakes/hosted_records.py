"""Records of the fake hosted API's in-memory state and their wire (camelCase) forms.

Ordering uses a sequence number, not clock time, so "newest first" is exact.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from mam_mcp.local.timestamps import utc_now_iso

__all__ = [
    "DEFAULT_DOMAIN",
    "TENANT_ID",
    "AddressListRecord",
    "AttachmentRecord",
    "DomainRecord",
    "DraftRecord",
    "InboxRecord",
    "MessageRecord",
    "ThreadRecord",
    "WebhookRecord",
    "WorkspaceKeyRecord",
    "WorkspaceRecord",
    "new_id",
    "next_seq",
]

TENANT_ID = "ten_fake"
DEFAULT_DOMAIN = "myagentmail.com"
_sequence = itertools.count(1)


def new_id() -> str:
    return str(uuid.uuid4())


def next_seq() -> int:
    return next(_sequence)


@dataclass(slots=True)
class AttachmentRecord:
    id: str
    filename: str
    content_type: str
    data: bytes

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filename": self.filename,
            "contentType": self.content_type,
            "size": len(self.data),
        }


@dataclass(slots=True)
class InboxRecord:
    id: str
    username: str
    domain: str
    display_name: str | None
    workspace_id: str | None
    imap_password: str
    addresses: list[dict[str, Any]]  # [{email, primary, createdAt}]
    metadata: dict[str, Any] | None = None
    created_at: str = field(default_factory=utc_now_iso)
    known_senders: set[str] = field(default_factory=set)

    @property
    def canonical(self) -> str:
        return f"{self.username}@{self.domain}"

    @property
    def email(self) -> str:
        """The primary (outbound From) address."""
        return next((a["email"] for a in self.addresses if a["primary"]), self.canonical)

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "email": self.email,
            "username": self.username,
            "domain": self.domain,
            "displayName": self.display_name,
            "workspaceId": self.workspace_id,
            "createdAt": self.created_at,
        }
        if self.metadata is not None:
            body["metadata"] = self.metadata
        return body

    def credentials(self, *, revealed: bool) -> dict[str, Any]:
        password = self.imap_password if revealed else ""
        common = {"username": self.canonical, "password": password}
        return {
            "imap": {"host": "imap.myagentmail.com", "port": 993, **common},
            "smtp": {"host": "smtp.myagentmail.com", "port": 465, **common},
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.wire(),
            "addresses": [dict(a) for a in self.addresses],
            **self.credentials(revealed=True),
        }


@dataclass(slots=True)
class ThreadRecord:
    id: str
    inbox_id: str
    subject: str
    created_at: str = field(default_factory=utc_now_iso)
    updated_at: str = field(default_factory=utc_now_iso)
    last_seq: int = field(default_factory=next_seq)

    def wire(self, message_count: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "inboxId": self.inbox_id,
            "subject": self.subject,
            "messageCount": message_count,
            "lastMessageAt": self.updated_at,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(slots=True)
class MessageRecord:
    id: str
    inbox_id: str
    thread_id: str
    direction: str
    from_address: str
    from_name: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    plain_body: str | None
    html_body: str | None
    message_id: str
    in_reply_to: str | None = None
    is_read: bool = False
    status: str = "received"
    received_at: str | None = None
    sent_at: str | None = None
    created_at: str = field(default_factory=utc_now_iso)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    raw: bytes | None = None
    deleted: bool = False
    seq: int = field(default_factory=next_seq)

    def wire(self, *, with_attachments: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "inboxId": self.inbox_id,
            "threadId": self.thread_id,
            "direction": self.direction,
            "fromAddress": self.from_address,
            "fromName": self.from_name,
            "toAddresses": list(self.to),
            "ccAddresses": list(self.cc),
            "subject": self.subject,
            "plainBody": self.plain_body,
            "htmlBody": self.html_body,
            "isRead": self.is_read,
            "status": self.status,
            "messageId": self.message_id,
            "inReplyTo": self.in_reply_to,
            "receivedAt": self.received_at,
            "sentAt": self.sent_at,
            "createdAt": self.created_at,
            "hasAttachments": bool(self.attachments),
        }
        if with_attachments:
            body["attachments"] = [a.wire() for a in self.attachments]
        return body


@dataclass(slots=True)
class DraftRecord:
    id: str
    inbox_id: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str | None = None
    plain_body: str | None = None
    html_body: str | None = None
    reply_to_message_id: str | None = None
    created_at: str = field(default_factory=utc_now_iso)
    updated_at: str = field(default_factory=utc_now_iso)
    seq: int = field(default_factory=next_seq)

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "inboxId": self.inbox_id,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "subject": self.subject,
            "plainBody": self.plain_body,
            "htmlBody": self.html_body,
            "replyToMessageId": self.reply_to_message_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(slots=True)
class AddressListRecord:
    id: str
    inbox_id: str
    name: str
    description: str | None
    created_at: str = field(default_factory=utc_now_iso)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def wire(self, *, with_entries: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "inboxId": self.inbox_id,
            "name": self.name,
            "description": self.description,
            "createdAt": self.created_at,
        }
        if with_entries:
            body["entries"] = list(self.entries.values())
        return body


@dataclass(slots=True)
class DomainRecord:
    domain: str
    workspace_id: str | None
    status: str = "pending"
    created_at: str = field(default_factory=utc_now_iso)
    verified_at: str | None = None

    def records(self) -> list[dict[str, Any]]:
        return [
            {"type": "MX", "host": self.domain, "value": "inbound.myagentmail.com", "priority": 10},
            {"type": "TXT", "host": self.domain, "value": "v=spf1 include:spf.myagentmail.com ~all"},
            {"type": "CNAME", "host": f"mam._domainkey.{self.domain}", "value": "dkim.myagentmail.com"},
            {"type": "TXT", "host": f"_dmarc.{self.domain}", "value": "v=DMARC1; p=none"},
        ]

    def wire(self) -> dict[str, Any]:
        verified = self.status == "verified"
        return {
            "domain": self.domain,
            "status": self.status,
            "inboundEnabled": verified,
            "outboundEnabled": verified,
            "createdAt": self.created_at,
            "verifiedAt": self.verified_at,
            "records": self.records(),
        }

    def zone_file(self) -> str:
        lines = [f"; BIND zone records for {self.domain}"]
        for record in self.records():
            priority = f"{record['priority']} " if "priority" in record else ""
            value = record["value"] if record["type"] != "TXT" else f'"{record["value"]}"'
            lines.append(f"{record['host']}.\t3600\tIN\t{record['type']}\t{priority}{value}")
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class WorkspaceRecord:
    id: str
    name: str
    created_at: str = field(default_factory=utc_now_iso)

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "createdAt": self.created_at}


@dataclass(slots=True)
class WorkspaceKeyRecord:
    id: str
    workspace_id: str
    name: str | None
    key: str = field(repr=False)
    created_at: str = field(default_factory=utc_now_iso)
    revoked_at: str | None = None

    def wire(self, *, with_key: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "prefix": self.key[:7],
            "createdAt": self.created_at,
            "revokedAt": self.revoked_at,
        }
        if with_key:
            body["key"] = self.key
        return body


@dataclass(slots=True)
class WebhookRecord:
    id: str
    url: str
    events: list[str]
    inbox_id: str | None
    workspace_id: str | None
    secret: str = field(repr=False)
    is_active: bool = True
    created_at: str = field(default_factory=utc_now_iso)

    def wire(self, *, with_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "inboxId": self.inbox_id,
            "workspaceId": self.workspace_id,
            "isActive": self.is_active,
            "createdAt": self.created_at,
        }
        if with_secret:
            body["secret"] = self.secret
        return body
