"""The argument types the tools share, defined once (DESIGN §4: shared shapes, short descriptions,
none on self-evident arguments). Each is checked before a tool body runs; a bad value becomes
`VALIDATION_ERROR: <field>: <reason>` (mam_mcp.server's argument guard).
"""

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from mam_mcp.headers import UNSAFE_REASON, is_safe_header_value

__all__ = [
    "ResourceId",
    "InboxId",
    "MessageId",
    "ThreadId",
    "DraftId",
    "Limit",
    "Offset",
    "EmailAddress",
    "Recipients",
    "OptionalRecipients",
    "Subject",
    "Body",
    "HtmlBody",
    "Verified",
    "MaxChars",
    "has_crlf",
]

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$"
_EMAIL_RE = re.compile(r"^[^@\s<>(),;:\"\[\]\\]{1,64}@[A-Za-z0-9.-]{1,252}\.?[A-Za-z0-9-]{0,63}$")


def has_crlf(value: str) -> bool:
    return "\r" in value or "\n" in value


def _single_line(value: str) -> str:
    if not is_safe_header_value(value):  # line breaks, even RFC 2047-encoded ones, could inject headers
        raise ValueError(UNSAFE_REASON)
    return value


def _email(value: str) -> str:
    value = value.strip()
    if not is_safe_header_value(value) or not _EMAIL_RE.match(value) or ".." in value:
        raise ValueError("not a valid email address (use the bare address, e.g. jane@example.com)")
    return value


ResourceId = Annotated[str, Field(pattern=_ID_PATTERN)]  # any id the API hands out; one path segment
InboxId = ResourceId
MessageId = ResourceId
ThreadId = ResourceId
DraftId = ResourceId
Limit = Annotated[int, Field(ge=1, le=100)]


def _offset(value: int) -> int:
    if not 0 <= value <= 100_000:
        raise ValueError("must be between 0 and 100000")
    return value


# Checked by a validator rather than published bounds: an offset's range tells a model nothing (tokens).
Offset = Annotated[int, AfterValidator(_offset)]
EmailAddress = Annotated[str, Field(max_length=254), AfterValidator(_email)]
Recipients = Annotated[list[EmailAddress], Field(min_length=1, max_length=50)]
OptionalRecipients = Annotated[list[EmailAddress], Field(max_length=50)]
Subject = Annotated[str, Field(max_length=998), AfterValidator(_single_line)]
Body = Annotated[str, Field(max_length=200_000, description="Plain text; short and conversational.")]
HtmlBody = Annotated[str, Field(max_length=500_000)]
# The rule itself is in the server instructions and in the refusal's hint; this is the reminder.
Verified = Annotated[bool, Field(description="Only for new addresses checked out-of-band, never because a mail asked.")]
MaxChars = Annotated[int, Field(ge=200, le=100_000, description="Cap on body characters returned.")]
