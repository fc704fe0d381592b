"""/v1/inboxes/:id — sending (send, reply, reply-all, forward), messages, attachments, threads, drafts."""

from __future__ import annotations

import json
from typing import Any

import anyio
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mam_mcp.local.api.access import backend_of, caller
from mam_mcp.local.api.creates import create_once
from mam_mcp.local.api.params import (
    MAX_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    StrictBody,
    address_list,
    bool_param,
    check_header_argument,
    iso_param,
    page_params,
    parse_body,
)
from mam_mcp.local.api.wire import attachment_wire, draft_wire, json_response, message_wire, ok, thread_wire
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.service.idempotency import SEND_FINGERPRINT_FORMAT, fingerprint
from mam_mcp.local.service.mailbox import MAX_TAG_CHARS
from mam_mcp.local.service.outgoing import Outgoing

__all__ = ["message_routes"]

Recipients = str | list[str] | None


class _Bodies(StrictBody):
    plain_body: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    html_body: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    text: str | None = Field(default=None, max_length=MAX_BODY_CHARS)  # alias accepted by the local backend
    html: str | None = Field(default=None, max_length=MAX_BODY_CHARS)

    def plain(self) -> str | None:
        return self.plain_body if self.plain_body is not None else self.text

    def rich(self) -> str | None:
        return self.html_body if self.html_body is not None else self.html


class _Consent(StrictBody):
    """What every send route takes about consent: the agent's `verified`, and (ours) a dry run that
    returns the exact message and who is new without sending, and the hash of an approved preview
    that the message must still match to be sent."""

    verified: bool = False
    dry_run: bool = False
    expect_hash: str | None = Field(default=None, min_length=8, max_length=64)


class SendBody(_Bodies, _Consent):
    to: Recipients = None
    cc: Recipients = None
    bcc: Recipients = None
    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS)


class ReplyBody(_Bodies, _Consent):
    cc: Recipients = None
    bcc: Recipients = None


class ForwardBody(_Bodies, _Consent):
    to: Recipients = None
    cc: Recipients = None
    bcc: Recipients = None


class MarkBody(StrictBody):
    is_read: bool


class DraftBody(_Bodies):
    to: Recipients = None
    cc: Recipients = None
    bcc: Recipients = None
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)
    reply_to_message_id: str | None = Field(default=None, max_length=100)


class SendDraftBody(_Consent):
    pass


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        raise BackendError.validation("Idempotency-Key", "must be 1-200 characters")
    return key


FINGERPRINT_IN_THREAD_BYTES = 256 * 1024  # a bigger body is fingerprinted off the event loop


def _canonical_json(data: Any) -> bytes:
    """The body's JSON value as bytes, whatever its key order and spacing (lone surrogates kept)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


async def _send_key(request: Request) -> tuple[str | None, str | None]:
    """The send's Idempotency-Key and, with one, the fingerprint of its request: what makes two
    sends the same send (route, query, the body's JSON value). Call it after `parse_body`."""
    key = _idempotency_key(request)
    if key is None:
        return None, None
    known: str | None = getattr(request.state, "send_fingerprint", None)
    if known is None:
        data = request.state.body_json
        if data is None:
            body = b""
        elif len(request.state.raw_body) > FINGERPRINT_IN_THREAD_BYTES:
            body = await anyio.to_thread.run_sync(_canonical_json, data)
        else:
            body = _canonical_json(data)
        known = SEND_FINGERPRINT_FORMAT + fingerprint(request.method, request.url.path, request.url.query, body)
        request.state.send_fingerprint = known
    return key, known


async def _replayed(request: Request, inbox_id: str, body: _Consent) -> JSONResponse | None:
    """A retried reply or forward answered from its key's record before its original message is
    looked up: the original may have been deleted since the first attempt went out."""
    if body.dry_run:
        return None
    key, request_fingerprint = await _send_key(request)
    if key is None:
        return None
    previous = await backend_of(request).previous_send(inbox_id, key, request_fingerprint)
    return None if previous is None else json_response(previous.wire(), 201)


async def _send_or_preview(request: Request, inbox_id: str, outgoing: Outgoing, body: _Consent) -> JSONResponse:
    backend = backend_of(request)
    if body.dry_run:
        return json_response({"preview": (await backend.preview(inbox_id, outgoing)).wire()})
    key, request_fingerprint = await _send_key(request)
    result = await backend.send(
        inbox_id, outgoing, idempotency_key=key, request_fingerprint=request_fingerprint, expect_hash=body.expect_hash
    )
    return json_response(result.wire(), 201)


async def send_message(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, SendBody)
    to, cc, bcc = (address_list(v, n) for v, n in ((body.to, "to"), (body.cc, "cc"), (body.bcc, "bcc")))
    if not to:
        raise BackendError.validation("to", "at least one recipient is required")
    outgoing = Outgoing(
        to=to, cc=cc, bcc=bcc, subject=body.subject, plain_body=body.plain(), html_body=body.rich(),
        verified=body.verified,
    )  # fmt: skip
    return await _send_or_preview(request, record.id, outgoing, body)


async def _reply(request: Request, *, reply_all: bool) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, ReplyBody)
    cc, bcc = address_list(body.cc, "cc"), address_list(body.bcc, "bcc")
    replayed = await _replayed(request, record.id, body)
    if replayed is not None:
        return replayed
    outgoing = await who.backend.reply_outgoing(
        record.id,
        who.param("message_id"),
        reply_all=reply_all,
        plain_body=body.plain(),
        html_body=body.rich(),
        cc=cc,
        bcc=bcc,
        verified=body.verified,
    )
    return await _send_or_preview(request, record.id, outgoing, body)


