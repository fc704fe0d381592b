"""In-memory state of the fake hosted API: the tables of records, key scopes, and scoped lookups.

Lookups raise `FakeApiError` (404 NOT_FOUND) with the reference's codes, so route handlers stay short.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.timestamps import utc_now_iso
from tests.fakes.hosted_errors import FakeApiError
from tests.fakes.hosted_records import (
    TENANT_ID,
    AddressListRecord,
    DomainRecord,
    DraftRecord,
    InboxRecord,
    MessageRecord,
    ThreadRecord,
    WebhookRecord,
    WorkspaceKeyRecord,
    WorkspaceRecord,
    new_id,
    next_seq,
)

__all__ = ["HostedState", "new_id"]  # new_id: re-exported for modules that import it from here


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
            key_id=new_id(),
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
        thread = ThreadRecord(id=new_id(), inbox_id=inbox.id, subject=subject)
        self.threads[thread.id] = thread
        return thread

    def touch_thread(self, thread_id: str) -> None:
        thread = self.threads[thread_id]
        thread.updated_at = utc_now_iso()
        thread.last_seq = next_seq()

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
