"""Resource namespaces for the email half of /v1: `client.inboxes.create(...)`, `client.messages.send(...)`.

Arguments are snake_case Python; bodies go out camelCase as the reference documents them.
Each method is one HTTP call; no method retries a send (see client.http).
"""

from __future__ import annotations

import builtins
from typing import Any

from mam_mcp.client.errors import ValidationFailed
from mam_mcp.client.http import RawResponse, ResourceNamespace
from mam_mcp.client.http import json_body as _body
from mam_mcp.client.http import path_segment as _seg
from mam_mcp.client.models import (
    AddressList,
    Attachment,
    AttachmentList,
    Domain,
    Draft,
    DraftList,
    Inbox,
    InboxKey,
    InboxList,
    ListEntry,
    Message,
    MessageList,
    Metrics,
    SendPreview,
    SendResult,
    Thread,
    ThreadList,
    VerifyEmailResult,
    Webhook,
    Workspace,
    WorkspaceKey,
)
from mam_mcp.headers import UNSAFE_REASON, is_safe_header_value

__all__ = [
    "Inboxes",
    "Messages",
    "Attachments",
    "Threads",
    "Drafts",
    "Previews",
    "Lists",
    "Domains",
    "Workspaces",
    "Webhooks",
    "MetricsApi",
    "VerifyApi",
]


def _check_header_args(**arguments: str | builtins.list[str] | None) -> None:
    """Refuse, before any call, a value that would not stay one mail header (as the local backend does).

    Names are the snake_case arguments of the tools; the check reads values as any decoder would
    (RFC 2047 encoded words included), see `mam_mcp.headers`.
    """
    for name, value in arguments.items():
        values = [value] if isinstance(value, str) else (value or [])
        if not all(is_safe_header_value(v) for v in values):
            raise ValidationFailed(f"{name}: {UNSAFE_REASON}", details=[{"path": name, "message": UNSAFE_REASON}])


