"""What goes back: the camelCase wire shapes of stored rows (docs/contract.md) and JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

__all__ = [
    "Row",
    "attachment_wire",
    "draft_wire",
    "inbox_wire",
    "json_response",
    "message_wire",
    "ok",
    "thread_wire",
]


Row = dict[str, Any]  # a stored row as the services hand it over: column -> value


def _loads(value: str | None, default: Any) -> Any:
    return json.loads(value) if value else default


def inbox_wire(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "email": row["email"],
        "username": row["username"],
        "domain": row["domain"],
        "displayName": row["display_name"],
        "workspaceId": row["workspace_id"],
        "metadata": _loads(row.get("metadata"), None),
        "createdAt": row["created_at"],
        "expiresAt": row.get("expires_at"),  # local only: an ephemeral inbox's deletion time
    }
    if "addresses" in row:
        out["addresses"] = [
            {"email": a["email"], "primary": bool(a["is_primary"]), "createdAt": a["created_at"]}
            for a in row["addresses"]
        ]
    return out


def attachment_wire(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "filename": row["filename"],
        "contentType": row["content_type"],
        "size": row["size"],
    }


def message_wire(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "inboxId": row["inbox_id"],
        "threadId": row["thread_id"],
        "direction": row["direction"],
        "fromAddress": row["from_address"],
        "fromName": row["from_name"],
        "toAddresses": _loads(row["to_json"], []),
        "ccAddresses": _loads(row["cc_json"], []),
        "subject": row["subject"],
        "plainBody": row["plain_body"],
        "htmlBody": row["html_body"],
        "isRead": bool(row["is_read"]),
        "status": row["status"],
        "messageId": row["message_id_hdr"],
        "inReplyTo": row["in_reply_to"],
        "references": _loads(row["references_json"], []),
        "receivedAt": row["received_at"],
        "sentAt": row["sent_at"],
        "createdAt": row["created_at"],
        "hasAttachments": bool(row["has_attachments"]),
        "tag": row.get("tag"),  # the plus-address tag it was delivered with (scout+run42@ -> run42)
    }
    if row["direction"] == "outbound":
        out["bccAddresses"] = _loads(row["bcc_json"], [])
    if "attachments" in row:
        out["attachments"] = [attachment_wire(a) for a in row["attachments"]]
    return out


def thread_wire(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "inboxId": row["inbox_id"],
        "subject": row["subject"],
        "messageCount": row["message_count"],
        "lastMessageAt": row["last_message_at"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }
    if "messages" in row:
        out["messages"] = [message_wire(m) for m in row["messages"]]
    return out


def draft_wire(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "inboxId": row["inbox_id"],
        "to": _loads(row["to_json"], []),
        "cc": _loads(row["cc_json"], []),
        "bcc": _loads(row["bcc_json"], []),
        "subject": row["subject"],
        "plainBody": row["plain_body"],
        "htmlBody": row["html_body"],
        "replyToMessageId": row["reply_to_message_id"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def ok() -> JSONResponse:
    return JSONResponse({"ok": True})
