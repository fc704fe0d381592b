"""Inbox events as data: the event frame's models (the wire's time format is re-exported from `timefmt`).

An `InboxEvent` has the same shape whether it came from the `/v1/ws` WebSocket or from polling
(`InboxEvent.from_message`); `mam_mcp.client.event_stream` produces them, `tail` prints their
frames, `listen` turns them into webhook bodies, and `wait_for_email` reads their messages.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mam_mcp.client.models import Message
from mam_mcp.client.timefmt import format_time, parse_time  # re-exported: the wire's time format lives apart

__all__ = ["EventMessage", "InboxEvent", "format_time", "parse_time"]


class EventMessage(BaseModel):
    """The snake_case `message` object of an event frame (reference, websockets.md)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)  # built on first use

    message_id: str
    inbox_id: str | None = None
    thread_id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: list[str] = Field(default_factory=list)
    subject: str | None = None
    plain_body: str | None = None
    html_body: str | None = None
    timestamp: str | None = None
    has_attachments: bool | None = None
    tag: str | None = None  # local backend: the plus-address tag

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return [str(item) for item in value]


class InboxEvent(BaseModel):
    """One event, normalised: from a WebSocket frame (`source="websocket"`) or a polled message."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    event_type: str
    event_id: str
    message: EventMessage | None = None
    thread: dict[str, Any] | None = None
    source: Literal["websocket", "poll"] = "websocket"

    @property
    def inbox_id(self) -> str | None:
        return self.message.inbox_id if self.message else None

    @property
    def received_at(self) -> datetime | None:
        return parse_time(self.message.timestamp) if self.message else None

    def frame(self) -> dict[str, Any]:
        """The reference's WebSocket `event` frame for this event (what `mam-mcp tail` prints)."""
        frame: dict[str, Any] = {"type": "event", "event_type": self.event_type, "event_id": self.event_id}
        if self.message is not None:
            frame["message"] = self.message.model_dump(by_alias=True, exclude_none=True)
        if self.thread is not None:
            frame["thread"] = self.thread
        return frame

    def webhook_payload(self, *, has_attachments: bool | None = None) -> dict[str, Any]:
        """The reference's webhook POST body (no message body: receivers fetch it)."""
        message = self.message or EventMessage(message_id="")
        attached = has_attachments if has_attachments is not None else bool(message.has_attachments)
        return {
            "event": self.event_type,
            "messageId": message.message_id or None,
            "inboxId": message.inbox_id,
            "threadId": message.thread_id,
            "from": message.from_,
            "to": ", ".join(message.to),
            "subject": message.subject,
            "hasAttachments": attached,
            "timestamp": message.timestamp,
        }

    def to_message(self) -> Message:
        """The event's message as an API `Message` (for summaries, body text, matching)."""
        if self.message is None:
            raise ValueError(f"event {self.event_id} carries no message")
        m = self.message
        name, address = parseaddr(m.from_ or "")
        return Message(
            id=m.message_id,
            inbox_id=m.inbox_id,
            thread_id=m.thread_id,
            direction="outbound" if self.event_type == "message.sent" else "inbound",
            from_address=address or m.from_,
            from_name=name or None,
            to_addresses=m.to,
            subject=m.subject,
            plain_body=m.plain_body,
            html_body=m.html_body,
            received_at=m.timestamp if self.event_type != "message.sent" else None,
            sent_at=m.timestamp if self.event_type == "message.sent" else None,
            has_attachments=m.has_attachments,
            tag=m.tag,
        )

    @classmethod
    def from_message(cls, message: Message, event_type: str = "message.received") -> InboxEvent:
        """A polled message in the event shape (`event_id` derived from the message id)."""
        sender = (
            f"{message.from_name} <{message.from_address}>" if message.from_name else message.from_address
        )
        to_wire = EventMessage.model_validate(
            {
                "message_id": message.id,
                "inbox_id": message.inbox_id,
                "thread_id": message.thread_id,
                "from": sender,
                "to": message.to_addresses,
                "subject": message.subject,
                "plain_body": message.plain_body,
                "html_body": message.html_body,
                "timestamp": message.date,
                "has_attachments": bool(message.has_attachments) or bool(message.attachments),
                "tag": message.tag,
            }
        )
        thread = {"thread_id": message.thread_id, "subject": message.subject} if message.thread_id else None
        return cls(
            event_type=event_type,
            event_id=f"poll_{message.id}",
            message=to_wire,
            thread=thread,
            source="poll",
        )
