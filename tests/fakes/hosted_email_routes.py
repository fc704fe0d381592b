"""Inbox, message, thread, draft and list routes of the fake hosted API (under /v1).

Each handler validates its body through `fake.parse_body` (strict models of hosted_bodies),
acts on `fake.state` and answers with the wire shapes of docs/contract.md.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.timestamps import utc_now_iso
from tests.fakes.hosted_bodies import (
    AddAddressBody,
    CreateDraftBody,
    CreateInboxBody,
    CreateKeyBody,
    CreateListBody,
    CreateListEntryBody,
    ForwardBody,
    MarkMessageBody,
    ReplyBody,
    SendBody,
    SendDraftBody,
    UpdateDraftBody,
    UpdateInboxBody,
)
from tests.fakes.hosted_errors import FakeApiError
from tests.fakes.hosted_mail import as_addresses
from tests.fakes.hosted_records import (
    DEFAULT_DOMAIN,
    AddressListRecord,
    DomainRecord,
    DraftRecord,
    InboxRecord,
    MessageRecord,
    new_id,
)
from tests.fakes.hosted_route_group import OK_BODY, RouteGroup, page

__all__ = ["EmailRoutes"]


class EmailRoutes(RouteGroup):
    """Everything under /v1/inboxes."""

    def routes(self) -> list[BaseRoute]:
        r = self.fake.route
        inbox = "/v1/inboxes/{inbox_id}"
        message = inbox + "/messages/{message_id}"
        return [
            r("POST", "/v1/inboxes", self.create_inbox, query=("reveal",)),
            r("GET", "/v1/inboxes", self.list_inboxes, query=("workspace", "limit", "offset")),
            r("GET", inbox, self.get_inbox),
            r("PATCH", inbox, self.update_inbox),
            r("DELETE", inbox, self.delete_inbox),
            r("POST", inbox + "/addresses", self.add_address),
            r("DELETE", inbox + "/addresses/{address}", self.remove_address),
            r("POST", inbox + "/keys", self.create_inbox_key),
            r("POST", inbox + "/send", self.send),
            r("POST", inbox + "/reply/{message_id}", self.reply),
            r("POST", inbox + "/reply-all/{message_id}", self.reply_all),
            r("POST", inbox + "/forward/{message_id}", self.forward),
            r("GET", inbox + "/messages", self.list_messages, query=("direction", "limit", "offset")),
            r("GET", message, self.get_message),
            r("PATCH", message, self.mark_message),
            r("DELETE", message, self.delete_message),
            r("GET", message + "/raw", self.raw_message),
            r("GET", message + "/attachments", self.list_attachments),
            r("GET", message + "/attachments/{attachment_id}", self.download_attachment),
            r("GET", inbox + "/threads", self.list_threads, query=("limit", "offset")),
            r("GET", inbox + "/threads/{thread_id}", self.get_thread),
            r("POST", inbox + "/drafts", self.create_draft),
            r("GET", inbox + "/drafts", self.list_drafts),
            r("GET", inbox + "/drafts/{draft_id}", self.get_draft),
            r("PATCH", inbox + "/drafts/{draft_id}", self.update_draft),
            r("DELETE", inbox + "/drafts/{draft_id}", self.delete_draft),
            r("POST", inbox + "/drafts/{draft_id}/send", self.send_draft),
            r("GET", inbox + "/lists", self.list_lists),
            r("POST", inbox + "/lists", self.create_list),
            r("GET", inbox + "/lists/{list_id}", self.get_list),
            r("DELETE", inbox + "/lists/{list_id}", self.delete_list),
            r("POST", inbox + "/lists/{list_id}/entries", self.add_list_entry),
            r("DELETE", inbox + "/lists/{list_id}/entries/{entry_id}", self.remove_list_entry),
        ]

    def _message(self, request: Request) -> tuple[InboxRecord, MessageRecord]:
        inbox = self._inbox(request)
        return inbox, self.state.message(inbox, request.path_params["message_id"])

    @staticmethod
    def _sent(message: MessageRecord, **extra: Any) -> JSONResponse:
        body = {
            "id": message.id,
            "threadId": message.thread_id,
            "status": message.status,
            "messageId": message.message_id,
            **extra,
        }
        return JSONResponse(body, status_code=201)

    # --- inboxes --------------------------------------------------------------------------------
    async def create_inbox(self, request: Request) -> Response:
        scope = self._scope(request)
        self._forbid_unless(scope, "tk", "wk")
        body = await self.fake.parse_body(request, CreateInboxBody)
        limit = self.state.inbox_limit
        if limit is not None and len(self.state.inboxes) >= limit:
            raise FakeApiError(403, "PLAN_LIMIT_REACHED", f"the plan allows {limit} inboxes")
        reveal = request.query_params.get("reveal", "false")
        if reveal not in ("true", "false"):
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "reveal must be true or false",
                details=[{"path": "reveal", "message": "true|false"}],
            )
        workspace_id = scope.workspace_id if scope.kind == "wk" else body.workspace_id
        if body.workspace_id and scope.kind == "wk" and body.workspace_id != scope.workspace_id:
            raise FakeApiError(403, "AUTH_FORBIDDEN", "workspace keys are locked to their workspace")
        if workspace_id is not None:
            self.state.workspace(workspace_id)
        domain = (body.domain or DEFAULT_DOMAIN).lower()
        if domain != DEFAULT_DOMAIN:
            self._usable_domain(scope, domain, workspace_id)
        username = body.username or f"agent-{secrets.token_hex(3)}"
        address = f"{username}@{domain}"
        if self.state.inbox_owning_address(address) is not None:
            raise FakeApiError(409, "CONFLICT", f"{address} is already taken")
        now = utc_now_iso()
        inbox = InboxRecord(
            id=new_id(),
            username=username,
            domain=domain,
            display_name=body.display_name,
            workspace_id=workspace_id,
            imap_password=secrets.token_urlsafe(18),
            addresses=[{"email": address, "primary": True, "createdAt": now}],
            created_at=now,
        )
        self.state.inboxes[inbox.id] = inbox
        api_key = self.fake.mint_inbox_key(inbox.id)
        revealed = reveal == "true"
        creds = inbox.credentials(revealed=revealed)
        payload = {
            **inbox.wire(),
            "apiKey": api_key if revealed else "",
            "imapPassword": inbox.imap_password if revealed else "",
            **creds,
            "credentialsRevealed": revealed,
        }
        return JSONResponse(payload, status_code=201)

    def _usable_domain(self, scope: KeyScope, domain: str, workspace_id: str | None) -> DomainRecord:
        record = self.state.domains.get(domain)
        if record is None:
            raise FakeApiError(404, "NOT_FOUND", f"domain {domain} not found")
        if record.workspace_id != workspace_id:
            raise FakeApiError(403, "DOMAIN_WRONG_WORKSPACE", f"domain {domain} belongs to another workspace")
        if record.status != "verified":
            raise FakeApiError(403, "DOMAIN_NOT_VERIFIED", f"domain {domain} DNS is not verified yet")
        return record

    async def list_inboxes(self, request: Request) -> Response:
        scope = self._scope(request)
        inboxes = self.state.visible_inboxes(scope)
        workspace = request.query_params.get("workspace")
        if workspace is not None:
            self._forbid_unless(scope, "tk")
            inboxes = [i for i in inboxes if i.workspace_id == workspace]
        return JSONResponse({"inboxes": [i.wire() for i in page(request, inboxes)]})

    async def get_inbox(self, request: Request) -> Response:
        return JSONResponse(self._inbox(request).detail())

    async def update_inbox(self, request: Request) -> Response:
        inbox = self._inbox(request)
        body = await self.fake.parse_body(request, UpdateInboxBody)
        if "display_name" in body.model_fields_set:
            inbox.display_name = body.display_name
        if "metadata" in body.model_fields_set:
            inbox.metadata = body.metadata
        return JSONResponse(inbox.wire())

    async def delete_inbox(self, request: Request) -> Response:
        inbox = self._inbox(request)
        self.state.delete_inbox(inbox.id)
        return JSONResponse(OK_BODY)

    async def add_address(self, request: Request) -> Response:
        scope = self._scope(request)
        inbox = self._inbox(request)
        body = await self.fake.parse_body(request, AddAddressBody)
        email = body.email.lower()
        owner = self.state.inbox_owning_address(email)
        if owner is not None and owner.id != inbox.id:
            raise FakeApiError(409, "CONFLICT", f"{email} is already in use on another inbox")
        domain = email.rpartition("@")[2]
        if domain != DEFAULT_DOMAIN:
            self._usable_domain(scope, domain, inbox.workspace_id)
        if owner is None:
            inbox.addresses.append({"email": email, "primary": False, "createdAt": utc_now_iso()})
        if body.primary:
            for address in inbox.addresses:
                address["primary"] = address["email"] == email
        return JSONResponse(inbox.detail())

    async def remove_address(self, request: Request) -> Response:
        inbox = self._inbox(request)
        email = request.path_params["address"].lower()
        if email == inbox.canonical.lower():
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "the canonical address cannot be removed",
                details=[{"path": "address", "message": "canonical address"}],
            )
        found = [a for a in inbox.addresses if a["email"] == email]
        if not found:
            raise FakeApiError(404, "NOT_FOUND", f"address {email} not found on this inbox")
        inbox.addresses.remove(found[0])
        if found[0]["primary"]:
            for address in inbox.addresses:
                address["primary"] = address["email"] == inbox.canonical
        return JSONResponse(inbox.detail())

    async def create_inbox_key(self, request: Request) -> Response:
        inbox = self._inbox(request)
        body = await self.fake.parse_body(request, CreateKeyBody)
        key = self.fake.add_inbox_key(inbox.id)
        scope = self.state.keys[key]
        return JSONResponse(
            {
                "id": scope.key_id,
                "key": key,
                "name": body.name,
                "prefix": key[:7],
                "createdAt": utc_now_iso(),
            },
            status_code=201,
        )

    # --- sending --------------------------------------------------------------------------------
    async def send(self, request: Request) -> Response:
        inbox = self._inbox(request)
        body = await self.fake.parse_body(request, SendBody)
        to, cc, bcc = as_addresses(body.to), as_addresses(body.cc), as_addresses(body.bcc)
        self.fake.mail.check_recipients(inbox, [*to, *cc, *bcc], body.verified)
        message = self.fake.mail.send(
            inbox,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=body.subject,
            plain_body=body.plain_body,
            html_body=body.html_body,
        )
        return self._sent(message)

    async def reply(self, request: Request) -> Response:
        return await self._reply(request, reply_all=False)

    async def reply_all(self, request: Request) -> Response:
        return await self._reply(request, reply_all=True)

    async def _reply(self, request: Request, *, reply_all: bool) -> Response:
        inbox, original = self._message(request)
        body = await self.fake.parse_body(request, ReplyBody)
        mail = self.fake.mail
        to, cc, bcc = mail.reply_recipients(inbox, original, reply_all=reply_all), as_addresses(body.cc), as_addresses(body.bcc)
        mail.check_reply_recipients(inbox, original, [*to, *cc, *bcc], body.verified)
        message = mail.send(
            inbox,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=mail.reply_subject(original),
            plain_body=body.plain_body,
            html_body=body.html_body,
            replying_to=original,
        )
        return self._sent(message)

    async def forward(self, request: Request) -> Response:
        inbox, original = self._message(request)
        body = await self.fake.parse_body(request, ForwardBody)
        to, cc, bcc = as_addresses(body.to), as_addresses(body.cc), as_addresses(body.bcc)
        mail = self.fake.mail
        mail.check_recipients(inbox, [*to, *cc, *bcc], body.verified)
        message = mail.send(
            inbox,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=mail.forward_subject(original),
            plain_body=mail.forward_body(body.plain_body, original),
            html_body=body.html_body,
        )
        return self._sent(message)

    # --- messages -------------------------------------------------------------------------------
    async def list_messages(self, request: Request) -> Response:
        inbox = self._inbox(request)
        direction = request.query_params.get("direction")
        if direction is not None and direction not in ("inbound", "outbound"):
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "direction must be inbound or outbound",
                details=[{"path": "direction", "message": "inbound|outbound"}],
            )
        found = [
            m
            for m in self.state.messages.values()
            if m.inbox_id == inbox.id and not m.deleted and direction in (None, m.direction)
        ]
        found.sort(key=lambda m: m.seq, reverse=True)
        return JSONResponse({"messages": [m.wire() for m in page(request, found)]})

    async def get_message(self, request: Request) -> Response:
        _, message = self._message(request)
        message.is_read = True
        return JSONResponse(message.wire(with_attachments=True))

    async def mark_message(self, request: Request) -> Response:
        _, message = self._message(request)
        body = await self.fake.parse_body(request, MarkMessageBody)
        message.is_read = body.is_read
        return JSONResponse(message.wire())

    async def delete_message(self, request: Request) -> Response:
        _, message = self._message(request)
        message.deleted = True
        return JSONResponse(OK_BODY)

    async def raw_message(self, request: Request) -> Response:
        _, message = self._message(request)
        if message.direction != "inbound" or message.raw is None:
            raise FakeApiError(404, "NOT_FOUND", "raw source exists for inbound messages only")
        return Response(message.raw, media_type="message/rfc822")

    async def list_attachments(self, request: Request) -> Response:
        _, message = self._message(request)
        return JSONResponse({"attachments": [a.wire() for a in message.attachments]})

    async def download_attachment(self, request: Request) -> Response:
        _, message = self._message(request)
        wanted = request.path_params["attachment_id"]
        for attachment in message.attachments:
            if attachment.id == wanted:
                disposition = f'attachment; filename="{attachment.filename}"'
                return Response(
                    attachment.data,
                    media_type=attachment.content_type,
                    headers={"Content-Disposition": disposition},
                )
        raise FakeApiError(404, "NOT_FOUND", f"attachment {wanted} not found")

    # --- threads --------------------------------------------------------------------------------
    async def list_threads(self, request: Request) -> Response:
        inbox = self._inbox(request)
        threads = [t for t in self.state.threads.values() if t.inbox_id == inbox.id]
        counted = [(t, len(self.state.thread_messages(t))) for t in threads]
        counted = [(t, n) for t, n in counted if n]
        counted.sort(key=lambda pair: pair[0].last_seq, reverse=True)
        return JSONResponse({"threads": [t.wire(n) for t, n in page(request, counted)]})

    async def get_thread(self, request: Request) -> Response:
        inbox = self._inbox(request)
        thread = self.state.thread(inbox, request.path_params["thread_id"])
        messages = self.state.thread_messages(thread)
        return JSONResponse({**thread.wire(len(messages)), "messages": [m.wire() for m in messages]})

    # --- drafts ---------------------------------------------------------------------------------
    def _apply_draft(self, inbox: InboxRecord, draft: DraftRecord, body: CreateDraftBody) -> None:
        fields = body.model_fields_set
        if "reply_to_message_id" in fields and body.reply_to_message_id is not None:
            self.state.message(inbox, body.reply_to_message_id)
        for name in ("to", "cc", "bcc"):
            if name in fields:
                setattr(draft, name, as_addresses(getattr(body, name)))
        for name in ("subject", "plain_body", "html_body", "reply_to_message_id"):
            if name in fields:
                setattr(draft, name, getattr(body, name))
        draft.updated_at = utc_now_iso()

    async def create_draft(self, request: Request) -> Response:
        inbox = self._inbox(request)
        body = await self.fake.parse_body(request, CreateDraftBody)
        draft = DraftRecord(id=new_id(), inbox_id=inbox.id)
        self._apply_draft(inbox, draft, body)
        self.state.drafts[draft.id] = draft
        return JSONResponse(draft.wire(), status_code=201)

    async def list_drafts(self, request: Request) -> Response:
        inbox = self._inbox(request)
        drafts = sorted(
            (d for d in self.state.drafts.values() if d.inbox_id == inbox.id),
            key=lambda d: d.seq,
            reverse=True,
        )
        return JSONResponse({"drafts": [d.wire() for d in drafts]})

    async def get_draft(self, request: Request) -> Response:
        inbox = self._inbox(request)
        return JSONResponse(self.state.draft(inbox, request.path_params["draft_id"]).wire())

    async def update_draft(self, request: Request) -> Response:
        inbox = self._inbox(request)
        draft = self.state.draft(inbox, request.path_params["draft_id"])
        body = await self.fake.parse_body(request, UpdateDraftBody)
        self._apply_draft(inbox, draft, body)
        return JSONResponse(draft.wire())

    async def delete_draft(self, request: Request) -> Response:
        inbox = self._inbox(request)
        draft = self.state.draft(inbox, request.path_params["draft_id"])
        del self.state.drafts[draft.id]
        return JSONResponse(OK_BODY)

    async def send_draft(self, request: Request) -> Response:
        inbox = self._inbox(request)
        draft = self.state.draft(inbox, request.path_params["draft_id"])
        body = await self.fake.parse_optional_body(request, SendDraftBody)
        original = self.state.message(inbox, draft.reply_to_message_id) if draft.reply_to_message_id else None
        missing = [] if original is not None else [n for n in ("to", "subject") if not getattr(draft, n)]
        if draft.plain_body is None and draft.html_body is None:
            missing.append("plainBody")
        if missing:
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "the draft is incomplete",
                details=[{"path": name, "message": "required to send"} for name in missing],
            )
        mail = self.fake.mail
        to = draft.to or (mail.reply_recipients(inbox, original, reply_all=False) if original else [])
        verified = body.verified if body else None
        if original is None:
            mail.check_recipients(inbox, [*to, *draft.cc, *draft.bcc], verified)
        else:
            mail.check_reply_recipients(inbox, original, [*to, *draft.cc, *draft.bcc], verified)
        subject = draft.subject or (mail.reply_subject(original) if original else "")
        message = mail.send(
            inbox,
            to=to,
            cc=draft.cc,
            bcc=draft.bcc,
            subject=subject,
            plain_body=draft.plain_body,
            html_body=draft.html_body,
            replying_to=original,
        )
        del self.state.drafts[draft.id]
        return self._sent(message, draftId=draft.id)

    # --- lists ----------------------------------------------------------------------------------
    async def list_lists(self, request: Request) -> Response:
        inbox = self._inbox(request)
        return JSONResponse(
            {"lists": [x.wire() for x in self.state.lists.values() if x.inbox_id == inbox.id]}
        )

    async def create_list(self, request: Request) -> Response:
        inbox = self._inbox(request)
        body = await self.fake.parse_body(request, CreateListBody)
        record = AddressListRecord(
            id=new_id(), inbox_id=inbox.id, name=body.name, description=body.description
        )
        self.state.lists[record.id] = record
        return JSONResponse(record.wire(), status_code=201)

    def _list(self, request: Request) -> AddressListRecord:
        return self.state.address_list(self._inbox(request), request.path_params["list_id"])

    async def get_list(self, request: Request) -> Response:
        return JSONResponse(self._list(request).wire(with_entries=True))

    async def delete_list(self, request: Request) -> Response:
        del self.state.lists[self._list(request).id]
        return JSONResponse(OK_BODY)

    async def add_list_entry(self, request: Request) -> Response:
        record = self._list(request)
        body = await self.fake.parse_body(request, CreateListEntryBody)
        if any(e["email"] == body.email.lower() for e in record.entries.values()):
            raise FakeApiError(409, "CONFLICT", f"{body.email} is already on this list")
        entry_id = new_id()
        entry: dict[str, Any] = {
            "id": entry_id,
            "email": body.email.lower(),
            "displayName": body.display_name,
            "metadata": body.metadata,
            "createdAt": utc_now_iso(),
        }
        record.entries[entry_id] = entry
        return JSONResponse(entry, status_code=201)

    async def remove_list_entry(self, request: Request) -> Response:
        record = self._list(request)
        if record.entries.pop(request.path_params["entry_id"], None) is None:
            raise FakeApiError(404, "NOT_FOUND", f"entry {request.path_params['entry_id']} not found")
        return JSONResponse(OK_BODY)
