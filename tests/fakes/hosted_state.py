"""In-memory state of the fake hosted API: records, their wire (camelCase) forms, and lookups.

Lookups raise `FakeApiError` (404 NOT_FOUND, 403 AUTH_FORBIDDEN) with the reference's codes,
so route handlers stay short. Ordering uses a sequence number, not clock time.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from mam_mcp.local.model import KeyScope, utc_now_iso
from tests.fakes.hosted_errors import FakeApiError

__all__ = [
    "DEFAULT_DOMAIN",
    "TENANT_ID",
    "AddressListRecord",
    "AttachmentRecord",
    "DomainRecord",
    "DraftRecord",
    "HostedState",
    "InboxRecord",
    "MessageRecord",
    "ThreadRecord",
    "WebhookRecord",
    "WorkspaceKeyRecord",
    "WorkspaceRecord",
    "new_id",
]

TENANT_ID = "ten_fake"
DEFAULT_DOMAIN = "myagentmail.com"
_sequence = itertools.count(1)


def _new_id() -> str:
    return str(uuid.uuid4())


def _next_seq() -> int:
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
    last_seq: int = field(default_factory=_next_seq)

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
    seq: int = field(default_factory=_next_seq)

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
    seq: int = field(default_factory=_next_seq)

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


def _not_found(what: str, ident: str) -> FakeApiError:
    return FakeApiError(404, "NOT_FOUND", f"{what} {ident} not found")


@dataclass
class HostedState:
    """Everything the fake stores. Keys map to their scope; the tenant key is `tk_`."""

    keys: dict[str, KeyScope] = field(default_factory=dict)
    inboxes: dict[str, InboxRecord] = field(default_factory=dict)
    threads: dict[str, ThreadRecord] = field(default_factory=dict)
    messages: dict[str, MessageRecord] = field(default_factory=dict)
    drafts: dict[str, DraftRecord] = field(default_factory=dict)
    lists: dict[str, AddressListRecord] = field(default_factory=dict)
    domains: dict[str, DomainRecord] = field(default_factory=dict)
    dns_ready: set[str] = field(default_factory=set)
    workspaces: dict[str, WorkspaceRecord] = field(default_factory=dict)
    workspace_keys: dict[str, WorkspaceKeyRecord] = field(default_factory=dict)
    webhooks: dict[str, WebhookRecord] = field(default_factory=dict)
    paused_inboxes: set[str] = field(default_factory=set)  # sends answer 403 INBOX_PAUSED
    inbox_limit: int | None = None  # creating one more answers 403 PLAN_LIMIT_REACHED

    # --- keys -------------------------------------------------------------------------------
    def add_key(
        self,
        kind: str,
        *,
        workspace_id: str | None = None,
        inbox_id: str | None = None,
        key: str | None = None,
    ) -> str:
        value = key or f"{kind}_{secrets.token_hex(16)}"
        self.keys[value] = KeyScope(
            kind=kind,  # type: ignore[arg-type]
            key_id=_new_id(),
            tenant_id=TENANT_ID,
            workspace_id=workspace_id,
            inbox_id=inbox_id,
        )
        return value

    # --- lookups within a key's scope --------------------------------------------------------
    def inbox(self, scope: KeyScope, inbox_id: str) -> InboxRecord:
        inbox = self.inboxes.get(inbox_id)
        if inbox is None or not scope.can_see(
            tenant_id=TENANT_ID, workspace_id=inbox.workspace_id, inbox_id=inbox.id
        ):
            raise _not_found("inbox", inbox_id)
        return inbox

    def visible_inboxes(self, scope: KeyScope) -> list[InboxRecord]:
        return [
            i
            for i in self.inboxes.values()
            if scope.can_see(tenant_id=TENANT_ID, workspace_id=i.workspace_id, inbox_id=i.id)
        ]

    def message(self, inbox: InboxRecord, message_id: str) -> MessageRecord:
        message = self.messages.get(message_id)
        if message is None or message.inbox_id != inbox.id or message.deleted:
            raise _not_found("message", message_id)
        return message

    def thread(self, inbox: InboxRecord, thread_id: str) -> ThreadRecord:
        thread = self.threads.get(thread_id)
        if thread is None or thread.inbox_id != inbox.id:
            raise _not_found("thread", thread_id)
        return thread

    def thread_messages(self, thread: ThreadRecord) -> list[MessageRecord]:
        found = [m for m in self.messages.values() if m.thread_id == thread.id and not m.deleted]
        return sorted(found, key=lambda m: m.seq)

    def draft(self, inbox: InboxRecord, draft_id: str) -> DraftRecord:
        draft = self.drafts.get(draft_id)
        if draft is None or draft.inbox_id != inbox.id:
            raise _not_found("draft", draft_id)
        return draft

    def address_list(self, inbox: InboxRecord, list_id: str) -> AddressListRecord:
        found = self.lists.get(list_id)
        if found is None or found.inbox_id != inbox.id:
            raise _not_found("list", list_id)
        return found

    def domain(self, scope: KeyScope, name: str) -> DomainRecord:
        found = self.domains.get(name.lower())
        if found is None or (scope.kind == "wk" and found.workspace_id != scope.workspace_id):
            raise _not_found("domain", name)
        return found

    def workspace(self, workspace_id: str) -> WorkspaceRecord:
        found = self.workspaces.get(workspace_id)
        if found is None:
            raise _not_found("workspace", workspace_id)
        return found

    def webhook(self, scope: KeyScope, webhook_id: str) -> WebhookRecord:
        found = self.webhooks.get(webhook_id)
        if found is None or (scope.kind == "wk" and found.workspace_id != scope.workspace_id):
            raise _not_found("webhook", webhook_id)
        return found

    def inbox_owning_address(self, address: str) -> InboxRecord | None:
        wanted = address.lower()
        for inbox in self.inboxes.values():
            if any(a["email"].lower() == wanted for a in inbox.addresses):
                return inbox
        return None

    # --- mutations ----------------------------------------------------------------------------
    def new_thread(self, inbox: InboxRecord, subject: str) -> ThreadRecord:
        thread = ThreadRecord(id=_new_id(), inbox_id=inbox.id, subject=subject)
        self.threads[thread.id] = thread
        return thread

    def touch_thread(self, thread_id: str) -> None:
        thread = self.threads[thread_id]
        thread.updated_at = utc_now_iso()
        thread.last_seq = _next_seq()

    def delete_inbox(self, inbox_id: str) -> None:
        self.inboxes.pop(inbox_id, None)
        for table in (self.threads, self.messages, self.drafts, self.lists):
            for key in [k for k, v in table.items() if v.inbox_id == inbox_id]:
                del table[key]
        for key in [k for k, s in self.keys.items() if s.inbox_id == inbox_id]:
            del self.keys[key]

    def delete_workspace(self, workspace_id: str) -> None:
        """Cascades, as the reference says: its inboxes, domains, keys and webhooks go too."""
        self.workspaces.pop(workspace_id, None)
        for inbox_id in [i.id for i in self.inboxes.values() if i.workspace_id == workspace_id]:
            self.delete_inbox(inbox_id)
        for name in [d.domain for d in self.domains.values() if d.workspace_id == workspace_id]:
            del self.domains[name]
        for key_id in [k.id for k in self.workspace_keys.values() if k.workspace_id == workspace_id]:
            self.revoke_workspace_key(key_id)
            del self.workspace_keys[key_id]
        for hook_id in [h.id for h in self.webhooks.values() if h.workspace_id == workspace_id]:
            del self.webhooks[hook_id]

    def revoke_workspace_key(self, key_id: str) -> None:
        record = self.workspace_keys[key_id]
        record.revoked_at = record.revoked_at or utc_now_iso()
        self.keys.pop(record.key, None)


def new_id() -> str:
    return _new_id()
