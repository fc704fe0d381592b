"""What a /v1 request carries: a bounded JSON body (camelCase, unknown fields refused), query
parameters, and addresses and header values checked before they reach a mail header."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.requests import Request

from mam_mcp.headers import UNSAFE_REASON, is_safe_header_value
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.service.outgoing import ADDRESS_RE, MAX_RECIPIENTS

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_RECIPIENTS",
    "MAX_SUBJECT_CHARS",
    "CreateKey",
    "StrictBody",
    "address_list",
    "bool_param",
    "check_header_argument",
    "iso_param",
    "page_params",
    "parse_body",
    "valid_address",
]

M = TypeVar("M", bound=BaseModel)

MAX_SUBJECT_CHARS = 998

MAX_BODY_CHARS = 5 * 1024 * 1024

MAX_REQUEST_BYTES = 12 * 1024 * 1024


class StrictBody(BaseModel):
    """A request body: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateKey(StrictBody):
    """The body of both key-creating routes (an inbox's ak_ key, a workspace's wk_ key)."""

    name: str | None = Field(default=None, max_length=200)


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:  # refuse before reading it into memory
        raise BackendError(413, "PAYLOAD_TOO_LARGE", f"request body over {MAX_REQUEST_BYTES} bytes")
    raw = await _bounded_body(request)
    request.state.raw_body = raw  # what an Idempotency-Key's fingerprint covers (api/creates.py)
    request.state.body_json = None  # the parsed body, for a send's fingerprint (api/messages.py)
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
    request.state.body_json = data
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
