"""What every /v1 route of the local backend shares: auth and scope checks, request bodies,
query parameters, and the camelCase wire shapes of stored rows (docs/contract.md)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse

from mam_mcp.headers import UNSAFE_REASON, is_safe_header_value
from mam_mcp.local.service.backend import ADDRESS_RE, MAX_RECIPIENTS, BackendError, LocalBackend
from mam_mcp.local.events.model import KeyKind, KeyScope
from mam_mcp.local.store.email_store import InboxRecord, Row

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_RECIPIENTS",
    "MAX_SUBJECT_CHARS",
    "StrictBody",
    "address_list",
    "attachment_wire",
    "authenticate",
    "backend_of",
    "check_header_argument",
    "check_tenant_workspace",
    "draft_wire",
    "inbox_in_scope",
    "inbox_wire",
    "json_response",
    "message_wire",
    "page_params",
    "parse_body",
    "require_kind",
    "thread_wire",
    "valid_address",
    "visible_inbox",
]

M = TypeVar("M", bound=BaseModel)

MAX_SUBJECT_CHARS = 998
MAX_BODY_CHARS = 5 * 1024 * 1024
MAX_REQUEST_BYTES = 12 * 1024 * 1024


class StrictBody(BaseModel):
    """A request body: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def backend_of(request: Request) -> LocalBackend:
    backend: LocalBackend = request.app.state.backend
    return backend


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


# ---------------------------------------------------------------- auth and scope


def authenticate(request: Request) -> KeyScope:
    """The caller's scope from `X-API-Key` or `Authorization: Bearer`; 401/429 otherwise."""
    presented = request.headers.get("x-api-key")
    if not presented:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        presented = token.strip() if scheme.lower() == "bearer" else ""
    if not presented:
        raise BackendError(401, "AUTH_MISSING", "an API key is required (X-API-Key header)")
    backend = backend_of(request)
    locked_for = backend.keys.lockout_seconds(presented)
    if locked_for > 0:
        seconds = math.ceil(locked_for)
        raise BackendError(
            429,
            "AUTH_LOCKOUT",
            f"too many failed attempts with this key; locked for {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    scope = backend.authenticate(presented)
    if scope is None:
        raise BackendError(401, "AUTH_INVALID", "the API key is not valid")
    return scope


def require_kind(scope: KeyScope, *kinds: KeyKind) -> None:
    """403 for a resource type this kind of key may never use."""
    if scope.kind not in kinds:
        raise BackendError(403, "AUTH_FORBIDDEN", f"a {scope.kind}_ key cannot use this endpoint")


def inbox_in_scope(request: Request, scope: KeyScope) -> InboxRecord:
    """The path's inbox if the key may see it; 404 otherwise (existence is never revealed)."""
    return visible_inbox(backend_of(request), scope, request.path_params["inbox_id"])


def visible_inbox(backend: LocalBackend, scope: KeyScope, inbox_id: str) -> InboxRecord:
    """The inbox if the key may see it; 404 otherwise (existence is never revealed)."""
    record = backend.store.inbox_record(inbox_id)
    if record is None or not scope.can_see(
        tenant_id=record.tenant_id, workspace_id=record.workspace_id, inbox_id=record.id
    ):
        raise BackendError.not_found("inbox")
    return record


async def check_tenant_workspace(backend: LocalBackend, scope: KeyScope, workspace_id: str) -> None:
    """404 unless the workspace a tk_ key names is in its own tenant."""
    workspace = await backend.store.get_workspace(workspace_id)
    if workspace is None or workspace["tenant_id"] != scope.tenant_id:
        raise BackendError.not_found("workspace")


# ---------------------------------------------------------------- request parsing


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:  # refuse before reading it into memory
        raise BackendError(413, "PAYLOAD_TOO_LARGE", f"request body over {MAX_REQUEST_BYTES} bytes")
    raw = await _bounded_body(request)
    if not raw.strip():
        if optional:
            return model()
        raise BackendError.validation("body", "a JSON object is required")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BackendError.validation("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise BackendError.validation("body", "a JSON object is required")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"path": ".".join(str(p) for p in err["loc"]) or "body", "message": _error_message(err)}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = details[0] if details else {"path": "body", "message": "invalid"}
        raise BackendError(
            400, "VALIDATION_ERROR", f"{first['path']}: {first['message']}", details=details
        ) from None


async def _bounded_body(request: Request) -> bytes:
    """The body, refused as soon as it passes the cap (a chunked body declares no length up front)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise BackendError(413, "PAYLOAD_TOO_LARGE", f"request body over {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_message(err: Any) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown field"
    return str(err.get("msg", "invalid"))


def check_header_argument(path: str, value: str | None) -> None:
    """400 naming `path` unless `value` stays one line in a mail header (see mam_mcp.headers)."""
    if not is_safe_header_value(value):
        raise BackendError.validation(path, UNSAFE_REASON)


def valid_address(value: str, path: str) -> str:
    """A bare address from `addr` or `Name <addr>`; line breaks (even encoded) and malformed addresses refused."""
    check_header_argument(path, value)
    addr = value.strip()
    if "<" in addr:
        addr = parseaddr(addr)[1]
    if not ADDRESS_RE.match(addr):
        raise BackendError.validation(path, f"not a valid email address: {value[:100]!r}")
    return addr


def address_list(value: str | list[str] | None, path: str) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    out = [valid_address(v, path) for v in items if v.strip()]
    if len(out) > MAX_RECIPIENTS:
        raise BackendError.validation(path, f"at most {MAX_RECIPIENTS} recipients")
    return out


def page_params(request: Request, *, default_limit: int = 20) -> tuple[int, int]:
    limit = _int_param(request, "limit", default_limit)
    offset = _int_param(request, "offset", 0)
    if not 1 <= limit <= 100:
        raise BackendError.validation("limit", "must be between 1 and 100")
    if offset < 0:
        raise BackendError.validation("offset", "must be >= 0")
    return limit, offset


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BackendError.validation(name, "must be an integer") from None


def iso_param(request: Request, name: str) -> str | None:
    """An ISO-8601 query time normalised to the stored form (UTC, milliseconds, Z)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BackendError.validation(name, "must be an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BackendError.validation(name, "must be true or false")


# ---------------------------------------------------------------- wire shapes


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


def ok() -> JSONResponse:
    return JSONResponse({"ok": True})
