"""The console's JSON API (under CONSOLE_PATH/api; the session's cookie and page key required, see access.py).

Reads go through the store's public methods where one answers the question, and through the
console's read model (reads.py) for capped counts and keyset pages. Draft approval sends exactly
the revision the person saw: the page sends back the content hash of the preview it showed, and
the backend refuses with CONTENT_CHANGED (nothing sent) if the draft is no longer that message;
the answer then carries the new revision for the page to show.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import anyio
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mam_mcp.local.api.access import visible_inbox
from mam_mcp.local.api.params import (
    MAX_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    StrictBody,
    address_list,
    check_header_argument,
    parse_body,
)
from mam_mcp.local.api.wire import draft_wire
from mam_mcp.local.console.access import ConsoleAccess, session_of
from mam_mcp.local.console.mail_view import (
    HTML_CSP,
    HTML_CSP_WITH_IMAGES,
    headers_of_raw,
    html_document,
    inline_images,
    message_view,
)
from mam_mcp.local.console.reads import ConsoleReads, Cursor
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.service.errors import BackendError

__all__ = ["api_routes", "draft_state"]

PAGE_DEFAULT = 50
PAGE_MAX = 100
MAX_INBOXES = 200
THREAD_MESSAGES = 200
_SEARCH_CHARS = 500


class ReadFlag(StrictBody):
    is_read: bool


class DraftEdit(StrictBody):
    """The fields the review form sends; `base_updated_at` is the revision the person edited."""

    to: list[str] | None = Field(default=None, max_length=50)
    cc: list[str] | None = Field(default=None, max_length=50)
    bcc: list[str] | None = Field(default=None, max_length=50)
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)
    plain_body: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    html_body: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    base_updated_at: str | None = Field(default=None, max_length=40)


class FrameRequest(StrictBody):
    images: bool = False  # the view with remote images (the person asked for them)


class Approval(StrictBody):
    content_hash: str = Field(min_length=8, max_length=64)


def _backend(request: Request) -> LocalBackend:
    backend: LocalBackend = request.app.state.backend
    return backend


def _reads(request: Request) -> ConsoleReads:
    reads: ConsoleReads = request.app.state.reads
    return reads


def _inbox_id(request: Request) -> str:
    record = visible_inbox(_backend(request), session_of(request).scope, request.path_params["inbox_id"])
    return record.id


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit") or str(PAGE_DEFAULT)
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise BackendError.validation("limit", f"must be between 1 and {PAGE_MAX}")
    return int(raw)


def _page(page: Any, key: str) -> JSONResponse:
    return JSONResponse({key: page.items, "next": page.next})


# ------------------------------------------------------------------ inboxes


async def inboxes(request: Request) -> JSONResponse:
    scope = session_of(request).scope
    backend = _backend(request)
    rows = await backend.store.accounts.list_inboxes(
        scope.tenant_id,
        workspace_id=scope.workspace_id if scope.kind == "wk" else None,
        inbox_id=scope.inbox_id if scope.kind == "ak" else None,
        limit=MAX_INBOXES,
    )
    counts = await _reads(request).inbox_counts([r["id"] for r in rows])
    items = []
    for row in rows:
        count = counts[row["id"]]
        items.append(
            {
                "id": row["id"],
                "email": row["email"],
                "displayName": row["display_name"],
                "workspaceId": row["workspace_id"],
                "total": count.total,
                "unread": count.unread,
                "drafts": count.drafts,
                "capped": count.capped,
            }
        )
    items.sort(key=lambda i: i["email"])
    return JSONResponse({"inboxes": items, "more": len(rows) >= MAX_INBOXES})


# ------------------------------------------------------------------ message lists


async def messages(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    direction = request.query_params.get("direction") or None
    if direction not in (None, "inbound", "outbound"):
        raise BackendError.validation("direction", "must be inbound or outbound")
    try:
        after = Cursor.parse(request.query_params.get("after"))
    except ValueError:
        raise BackendError.validation("after", "not a page cursor from this console") from None
    page = await _reads(request).messages(inbox_id, direction=direction, after=after, limit=_limit(request))
    return _page(page, "messages")


async def search(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    text = (request.query_params.get("q") or "")[:_SEARCH_CHARS]
    after = request.query_params.get("after") or None
    if after is not None and not after.isdigit():
        raise BackendError.validation("after", "not a page cursor from this console")
    page = await _reads(request).search(
        inbox_id, text, after_seq=int(after) if after else None, limit=_limit(request)
    )
    return _page(page, "messages")


async def threads(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    raw = request.query_params.get("after") or ""
    after: tuple[str, str] | None = None
    if raw:
        at, sep, thread_id = raw.partition("~")
        if not sep or not at or not thread_id or len(raw) > 120:
            raise BackendError.validation("after", "not a page cursor from this console")
        after = (at, thread_id)
    page = await _reads(request).threads(inbox_id, after=after, limit=_limit(request))
    return _page(page, "threads")


async def thread(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    row = await _backend(request).store.mail.get_thread(
        inbox_id, request.path_params["thread_id"], limit=THREAD_MESSAGES
    )
    if row is None:
        raise BackendError.not_found("thread")
    return JSONResponse(
        {
            "id": row["id"],
            "subject": row["subject"] or "",
            "messageCount": row["message_count"],
            "messages": [
                {
                    "id": m["id"],
                    "direction": m["direction"],
                    "status": m["status"],
                    "from": m["from_address"],
                    "fromName": m["from_name"],
                    "to": json.loads(m["to_json"] or "[]"),
                    "subject": m["subject"] or "",
                    "isRead": bool(m["is_read"]),
                    "at": m["at"],
                    "snippet": " ".join((m["plain_body"] or "").split())[:160],
                }
                for m in row["messages"]
            ],
        }
    )


# ------------------------------------------------------------------ one message


async def _message_row(request: Request) -> tuple[str, dict[str, Any]]:
    inbox_id = _inbox_id(request)
    row = await _backend(request).store.mail.get_message(inbox_id, request.path_params["message_id"])
    if row is None:
        raise BackendError.not_found("message")
    return inbox_id, row


async def _raw_source(request: Request, inbox_id: str, row: dict[str, Any]) -> bytes | None:
    store = _backend(request).store
    if row["direction"] == "outbound":
        return await store.sends.outbound_raw(row["id"])
    return await store.mail.get_raw(inbox_id, row["id"])


async def message(request: Request) -> JSONResponse:
    inbox_id, row = await _message_row(request)
    if row.get("headers_json"):
        headers = [list(pair) for pair in json.loads(row["headers_json"])]
    else:
        raw = await _raw_source(request, inbox_id, row)
        headers = headers_of_raw(raw) if raw else []
    delivery = await _reads(request).delivery_of(row["id"]) if row["direction"] == "outbound" else {}
    # HTML to text (for an HTML-only mail) and the extraction can take a while on a big body.
    view = await anyio.to_thread.run_sync(message_view, row, headers, delivery)
    return JSONResponse(view)


async def frame_ticket(request: Request) -> Response:
    """The src of the mail frame: the HTML view with a one-use ticket, never the page key (a frame's
    URL lands in the browser's history). `{"images": true}` for the view with remote images."""
    images = (await parse_body(request, FrameRequest, optional=True)).images
    params = request.path_params
    path = f"/api/inboxes/{params['inbox_id']}/messages/{params['message_id']}/html"
    access: ConsoleAccess = request.app.state.access
    ticket = access.issue_frame_ticket(session_of(request), path)
    root = str(request.scope.get("root_path", ""))
    src = f"{root}{path}?" + urllib.parse.urlencode({"ticket": ticket, **({"images": "1"} if images else {})})
    return JSONResponse({"src": src}, status_code=201)


async def message_html(request: Request) -> Response:
    inbox_id, row = await _message_row(request)
    html = row.get("html_body") or ""
    if not html.strip():
        raise BackendError.not_found("HTML body")
    cids = [a for a in row.get("attachments", []) if a.get("content_id")]
    if cids:
        store = _backend(request).store
        images: dict[str, tuple[str, bytes]] = {}
        for attachment in cids[:50]:
            blob = await store.mail.get_attachment(inbox_id, row["id"], attachment["id"])
            if blob is not None:
                images[str(attachment["content_id"])] = (str(blob["content_type"]), bytes(blob["data"]))
        html = inline_images(html, images)
    remote_images = request.query_params.get("images") == "1"
    return Response(
        html_document(html),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": HTML_CSP_WITH_IMAGES if remote_images else HTML_CSP,
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


def _download_name(name: str, fallback: str) -> str:
    from urllib.parse import quote

    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in name) or fallback
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name or fallback, safe='')}"


