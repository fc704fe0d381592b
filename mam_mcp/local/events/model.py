"""The event model: what happened to a mail, as fanned out to WebSockets and webhooks.

Events are built here from stored rows, never inside storage; `ws_frame` and `webhook_payload`
are their two wire shapes.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from mam_mcp.local.timestamps import utc_now_iso

__all__ = ["EVENT_TYPES", "EventType", "MailEvent", "event_message", "message_event", "new_event_id"]

EventType = Literal["message.received", "message.sent", "message.bounced"]
EVENT_TYPES: tuple[EventType, ...] = ("message.received", "message.sent", "message.bounced")


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class MailEvent:
    """What happened to one message in one inbox, fanned out to WebSocket subscribers and webhooks.

    (The client side parses the frames into `mam_mcp.client.event_models.InboxEvent`.)

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

    def webhook_body(self) -> bytes:
        """The exact bytes POSTed (and signed) to a webhook: compact JSON of `webhook_payload`."""
        return json.dumps(self.webhook_payload(), ensure_ascii=False, separators=(",", ":"), default=str).encode(
            "utf-8"
        )

    def webhook_payload(self) -> dict[str, Any]:
        """The webhook JSON body of the reference (no message body: receivers fetch it)."""
        to = self.message.get("to") or []
        tag = self.message.get("tag")
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
            **({"tag": tag} if tag else {}),  # ours: the plus-address tag it came with (a receiver routes on it)
        }


def event_message(row: dict[str, Any]) -> dict[str, Any]:
    """The snake_case `message` object of an event frame, from a message row."""
    name, addr = row.get("from_name"), row.get("from_address") or ""
    to = row.get("to_json")
    return {
        "inbox_id": row["inbox_id"],
        "thread_id": row["thread_id"],
        "message_id": row["id"],
        "from": f"{name} <{addr}>" if name and addr else addr,
        "to": json.loads(to) if isinstance(to, str) else list(to or []),
        "subject": row.get("subject") or "",
        "plain_body": row.get("plain_body"),
        "html_body": row.get("html_body"),
        "timestamp": row.get("at") or utc_now_iso(),
        "tag": row.get("tag"),  # ours: the plus-address tag (null without one)
    }


def message_event(
    event_type: EventType,
    *,
    tenant_id: str,
    workspace_id: str | None,
    row: dict[str, Any],
    thread_subject: str | None,
    timestamp: str | None = None,
    event_id: str | None = None,
) -> MailEvent:
    """The event of a stored message row (owners for scoping; `timestamp` defaults to now)."""
    return MailEvent(
        event_type=event_type,
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        inbox_id=row["inbox_id"],
        message=event_message(row),
        thread={"thread_id": row["thread_id"], "subject": thread_subject},
        has_attachments=bool(row.get("has_attachments")),
        timestamp=timestamp or utc_now_iso(),
        event_id=event_id or new_event_id(),
    )
