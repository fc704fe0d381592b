"""A message on its way out: what it is, what a person approves, and what its send came to.

Shared by the send path (backend.py), the composing of replies and forwards (compose.py) and
the REST routes, which validate addresses with `ADDRESS_RE` and `MAX_RECIPIENTS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mam_mcp.headers import UnsafeHeaderValue, check_header_value, check_header_values
from mam_mcp.local.mime.build import OutboundAttachment
from mam_mcp.local.service.errors import BackendError

__all__ = [
    "ADDRESS_RE",
    "MAX_RECIPIENTS",
    "Outgoing",
    "SendOutcome",
    "SendPreview",
    "check_headers",
    "content_hash",
    "plain_addresses",
    "unique_addresses",
]

MAX_RECIPIENTS = 50  # in to, cc and bcc together, on every send path (drafts included)

# A bare addr-spec as the API accepts it (no display name, quotes, spaces or brackets).
ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(slots=True)
class Outgoing:
    """A message to send from an inbox (addresses already validated by the REST layer)."""

    to: list[str]
    subject: str
    plain_body: str | None = None
    html_body: str | None = None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    verified: bool = False
    thread_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[OutboundAttachment] = field(default_factory=list)
    # Addresses this send may reach without consent although they never wrote to the inbox:
    # the people a reply answers (the replied-to sender, or the recipients of our own message).
    known: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SendPreview:
    """Exactly what a send would put on the wire, computed without sending (the consent screen)."""

    from_address: str
    from_name: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    plain_body: str | None
    html_body: str | None
    attachments: list[tuple[str, int]]
    new_recipients: list[str]
    answering: list[str]  # the people a reply answers (known without consent)
    in_reply_to: str | None
    content_hash: str

    def wire(self) -> dict[str, Any]:
        return {
            "from": self.from_address,
            "fromName": self.from_name,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "subject": self.subject,
            "plainBody": self.plain_body,
            "htmlBody": self.html_body,
            "attachments": [{"filename": name, "size": size} for name, size in self.attachments],
            "newRecipients": self.new_recipients,
            "answering": self.answering,
            "inReplyTo": self.in_reply_to,
            "contentHash": self.content_hash,
        }


def content_hash(
    *,
    from_address: str,
    from_name: str | None,
    outgoing: Outgoing,
) -> str:
    """A digest of everything a person approves: sender, recipients, subject, bodies, attachments."""
    canonical = json.dumps(
        [
            from_address, from_name, outgoing.to, outgoing.cc, outgoing.bcc, outgoing.subject,
            outgoing.plain_body, outgoing.html_body, outgoing.in_reply_to,
            [[a.filename, a.content_type, hashlib.sha256(a.data).hexdigest()] for a in outgoing.attachments],
        ],
        ensure_ascii=True,
    )  # fmt: skip
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """Where a send stands. `status`: queued | relaying | sent | failed | unknown | partial |
    delivered | captured (docs/contract.md); `relay_reply` is the relay's last answer (redacted)."""

    id: str
    thread_id: str
    status: str
    message_id: str
    draft_id: str | None = None
    relay_reply: str | None = None
    next_attempt_at: str | None = None  # queued: when the backend tries again
    retry_until: str | None = None  # queued: after this it is failed, never sent late

    def wire(self) -> dict[str, Any]:
        out = {"id": self.id, "threadId": self.thread_id, "status": self.status, "messageId": self.message_id}
        for key, value in (
            ("draftId", self.draft_id), ("relayReply", self.relay_reply),
            ("nextAttemptAt", self.next_attempt_at), ("retryUntil", self.retry_until),
        ):  # fmt: skip
            if value:
                out[key] = value
        return out


def check_headers(outgoing: Outgoing) -> None:
    if len(outgoing.to) + len(outgoing.cc) + len(outgoing.bcc) > MAX_RECIPIENTS:
        raise BackendError.validation("to", f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
    try:
        check_header_value("subject", outgoing.subject)
        for name in ("to", "cc", "bcc"):
            check_header_values(name, getattr(outgoing, name))
    except UnsafeHeaderValue as exc:
        raise BackendError.validation(exc.argument, exc.reason) from None


def plain_addresses(addresses: Sequence[str]) -> list[str]:
    """Stored addresses a reply may go to: bare addr-specs only (a quoted local part with spaces is text
    a stranger wrote, not a mailbox anyone should be sent to; the relay would refuse it anyway)."""
    return [a for a in addresses if a and ADDRESS_RE.match(a)]


def unique_addresses(addresses: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for addr in addresses:
        if addr and addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out