async def message_raw(request: Request) -> Response:
    inbox_id, row = await _message_row(request)
    raw = await _raw_source(request, inbox_id, row)
    if raw is None:
        raise BackendError.not_found("raw source")
    return Response(
        raw,
        media_type="message/rfc822",
        headers={"Content-Disposition": _download_name(f"{row['id']}.eml", "message.eml")},
    )


async def attachment(request: Request) -> Response:
    inbox_id, row = await _message_row(request)
    blob = await _backend(request).store.mail.get_attachment(inbox_id, row["id"], request.path_params["attachment_id"])
    if blob is None:
        raise BackendError.not_found("attachment")
    # Always a download, never rendered here: the sender chose the type and the name.
    return Response(
        bytes(blob["data"]),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": _download_name(str(blob["filename"]), "attachment"),
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


async def mark(request: Request) -> JSONResponse:
    inbox_id, row = await _message_row(request)
    body = await parse_body(request, ReadFlag)
    if not await _backend(request).store.mail.set_read(inbox_id, row["id"], body.is_read):
        raise BackendError.not_found("message")
    return JSONResponse({"id": row["id"], "isRead": body.is_read})


async def delete_message(request: Request) -> JSONResponse:
    inbox_id, row = await _message_row(request)
    if not await _backend(request).store.mail.soft_delete(inbox_id, row["id"]):
        raise BackendError.not_found("message")
    return JSONResponse({"ok": True})


# ------------------------------------------------------------------ drafts


async def draft_state(backend: LocalBackend, inbox_id: str, draft_id: str) -> dict[str, Any]:
    """A draft, and exactly what approving it would send (with the hash an approval must name)."""
    row = await backend.store.mail.get_draft(inbox_id, draft_id)
    if row is None:
        raise BackendError.not_found("draft")
    preview: dict[str, Any] | None = None
    problem: str | None = None
    try:
        outgoing = await backend.draft_outgoing(inbox_id, draft_id, verified=True)
        preview = (await backend.preview(inbox_id, outgoing)).wire()
    except BackendError as exc:  # e.g. no recipient yet: shown, and approval is not offered
        problem = exc.message
    return {"draft": draft_wire(row), "preview": preview, "problem": problem}


async def drafts(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    rows = await _backend(request).store.mail.list_drafts(inbox_id, limit=PAGE_MAX)
    return JSONResponse({"drafts": [draft_wire(r) for r in rows]})


async def draft(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    return JSONResponse(await draft_state(_backend(request), inbox_id, request.path_params["draft_id"]))


async def edit_draft(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    draft_id = request.path_params["draft_id"]
    body = await parse_body(request, DraftEdit)
    backend = _backend(request)
    current = await backend.store.mail.get_draft(inbox_id, draft_id)
    if current is None:
        raise BackendError.not_found("draft")
    if body.base_updated_at is not None and body.base_updated_at != current["updated_at"]:
        state = await draft_state(backend, inbox_id, draft_id)
        return JSONResponse(
            {"error": "the draft changed since you opened it; nothing was saved", "code": "DRAFT_CHANGED", **state},
            status_code=409,
        )
    fields: dict[str, Any] = {}
    for name in ("to", "cc", "bcc"):
        if name in body.model_fields_set:
            fields[name] = address_list(getattr(body, name), name)
    if "subject" in body.model_fields_set:
        check_header_argument("subject", body.subject)
        fields["subject"] = body.subject
    if "plain_body" in body.model_fields_set:
        fields["plain_body"] = body.plain_body
    if "html_body" in body.model_fields_set:
        fields["html_body"] = body.html_body
    if fields and not await backend.store.mail.update_draft(inbox_id, draft_id, fields):
        raise BackendError.not_found("draft")
    return JSONResponse(await draft_state(backend, inbox_id, draft_id))


async def approve_draft(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    draft_id = request.path_params["draft_id"]
    body = await parse_body(request, Approval)
    backend = _backend(request)
    try:
        # The person saw every recipient (new ones marked): their approval is the consent the rule asks for.
        result = await backend.send_draft(inbox_id, draft_id, verified=True, expect_hash=body.content_hash)
    except BackendError as exc:
        if exc.code != "CONTENT_CHANGED":
            raise
        state = await draft_state(backend, inbox_id, draft_id)
        return JSONResponse(
            {
                "error": "the draft changed since you opened it; nothing was sent. Review the new version.",
                "code": exc.code,
                **state,
            },
            status_code=409,
        )
    return JSONResponse({"sent": result.wire()}, status_code=201)


async def discard_draft(request: Request) -> JSONResponse:
    inbox_id = _inbox_id(request)
    if not await _backend(request).store.mail.delete_draft(inbox_id, request.path_params["draft_id"]):
        raise BackendError.not_found("draft")
    return JSONResponse({"ok": True})


def api_routes() -> list[Route]:
    inbox = "/api/inboxes/{inbox_id}"
    msg = inbox + "/messages/{message_id}"
    dft = inbox + "/drafts/{draft_id}"
    return [
        Route("/api/inboxes", inboxes, methods=["GET"]),
        Route(inbox + "/messages", messages, methods=["GET"]),
        Route(inbox + "/search", search, methods=["GET"]),
        Route(inbox + "/threads", threads, methods=["GET"]),
        Route(inbox + "/threads/{thread_id}", thread, methods=["GET"]),
        Route(msg, message, methods=["GET"]),
        Route(msg, mark, methods=["PATCH"]),
        Route(msg, delete_message, methods=["DELETE"]),
        Route(msg + "/html", message_html, methods=["GET"]),
        Route(msg + "/frame", frame_ticket, methods=["POST"]),
        Route(msg + "/raw", message_raw, methods=["GET"]),
        Route(msg + "/attachments/{attachment_id}", attachment, methods=["GET"]),
        Route(inbox + "/drafts", drafts, methods=["GET"]),
        Route(dft, draft, methods=["GET"]),
        Route(dft, edit_draft, methods=["PATCH"]),
        Route(dft, discard_draft, methods=["DELETE"]),
        Route(dft + "/approve", approve_draft, methods=["POST"]),
    ]