class Inboxes(ResourceNamespace):
    async def create(
        self,
        *,
        username: str | None = None,
        display_name: str | None = None,
        domain: str | None = None,
        workspace_id: str | None = None,
        ttl_seconds: int | None = None,
        reveal: bool = False,
    ) -> Inbox:
        """`ttl_seconds`: local backend only (the hosted API has no time to live)."""
        _check_header_args(display_name=display_name)
        data = await self._http.request(
            "POST",
            "/inboxes",
            params={"reveal": True} if reveal else None,
            json=_body(
                username=username, displayName=display_name, domain=domain, workspaceId=workspace_id,
                ttlSeconds=ttl_seconds,
            ),  # fmt: skip
        )
        return Inbox.model_validate(data)

    async def list(self, *, workspace: str | None = None) -> InboxList:
        return InboxList.model_validate(await self._http.request("GET", "/inboxes", params={"workspace": workspace}))

    async def get(self, inbox_id: str) -> Inbox:
        return Inbox.model_validate(await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}"))

    async def update(
        self, inbox_id: str, *, display_name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> Inbox:
        _check_header_args(display_name=display_name)
        data = await self._http.request(
            "PATCH", f"/inboxes/{_seg(inbox_id)}", json=_body(displayName=display_name, metadata=metadata)
        )
        return Inbox.model_validate(data)

    async def delete(self, inbox_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/inboxes/{_seg(inbox_id)}")

    async def add_address(self, inbox_id: str, *, email: str, primary: bool | None = None) -> Inbox:
        data = await self._http.request(
            "POST", f"/inboxes/{_seg(inbox_id)}/addresses", json=_body(email=email, primary=primary)
        )
        return Inbox.model_validate(data)

    async def remove_address(self, inbox_id: str, address: str) -> Inbox:
        data = await self._http.request("DELETE", f"/inboxes/{_seg(inbox_id)}/addresses/{_seg(address)}")
        return Inbox.model_validate(data)

    async def create_key(self, inbox_id: str, *, name: str | None = None) -> InboxKey:
        data = await self._http.request("POST", f"/inboxes/{_seg(inbox_id)}/keys", json=_body(name=name))
        return InboxKey.model_validate(data)


def _send_body(
    *, to: list[str], subject: str, plain_body: str | None, html_body: str | None,
    cc: list[str] | None, bcc: list[str] | None, verified: bool | None,
) -> dict[str, Any]:
    _check_header_args(to=to, cc=cc, bcc=bcc, subject=subject)
    return _body(
        to=to, cc=cc or None, bcc=bcc or None, subject=subject, plainBody=plain_body, htmlBody=html_body,
        verified=verified,
    )  # fmt: skip


def _reply_body(
    *, plain_body: str | None, html_body: str | None, cc: list[str] | None, bcc: list[str] | None,
    verified: bool | None,
) -> dict[str, Any]:
    _check_header_args(cc=cc, bcc=bcc)
    return _body(plainBody=plain_body, htmlBody=html_body, cc=cc or None, bcc=bcc or None, verified=verified or None)


def _forward_body(
    *, to: list[str], plain_body: str | None, html_body: str | None, cc: list[str] | None,
    bcc: list[str] | None, verified: bool | None,
) -> dict[str, Any]:
    _check_header_args(to=to, cc=cc, bcc=bcc)
    return _body(to=to, cc=cc or None, bcc=bcc or None, plainBody=plain_body, htmlBody=html_body, verified=verified)


def _bound(body: dict[str, Any], expect_hash: str | None) -> dict[str, Any]:
    """A send bound to an approved preview (local backend): refused with CONTENT_CHANGED if it differs."""
    return {**body, "expectHash": expect_hash} if expect_hash else body


class Messages(ResourceNamespace):
    async def send(
        self,
        inbox_id: str,
        *,
        to: list[str],
        subject: str,
        plain_body: str | None = None,
        html_body: str | None = None,
        cc: list[str] | None = None,
        bcc: list[str] | None = None,
        verified: bool | None = None,
        expect_hash: str | None = None,
    ) -> SendResult:
        body = _send_body(to=to, subject=subject, plain_body=plain_body, html_body=html_body, cc=cc, bcc=bcc, verified=verified)
        data = await self._http.request("POST", f"/inboxes/{_seg(inbox_id)}/send", json=_bound(body, expect_hash), send=True)
        return SendResult.model_validate(data)

    async def reply(
        self,
        inbox_id: str,
        message_id: str,
        *,
        plain_body: str | None = None,
        html_body: str | None = None,
        cc: list[str] | None = None,
        bcc: list[str] | None = None,
        reply_all: bool = False,
        verified: bool | None = None,
        expect_hash: str | None = None,
    ) -> SendResult:
        route = "reply-all" if reply_all else "reply"
        body = _reply_body(plain_body=plain_body, html_body=html_body, cc=cc, bcc=bcc, verified=verified)
        data = await self._http.request(
            "POST", f"/inboxes/{_seg(inbox_id)}/{route}/{_seg(message_id)}", json=_bound(body, expect_hash), send=True
        )
        return SendResult.model_validate(data)

    async def forward(
        self,
        inbox_id: str,
        message_id: str,
        *,
        to: list[str],
        plain_body: str | None = None,
        html_body: str | None = None,
        cc: list[str] | None = None,
        bcc: list[str] | None = None,
        verified: bool | None = None,
        expect_hash: str | None = None,
    ) -> SendResult:
        body = _forward_body(to=to, plain_body=plain_body, html_body=html_body, cc=cc, bcc=bcc, verified=verified)
        data = await self._http.request(
            "POST", f"/inboxes/{_seg(inbox_id)}/forward/{_seg(message_id)}", json=_bound(body, expect_hash), send=True
        )
        return SendResult.model_validate(data)

    async def list(
        self,
        inbox_id: str,
        *,
        direction: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        extra_filters: dict[str, Any] | None = None,
    ) -> MessageList:
        """List messages. `extra_filters` (unread, from, subject, q, after) are local-backend extensions."""
        params: dict[str, Any] = {"direction": direction, "limit": limit, "offset": offset}
        params.update(extra_filters or {})
        data = await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/messages", params=params)
        return MessageList.model_validate(data)

    async def get(self, inbox_id: str, message_id: str, *, peek: bool = False) -> Message:
        """Get a message (the API marks it read). `peek=True` (local backend only) leaves it unread."""
        params = {"peek": True} if peek else None
        data = await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/messages/{_seg(message_id)}", params=params)
        return Message.model_validate(data)

    async def mark(self, inbox_id: str, message_id: str, *, is_read: bool) -> Message:
        data = await self._http.request(
            "PATCH", f"/inboxes/{_seg(inbox_id)}/messages/{_seg(message_id)}", json={"isRead": is_read}
        )
        return Message.model_validate(data)

    async def delete(self, inbox_id: str, message_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/inboxes/{_seg(inbox_id)}/messages/{_seg(message_id)}")

    async def raw(self, inbox_id: str, message_id: str) -> RawResponse:
        return await self._http.request(
            "GET", f"/inboxes/{_seg(inbox_id)}/messages/{_seg(message_id)}/raw", expect="bytes"
        )


class Attachments(ResourceNamespace):
    async def list(self, inbox_id: str, message_id: str) -> builtins.list[Attachment]:
        data = await self._http.request(
            "GET", f"/inboxes/{_seg(inbox_id)}/messages/{_seg(message_id)}/attachments"
        )
        return AttachmentList.model_validate(data).attachments

    async def download(self, inbox_id: str, message_id: str, attachment_id: str) -> RawResponse:
        return await self._http.request(
            "GET",
            f"/inboxes/{_seg(inbox_id)}/messages/{_seg(message_id)}/attachments/{_seg(attachment_id)}",
            expect="bytes",
        )


class Threads(ResourceNamespace):
    async def list(self, inbox_id: str, *, limit: int | None = None, offset: int | None = None) -> ThreadList:
        data = await self._http.request(
            "GET", f"/inboxes/{_seg(inbox_id)}/threads", params={"limit": limit, "offset": offset}
        )
        return ThreadList.model_validate(data)

    async def get(
        self, inbox_id: str, thread_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> Thread:
        """A thread with its messages; `limit`/`offset` page them (local backend only)."""
        params = {"limit": limit, "offset": offset}
        return Thread.model_validate(
            await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/threads/{_seg(thread_id)}", params=params)
        )


class Drafts(ResourceNamespace):
    async def create(
        self,
        inbox_id: str,
        *,
        to: list[str] | None = None,
        cc: list[str] | None = None,
        bcc: list[str] | None = None,
        subject: str | None = None,
        plain_body: str | None = None,
        html_body: str | None = None,
        reply_to_message_id: str | None = None,
    ) -> Draft:
        _check_header_args(to=to, cc=cc, bcc=bcc, subject=subject)
        body = _body(
            to=to, cc=cc, bcc=bcc, subject=subject, plainBody=plain_body, htmlBody=html_body,
            replyToMessageId=reply_to_message_id,
        )
        return Draft.model_validate(await self._http.request("POST", f"/inboxes/{_seg(inbox_id)}/drafts", json=body))

    async def list(self, inbox_id: str) -> DraftList:
        return DraftList.model_validate(await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/drafts"))

    async def get(self, inbox_id: str, draft_id: str) -> Draft:
        return Draft.model_validate(
            await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/drafts/{_seg(draft_id)}")
        )

    async def update(self, inbox_id: str, draft_id: str, **changes: Any) -> Draft:
        """Merge-patch: pass only the fields to change (to, cc, bcc, subject, plain_body, html_body)."""
        _check_header_args(**{k: changes.get(k) for k in ("to", "cc", "bcc", "subject")})
        names = {"plain_body": "plainBody", "html_body": "htmlBody", "reply_to_message_id": "replyToMessageId"}
        body = {names.get(k, k): v for k, v in changes.items() if v is not None}
        return Draft.model_validate(
            await self._http.request("PATCH", f"/inboxes/{_seg(inbox_id)}/drafts/{_seg(draft_id)}", json=body)
        )

    async def delete(self, inbox_id: str, draft_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/inboxes/{_seg(inbox_id)}/drafts/{_seg(draft_id)}")

    async def send(
        self, inbox_id: str, draft_id: str, *, verified: bool = False, expect_hash: str | None = None
    ) -> SendResult:
        body = _bound({"verified": True} if verified else {}, expect_hash)
        data = await self._http.request(
            "POST", f"/inboxes/{_seg(inbox_id)}/drafts/{_seg(draft_id)}/send", json=body or None, send=True
        )
        return SendResult.model_validate(data)


class Previews(ResourceNamespace):
    """Dry runs of the send routes (local backend only): exactly what would be sent and who is new.

    The hosted API has no dry run; the tools compose a preview there from reads instead.
    """

    async def _preview(self, path: str, body: dict[str, Any]) -> SendPreview:
        data = await self._http.request("POST", path, json={**body, "dryRun": True})
        return SendPreview.model_validate(data.get("preview", data))

    async def send(
        self, inbox_id: str, *, to: list[str], subject: str, plain_body: str | None = None,
        html_body: str | None = None, cc: list[str] | None = None, bcc: list[str] | None = None,
    ) -> SendPreview:
        body = _send_body(to=to, subject=subject, plain_body=plain_body, html_body=html_body, cc=cc, bcc=bcc, verified=None)
        return await self._preview(f"/inboxes/{_seg(inbox_id)}/send", body)

    async def reply(
        self, inbox_id: str, message_id: str, *, plain_body: str | None = None, html_body: str | None = None,
        cc: list[str] | None = None, bcc: list[str] | None = None, reply_all: bool = False,
    ) -> SendPreview:
        route = "reply-all" if reply_all else "reply"
        body = _reply_body(plain_body=plain_body, html_body=html_body, cc=cc, bcc=bcc, verified=None)
        return await self._preview(f"/inboxes/{_seg(inbox_id)}/{route}/{_seg(message_id)}", body)

    async def forward(
        self, inbox_id: str, message_id: str, *, to: list[str], plain_body: str | None = None,
        html_body: str | None = None, cc: list[str] | None = None, bcc: list[str] | None = None,
    ) -> SendPreview:
        body = _forward_body(to=to, plain_body=plain_body, html_body=html_body, cc=cc, bcc=bcc, verified=None)
        return await self._preview(f"/inboxes/{_seg(inbox_id)}/forward/{_seg(message_id)}", body)

    async def draft(self, inbox_id: str, draft_id: str) -> SendPreview:
        return await self._preview(f"/inboxes/{_seg(inbox_id)}/drafts/{_seg(draft_id)}/send", {})


class Lists(ResourceNamespace):
    async def list(self, inbox_id: str) -> builtins.list[AddressList]:
        data = await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/lists")
        return [AddressList.model_validate(item) for item in data.get("lists", [])]

    async def create(self, inbox_id: str, *, name: str, description: str | None = None) -> AddressList:
        data = await self._http.request(
            "POST", f"/inboxes/{_seg(inbox_id)}/lists", json=_body(name=name, description=description)
        )
        return AddressList.model_validate(data)

    async def get(self, inbox_id: str, list_id: str) -> AddressList:
        return AddressList.model_validate(
            await self._http.request("GET", f"/inboxes/{_seg(inbox_id)}/lists/{_seg(list_id)}")
        )

    async def delete(self, inbox_id: str, list_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/inboxes/{_seg(inbox_id)}/lists/{_seg(list_id)}")

    async def add_entry(
        self,
        inbox_id: str,
        list_id: str,
        *,
        email: str,
        display_name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ListEntry:
        data = await self._http.request(
            "POST",
            f"/inboxes/{_seg(inbox_id)}/lists/{_seg(list_id)}/entries",
            json=_body(email=email, displayName=display_name, metadata=metadata),
        )
        return ListEntry.model_validate(data)

    async def remove_entry(self, inbox_id: str, list_id: str, entry_id: str) -> dict[str, Any]:
        return await self._http.request(
            "DELETE", f"/inboxes/{_seg(inbox_id)}/lists/{_seg(list_id)}/entries/{_seg(entry_id)}"
        )


def _domain(data: Any) -> Domain:
    return Domain.model_validate(data.get("domain", data) if isinstance(data.get("domain"), dict) else data)


class Domains(ResourceNamespace):
    async def create(self, *, domain: str, workspace_id: str | None = None) -> Domain:
        return _domain(await self._http.request("POST", "/domains", json=_body(domain=domain, workspaceId=workspace_id)))

    async def list(self) -> builtins.list[Domain]:
        data = await self._http.request("GET", "/domains")
        return [Domain.model_validate(d) for d in data.get("domains", [])]

    async def get(self, domain: str) -> Domain:
        return _domain(await self._http.request("GET", f"/domains/{_seg(domain)}"))

    async def verify(self, domain: str) -> Domain:
        return _domain(await self._http.request("GET", f"/domains/{_seg(domain)}/verify"))

    async def zone_file(self, domain: str) -> str:
        raw: RawResponse = await self._http.request("GET", f"/domains/{_seg(domain)}/zone-file", expect="bytes")
        return raw.content.decode("utf-8", errors="replace")

    async def delete(self, domain: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/domains/{_seg(domain)}")


class Workspaces(ResourceNamespace):
    async def create(self, *, name: str) -> Workspace:
        return Workspace.model_validate(await self._http.request("POST", "/workspaces", json={"name": name}))

    async def list(self) -> builtins.list[Workspace]:
        data = await self._http.request("GET", "/workspaces")
        return [Workspace.model_validate(w) for w in data.get("workspaces", [])]

    async def get(self, workspace_id: str) -> Workspace:
        return Workspace.model_validate(await self._http.request("GET", f"/workspaces/{_seg(workspace_id)}"))

    async def delete(self, workspace_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/workspaces/{_seg(workspace_id)}")

    async def create_key(self, workspace_id: str, *, name: str | None = None) -> WorkspaceKey:
        data = await self._http.request("POST", f"/workspaces/{_seg(workspace_id)}/keys", json=_body(name=name))
        return WorkspaceKey.model_validate(data)

    async def list_keys(self, workspace_id: str) -> builtins.list[WorkspaceKey]:
        data = await self._http.request("GET", f"/workspaces/{_seg(workspace_id)}/keys")
        return [WorkspaceKey.model_validate(k) for k in data.get("keys", [])]

    async def revoke_key(self, workspace_id: str, key_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/workspaces/{_seg(workspace_id)}/keys/{_seg(key_id)}")


class Webhooks(ResourceNamespace):
    async def create(
        self,
        *,
        url: str,
        events: list[str],
        inbox_id: str | None = None,
        workspace_id: str | None = None,
    ) -> Webhook:
        body = _body(url=url, events=events, inboxId=inbox_id, workspaceId=workspace_id)
        return Webhook.model_validate(await self._http.request("POST", "/webhooks", json=body))

    async def list(self) -> builtins.list[Webhook]:
        data = await self._http.request("GET", "/webhooks")
        return [Webhook.model_validate(w) for w in data.get("webhooks", [])]

    async def get(self, webhook_id: str) -> Webhook:
        return Webhook.model_validate(await self._http.request("GET", f"/webhooks/{_seg(webhook_id)}"))

    async def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: builtins.list[str] | None = None,
        is_active: bool | None = None,
    ) -> Webhook:
        body = _body(url=url, events=events, isActive=is_active)
        return Webhook.model_validate(await self._http.request("PATCH", f"/webhooks/{_seg(webhook_id)}", json=body))

    async def delete(self, webhook_id: str) -> dict[str, Any]:
        return await self._http.request("DELETE", f"/webhooks/{_seg(webhook_id)}")


class MetricsApi(ResourceNamespace):
    async def get(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        workspace: str | None = None,
        inbox: str | None = None,
    ) -> Metrics:
        params = {"from": since, "to": until, "workspace": workspace, "inbox": inbox}
        return Metrics.model_validate(await self._http.request("GET", "/metrics", params=params))


class VerifyApi(ResourceNamespace):
    async def email(self, email: str) -> VerifyEmailResult:
        return VerifyEmailResult.model_validate(
            await self._http.request("POST", "/verify-email", json={"email": email})
        )
