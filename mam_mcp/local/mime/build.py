"""Build outbound RFC 5322 messages (stdlib `email`): replies' and forwards' subjects and quotes.

Building uses `EmailMessage` with the SMTP policy; every header value goes through
`mam_mcp.headers` (refused with `UnsafeHeaderValue` naming the argument, or neutralised when it
comes from inbound mail), and the built bytes are checked to carry exactly the headers that were set.
"""

from __future__ import annotations

import email.utils
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import errors as email_errors
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from mam_mcp.headers import (
    UnsafeHeaderValue,
    check_header_block,
    check_header_value,
    check_header_values,
    clean_message_ids,
    neutralise,
)

__all__ = [
    "OutboundAttachment",
    "build_outbound",
    "forward_quote",
    "forward_subject",
    "new_message_id",
    "reply_subject",
]


def reply_subject(subject: str | None) -> str:
    """The subject of a reply to a message with `subject` (inbound text: neutralised to one line)."""
    text = neutralise(subject)
    return text if re.match(r"^\s*re\s*:", text, re.IGNORECASE) else f"Re: {text}".strip()


def forward_subject(subject: str | None) -> str:
    """The subject of a forward of a message with `subject` (inbound text: neutralised to one line)."""
    text = neutralise(subject)
    return text if re.match(r"^\s*fwd?\s*:", text, re.IGNORECASE) else f"Fwd: {text}".strip()


@dataclass(slots=True)
class OutboundAttachment:
    filename: str
    content_type: str
    data: bytes


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def forward_quote(
    *, from_header: str, date: str | None, subject: str | None, to: Sequence[str], body: str | None
) -> str:
    """The quoted original under a forward, as mail clients write it (each quoted header one line)."""
    lines = [
        "---------- Forwarded message ----------",
        f"From: {neutralise(from_header)}",
        f"Date: {neutralise(date)}",
        f"Subject: {neutralise(subject)}",
        f"To: {neutralise(', '.join(to))}",
        "",
        body or "",
    ]
    return "\n".join(lines)


def _address(argument: str, display_name: str | None, addr: str) -> Address:
    local, _, domain = addr.rpartition("@")
    try:
        return Address(display_name=display_name or "", username=local, domain=domain)
    except (ValueError, TypeError, IndexError, email_errors.MessageError) as exc:
        raise UnsafeHeaderValue(argument, f"not an address a mail header can carry ({type(exc).__name__})") from None


# The REST argument each header comes from: what an error tells the caller to change.
_ARGUMENT_OF_HEADER = {
    "from": "displayName", "to": "to", "cc": "cc", "subject": "subject", "message-id": "messageId",
    "in-reply-to": "inReplyTo", "references": "references",
}  # fmt: skip


def _set_header(msg: EmailMessage, name: str, value: Any) -> None:
    """Set one header; any complaint of the email package is blamed on the argument it came from."""
    try:
        msg[name] = value
    except (ValueError, TypeError, IndexError, email_errors.MessageError) as exc:
        raise UnsafeHeaderValue(
            _ARGUMENT_OF_HEADER.get(name.lower(), name), f"cannot be written as a mail header ({type(exc).__name__})"
        ) from None


_BREAK_WITHOUT_FOLD = re.compile(rb"\r\n[^ \t]|\r[^ \n\t]|\n[^ \t]")  # what CPython 3.13 calls HeaderWriteError


def _serialise(msg: EmailMessage) -> bytes:
    """The wire bytes, the same on every CPython: a header that would fold into two is named, never sent."""
    for name, value in msg.items():
        argument = _ARGUMENT_OF_HEADER.get(name.lower(), name)
        try:
            folded = msg.policy.fold_binary(name, value)
        except (ValueError, TypeError, IndexError, email_errors.MessageError) as exc:
            raise UnsafeHeaderValue(argument, f"cannot be written as a mail header ({type(exc).__name__})") from None
        if _BREAK_WITHOUT_FOLD.search(folded.rstrip(b"\r\n")):
            raise UnsafeHeaderValue(argument)
    try:
        raw = msg.as_bytes(policy=email_policy.SMTP)
    except (ValueError, TypeError, IndexError, email_errors.MessageError) as exc:  # HeaderWriteError on 3.13+
        raise UnsafeHeaderValue("message", f"cannot be written as mail ({type(exc).__name__})") from None
    check_header_block(raw, [name for name, _ in msg.items()])
    return raw


def build_outbound(
    *,
    from_address: str,
    from_name: str | None,
    to: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    plain_body: str | None,
    html_body: str | None,
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    attachments: Sequence[OutboundAttachment] = (),
) -> bytes:
    """The wire bytes of an outbound message (Bcc never appears in headers).

    Values the caller chose are refused (`UnsafeHeaderValue` naming the argument) unless they
    are one line as any decoder reads them; thread ids taken from inbound mail are kept only
    when plain. Subjects derived from inbound mail arrive here neutralised (`reply_subject`).
    """
    check_header_value("subject", subject)
    check_header_value("displayName", from_name)
    check_header_values("to", to)
    check_header_values("cc", cc)
    check_header_value("from", from_address)
    check_header_value("messageId", message_id)
    thread_ids = clean_message_ids([in_reply_to])
    references = clean_message_ids(references)
    msg = EmailMessage(policy=email_policy.SMTP)
    _set_header(msg, "From", _address("from", from_name, from_address))
    _set_header(msg, "To", [_address("to", None, a) for a in to])
    if cc:
        _set_header(msg, "Cc", [_address("cc", None, a) for a in cc])
    _set_header(msg, "Subject", subject)
    _set_header(msg, "Date", email.utils.format_datetime(datetime.now(UTC)))
    _set_header(msg, "Message-ID", message_id)
    if thread_ids:
        _set_header(msg, "In-Reply-To", thread_ids[0])
    if references:
        _set_header(msg, "References", " ".join(references))
    msg["MIME-Version"] = "1.0"
    if plain_body is not None and html_body is not None:
        msg.set_content(plain_body)
        msg.add_alternative(html_body, subtype="html")
    elif html_body is not None:
        msg.set_content(html_body, subtype="html")
    else:
        msg.set_content(plain_body or "")
    for att in attachments:
        maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
        if maintype in ("multipart", "message") or not subtype:  # those need a Message, not bytes
            maintype, subtype = "application", "octet-stream"
        filename = neutralise(att.filename, max_chars=255) or "attachment"  # forwarded names come from mail
        try:
            msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=filename)
        except (ValueError, TypeError, IndexError, email_errors.MessageError) as exc:
            raise UnsafeHeaderValue("attachments", f"cannot be attached ({type(exc).__name__})") from None
    return _serialise(msg)