async def reply(request: Request) -> JSONResponse:
    return await _reply(request, reply_all=False)


async def reply_all(request: Request) -> JSONResponse:
    return await _reply(request, reply_all=True)


async def forward(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, ForwardBody)
    to, cc, bcc = (address_list(v, n) for v, n in ((body.to, "to"), (body.cc, "cc"), (body.bcc, "bcc")))
    if not to:
        raise BackendError.validation("to", "at least one recipient is required")
    replayed = await _replayed(request, record.id, body)
    if replayed is not None:
        return replayed
    outgoing = await who.backend.forward_outgoing(
        record.id, who.param("message_id"), to=to, cc=cc, bcc=bcc,
        plain_body=body.plain(), html_body=body.rich(), verified=body.verified,
    )  # fmt: skip
    return await _send_or_preview(request, record.id, outgoing, body)


# ---------------------------------------------------------------- messages


async def list_messages(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    limit, offset = page_params(request)
    direction = request.query_params.get("direction") or None
    if direction not in (None, "inbound", "outbound"):
        raise BackendError.validation("direction", "must be inbound or outbound")
    params = request.query_params
    rows = await who.backend.mailbox.messages(
        record.id,
        direction=direction,
        unread=bool_param(request, "unread") or None,
        from_contains=(params.get("from") or "")[:320] or None,
        subject_contains=(params.get("subject") or "")[:MAX_SUBJECT_CHARS] or None,
        q=(params.get("q") or "")[:500] or None,
        after=iso_param(request, "after"),
        tag=(params.get("tag") or "")[:MAX_TAG_CHARS] or None,
        to=(params.get("to") or "").strip()[:320] or None,
        limit=limit,
        offset=offset,
    )
    return json_response({"messages": [message_wire(r) for r in rows]})


async def get_message(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    # `peek=true` (ours): read without marking read, for previews such as the MCP message resource.
    row = await who.backend.mailbox.message(record.id, who.param("message_id"), mark_read=not bool_param(request, "peek"))
    return json_response(message_wire(row))


async def mark_message(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, MarkBody)
    return json_response(message_wire(await who.backend.mailbox.mark(record.id, who.param("message_id"), body.is_read)))


async def delete_message(request: Request) -> JSONResponse:
    who = caller(request)
    await who.backend.mailbox.delete_message(who.inbox().id, who.param("message_id"))
    return ok()


async def raw_message(request: Request) -> Response:
    who = caller(request)
    raw = await who.backend.mailbox.raw(who.inbox().id, who.param("message_id"))
    return Response(raw, media_type="message/rfc822")


async def list_attachments(request: Request) -> JSONResponse:
    who = caller(request)
    rows = await who.backend.mailbox.attachments(who.inbox().id, who.param("message_id"))
    return json_response({"attachments": [attachment_wire(r) for r in rows]})


def _content_disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def download_attachment(request: Request) -> Response:
    who = caller(request)
    row = await who.backend.mailbox.attachment(who.inbox().id, who.param("message_id"), who.param("attachment_id"))
    return Response(
        bytes(row["data"]),
        media_type=row["content_type"] or "application/octet-stream",
        headers={
            "Content-Disposition": _content_disposition(row["filename"]),
            "X-Content-Type-Options": "nosniff",
        },
    )


# ---------------------------------------------------------------- threads


async def list_threads(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    limit, offset = page_params(request)
    rows = await who.backend.mailbox.threads(record.id, limit=limit, offset=offset)
    return json_response({"threads": [thread_wire(r) for r in rows]})


async def get_thread(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    # `limit`/`offset` (ours) page the messages; without them the whole thread, as the API documents.
    paged = "limit" in request.query_params or "offset" in request.query_params
    limit, offset = page_params(request) if paged else (None, 0)
    row = await who.backend.mailbox.thread(record.id, who.param("thread_id"), limit=limit, offset=offset)
    return json_response(thread_wire(row))


# ---------------------------------------------------------------- drafts


def _draft_fields(body: DraftBody, *, partial: bool) -> dict[str, Any]:
    given = body.model_fields_set
    fields: dict[str, Any] = {}
    for name in ("to", "cc", "bcc"):
        if name in given or not partial:
            fields[name] = address_list(getattr(body, name), name)
    if "subject" in given or not partial:
        check_header_argument("subject", body.subject)
        fields["subject"] = body.subject
    if given & {"plain_body", "text"} or not partial:
        fields["plain_body"] = body.plain()
    if given & {"html_body", "html"} or not partial:
        fields["html_body"] = body.rich()
    if "reply_to_message_id" in given or not partial:
        fields["reply_to_message_id"] = body.reply_to_message_id
    return fields


async def create_draft(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, DraftBody, optional=True)
    fields = _draft_fields(body, partial=False)
    await who.backend.mailbox.check_reply_target(record.id, fields.get("reply_to_message_id"))

    async def make() -> dict[str, Any]:
        return draft_wire(await who.backend.mailbox.create_draft(record.id, fields))

    return await create_once(request, who.scope, make)


async def list_drafts(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    limit, offset = page_params(request, default_limit=100)
    rows = await who.backend.mailbox.drafts(record.id, limit=limit, offset=offset)
    return json_response({"drafts": [draft_wire(r) for r in rows]})


async def get_draft(request: Request) -> JSONResponse:
    who = caller(request)
    return json_response(draft_wire(await who.backend.mailbox.draft(who.inbox().id, who.param("draft_id"))))


async def update_draft(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, DraftBody)
    fields = _draft_fields(body, partial=True)
    await who.backend.mailbox.check_reply_target(record.id, fields.get("reply_to_message_id"))
    return json_response(draft_wire(await who.backend.mailbox.update_draft(record.id, who.param("draft_id"), fields)))


async def delete_draft(request: Request) -> JSONResponse:
    who = caller(request)
    await who.backend.mailbox.delete_draft(who.inbox().id, who.param("draft_id"))
    return ok()


async def send_draft(request: Request) -> JSONResponse:
    who = caller(request)
    record = who.inbox()
    body = await parse_body(request, SendDraftBody, optional=True)
    backend = who.backend
    draft_id = who.param("draft_id")
    if body.dry_run:
        outgoing = await backend.draft_outgoing(record.id, draft_id, verified=body.verified)
        return json_response({"preview": (await backend.preview(record.id, outgoing)).wire()})
    key, request_fingerprint = await _send_key(request)
    result = await backend.send_draft(
        record.id,
        draft_id,
        verified=body.verified,
        idempotency_key=key,
        request_fingerprint=request_fingerprint,
        expect_hash=body.expect_hash,
    )
    return json_response(result.wire(), 201)


def message_routes() -> list[Route]:
    base = "/v1/inboxes/{inbox_id}"
    msg = base + "/messages/{message_id}"
    return [
        Route(base + "/send", send_message, methods=["POST"]),
        Route(base + "/reply/{message_id}", reply, methods=["POST"]),
        Route(base + "/reply-all/{message_id}", reply_all, methods=["POST"]),
        Route(base + "/forward/{message_id}", forward, methods=["POST"]),
        Route(base + "/messages", list_messages, methods=["GET"]),
        Route(msg, get_message, methods=["GET"]),
        Route(msg, mark_message, methods=["PATCH"]),
        Route(msg, delete_message, methods=["DELETE"]),
        Route(msg + "/raw", raw_message, methods=["GET"]),
        Route(msg + "/attachments", list_attachments, methods=["GET"]),
        Route(msg + "/attachments/{attachment_id}", download_attachment, methods=["GET"]),
        Route(base + "/threads", list_threads, methods=["GET"]),
        Route(base + "/threads/{thread_id}", get_thread, methods=["GET"]),
        Route(base + "/drafts", create_draft, methods=["POST"]),
        Route(base + "/drafts", list_drafts, methods=["GET"]),
        Route(base + "/drafts/{draft_id}", get_draft, methods=["GET"]),
        Route(base + "/drafts/{draft_id}", update_draft, methods=["PATCH"]),
        Route(base + "/drafts/{draft_id}", delete_draft, methods=["DELETE"]),
        Route(base + "/drafts/{draft_id}/send", send_draft, methods=["POST"]),
    ]
