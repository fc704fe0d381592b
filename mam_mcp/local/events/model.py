"""Domain types shared by the parts of the local backend (store, REST app, events, webhooks, SMTP).

Kept apart so that each part depends on these small types, not on each other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["EVENT_TYPES", "EventType", "InboxEvent", "KeyKind", "KeyScope", "new_event_id", "utc_now_iso"]

EventType = Literal["message.received", "message.sent", "message.bounced"]
EVENT_TYPES: tuple[EventType, ...] = ("message.received", "message.sent", "message.bounced")

KeyKind = Literal["tk", "wk", "ak"]


def utc_now_iso() -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, the format used on the wire."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What an authenticated key may touch. `ak` (and legacy `mam_`) keys are one inbox."""

    kind: KeyKind
    key_id: str
    tenant_id: str
    workspace_id: str | None = None  # set for wk_ keys (and ak_ keys whose inbox is in a workspace)
    inbox_id: str | None = None  # set for ak_ keys only

    def can_see(self, *, tenant_id: str, workspace_id: str | None, inbox_id: str | None) -> bool:
        """True when a resource with these owners is inside this key's scope."""
        if tenant_id != self.tenant_id:
            return False
        if self.kind == "wk":
            return workspace_id == self.workspace_id
        if self.kind == "ak":
            return inbox_id is not None and inbox_id == self.inbox_id
        return True


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One inbox event, fanned out to WebSocket subscribers and webhooks.

    `message` is the snake_case message object of the WebSocket `event` frame
    (`inbox_id, thread_id, message_id, from, to, subject, plain_body, html_body, timestamp`);
    `thread` is `{thread_id, subject}`. The owners are used for scoping.
    """

    event_type: EventType
    tenant_id: str
    workspace_id: str | None
    inbox_id: str
    message: dict[str, Any]
    thread: dict[str, Any]
    has_attachments: bool = False
    event_id: str = field(default_factory=new_event_id)
    timestamp: str = field(default_factory=utc_now_iso)

    def ws_frame(self) -> dict[str, Any]:
        """The WebSocket `event` frame, exactly as in the reference."""
        return {
            "type": "event",
            "event_type": self.event_type,
            "event_id": self.event_id,
            "message": self.message,
            "thread": self.thread,
        }

    def webhook_payload(self) -> dict[str, Any]:
        """The webhook JSON body of the reference (no message body: receivers fetch it)."""
        to = self.message.get("to") or []
        return {
            "event": self.event_type,
            "messageId": self.message.get("message_id"),
            "inboxId": self.inbox_id,
            "threadId": self.message.get("thread_id"),
            "from": self.message.get("from"),
            "to": ", ".join(to) if isinstance(to, list) else to,
            "subject": self.message.get("subject"),
            "hasAttachments": self.has_attachments,
            "timestamp": self.timestamp,
        }
