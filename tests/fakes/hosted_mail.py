"""Mail semantics of the fake hosted API: sending, replying, forwarding and inbound delivery.

Kept apart from the HTTP layer so `FakeHostedAPI.deliver_inbound` and the routes share them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from mam_mcp.local.timestamps import utc_now_iso
from tests.fakes.hosted_errors import FakeApiError
from tests.fakes.hosted_events import EventHub, event_for_message
from tests.fakes.hosted_records import AttachmentRecord, InboxRecord, MessageRecord, ThreadRecord, new_id
from tests.fakes.hosted_state import HostedState

__all__ = ["MailFlow", "as_addresses"]


def as_addresses(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [v.strip() for v in value if v.strip()]


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def _rfc_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


class MailFlow:
    def __init__(self, state: HostedState, hub: EventHub) -> None:
        self._state = state
        self._hub = hub

    def check_recipients(self, inbox: InboxRecord, recipients: Iterable[str], verified: bool | None) -> None:
        """Unverified sends to addresses that never wrote to this inbox are rejected (reference)."""
        if verified:
            return
        unknown = [r for r in recipients if r.lower() not in inbox.known_senders]
        if unknown:
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                f"recipient has never written to this inbox: {', '.join(unknown)}; pass verified: true "
                "if you validated the address out-of-band",
                details=[
                    {"path": "verified", "message": f"required for unknown recipient {r}"} for r in unknown
                ],
            )

    def send(
        self,
        inbox: InboxRecord,
        *,
        to: list[str],
        cc: list[str],
        bcc: list[str],
        subject: str,
        plain_body: str | None,
        html_body: str | None,
        replying_to: MessageRecord | None = None,
    ) -> MessageRecord:
        """Store an outbound message, publish `message.sent`, and deliver to fake inboxes it names."""
        if inbox.id in self._state.paused_inboxes:
            raise FakeApiError(403, "INBOX_PAUSED", "inbox auto-paused after too many bounces")
        if not to:
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "at least one recipient is required",
                details=[{"path": "to", "message": "required"}],
            )
        thread = self._thread_for_send(inbox, subject, replying_to)
        now = utc_now_iso()
        message = MessageRecord(
            id=new_id(),
            inbox_id=inbox.id,
            thread_id=thread.id,
            direction="outbound",
            from_address=inbox.email,
            from_name=inbox.display_name,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            plain_body=plain_body,
            html_body=html_body,
            message_id=_rfc_message_id(inbox.domain),
            in_reply_to=replying_to.message_id if replying_to else None,
            is_read=True,
            status="sent",
            sent_at=now,
            created_at=now,
        )
        self._store(message)
        self._hub.publish(event_for_message(self._state, message, "message.sent"))
        for address in [*to, *cc, *bcc]:
            target = self._state.inbox_owning_address(address)
            if target is not None:
                self.deliver(
                    target,
                    from_address=inbox.email,
                    from_name=inbox.display_name,
                    to=[address],
                    subject=subject,
                    plain_body=plain_body,
                    html_body=html_body,
                    in_reply_to=message.message_id,
                )
        return message

    def deliver(
        self,
        inbox: InboxRecord,
        *,
        from_address: str,
        subject: str,
        plain_body: str | None,
        html_body: str | None = None,
        from_name: str | None = None,
        to: list[str] | None = None,
        in_reply_to: str | None = None,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        raw: bytes | None = None,
    ) -> MessageRecord:
        """Store an inbound message (threaded onto `in_reply_to` when known), publish `message.received`.
        `raw`: the source as received (served by the raw route); by default one is composed."""
        parent = self._find_by_rfc_or_id(inbox, in_reply_to) if in_reply_to else None
        thread = self._state.threads[parent.thread_id] if parent else self._state.new_thread(inbox, subject)
        now = utc_now_iso()
        recipients = to or [inbox.email]
        message = MessageRecord(
            id=new_id(),
            inbox_id=inbox.id,
            thread_id=thread.id,
            direction="inbound",
            from_address=from_address,
            from_name=from_name,
            to=recipients,
            cc=[],
            bcc=[],
            subject=subject,
            plain_body=plain_body,
            html_body=html_body,
            message_id=_rfc_message_id(from_address.rpartition("@")[2] or "sender.invalid"),
            in_reply_to=parent.message_id if parent else None,
            received_at=now,
            created_at=now,
            attachments=[
                AttachmentRecord(id=new_id(), filename=name, content_type=ctype, data=data)
                for name, ctype, data in attachments
            ],
        )
        message.raw = raw if raw is not None else self._raw(message)
        inbox.known_senders.add(from_address.lower())
        self._store(message)
        self._hub.publish(event_for_message(self._state, message, "message.received"))
        return message

    def bounce(self, message: MessageRecord) -> None:
        """A bounce DSN arrived for an outbound message: mark it and publish `message.bounced`."""
        message.status = "bounced"
        self._hub.publish(event_for_message(self._state, message, "message.bounced"))

    def _thread_for_send(
        self, inbox: InboxRecord, subject: str, replying_to: MessageRecord | None
    ) -> ThreadRecord:
        if replying_to is not None:
            return self._state.threads[replying_to.thread_id]
        return self._state.new_thread(inbox, subject)

    def _find_by_rfc_or_id(self, inbox: InboxRecord, ref: str) -> MessageRecord | None:
        for message in self._state.messages.values():
            if message.inbox_id == inbox.id and ref in (message.id, message.message_id):
                return message
        return None

    def _store(self, message: MessageRecord) -> None:
        self._state.messages[message.id] = message
        self._state.touch_thread(message.thread_id)

    @staticmethod
    def _raw(message: MessageRecord) -> bytes:
        mime = EmailMessage()
        mime["From"] = (
            formataddr((message.from_name, message.from_address))
            if message.from_name
            else message.from_address
        )
        mime["To"] = ", ".join(message.to)
        mime["Subject"] = message.subject
        mime["Date"] = format_datetime(datetime.fromisoformat(message.received_at))
        mime["Message-ID"] = message.message_id
        if message.in_reply_to:
            mime["In-Reply-To"] = message.in_reply_to
        mime.set_content(message.plain_body or "")
        if message.html_body:
            mime.add_alternative(message.html_body, subtype="html")
        for attachment in message.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            mime.add_attachment(
                attachment.data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=attachment.filename,
            )
        return bytes(mime)

    @staticmethod
    def answered(original: MessageRecord) -> list[str]:
        """Who a reply answers (known without `verified`): the sender, or the recipients of our own message."""
        return [original.from_address] if original.direction == "inbound" else list(original.to)

    def check_reply_recipients(
        self, inbox: InboxRecord, original: MessageRecord, recipients: Iterable[str], verified: bool | None
    ) -> None:
        """A reply's other recipients (reply-all's participants, added cc/bcc) follow the send rule."""
        answered = {a.lower() for a in self.answered(original)}
        self.check_recipients(inbox, [r for r in recipients if r.lower() not in answered], verified)

    @staticmethod
    def reply_recipients(inbox: InboxRecord, original: MessageRecord, *, reply_all: bool) -> list[str]:
        own = {a["email"].lower() for a in inbox.addresses}
        if original.direction == "inbound":
            people = [original.from_address, *(original.to + original.cc if reply_all else [])]
        else:
            people = original.to + (original.cc if reply_all else [])
        seen: list[str] = []
        for person in people:
            if person.lower() not in own and person.lower() not in {s.lower() for s in seen}:
                seen.append(person)
        return seen

    @staticmethod
    def reply_subject(original: MessageRecord) -> str:
        return _prefixed("Re:", original.subject)

    @staticmethod
    def forward_subject(original: MessageRecord) -> str:
        return _prefixed("Fwd:", original.subject)

    @staticmethod
    def forward_body(note: str | None, original: MessageRecord) -> str:
        quoted = (
            f"---------- Forwarded message ---------\nFrom: {original.from_address}\n"
            f"Subject: {original.subject}\n\n{original.plain_body or ''}"
        )
        return f"{note}\n\n{quoted}" if note else quoted
