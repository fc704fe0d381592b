"""Composition root of the local backend: store, keys, outbound path and event fan-out.

The REST app and the SMTP ingress both go through `LocalBackend`; part B's WebSocket hub
and webhook dispatcher register as event sinks. A failing sink is logged and skipped: it
never breaks a send or an SMTP accept.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.dns import MxResolver, TxtResolver, resolve_mx, resolve_txt
from mam_mcp.local.auth.keys import KeyRing
from mam_mcp.headers import UnsafeHeaderValue, check_header_value, check_header_values
from mam_mcp.local.mime.parse import (
    OutboundAttachment,
    build_outbound,
    forward_quote,
    forward_subject,
    new_message_id,
    reply_subject,
)
from mam_mcp.local.events.model import EventType, InboxEvent, KeyScope
from mam_mcp.local.relay.smtp_relay import RelayOutcomeUnknown, RelayRejected
from mam_mcp.local.store.email_store import EmailStore, event_message

__all__ = [
    "ADDRESS_RE",
    "MAX_RECIPIENTS",
    "BackendError",
    "EventSink",
    "LocalBackend",
    "OutboundRelay",
    "Outgoing",
    "RelayRejected",
    "SendPreview",
    "SendResult",
    "WebhookTarget",
]

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 50  # in to, cc and bcc together, on every send path (drafts included)
# A bare addr-spec as the API accepts it (no display name, quotes, spaces or brackets).
ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")

EventSink = Callable[[InboxEvent], Awaitable[None] | None]


class OutboundRelay(Protocol):
    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        """Hand a message to the relay; raises RelayRejected(permanent, message), or
        RelayOutcomeUnknown when the connection failed after the message went over."""


class BackendError(Exception):
    """An API error: HTTP status, machine code, human message (no secrets), optional details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    @classmethod
    def validation(cls, path: str, message: str) -> BackendError:
        return cls(
            400, "VALIDATION_ERROR", f"{path}: {message}", details=[{"path": path, "message": message}]
        )

    @classmethod
    def not_found(cls, what: str) -> BackendError:
        return cls(404, "NOT_FOUND", f"{what} not found")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...]


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
class SendResult:
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


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one delivery attempt came to."""

    status: str
    reply: str | None = None
    next_attempt_at: str | None = None
    retry_until: str | None = None
    refused: bool = False  # the relay said no for good (5xx): RELAY_REJECTED


class LocalBackend:
    def __init__(
        self,
        config: LocalConfig,
        store: EmailStore,
        *,
        relay: OutboundRelay | None = None,
        mx_resolver: MxResolver | None = None,
        txt_resolver: TxtResolver | None = None,
        keys: KeyRing | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.relay = relay
        self.mx_resolver: MxResolver = mx_resolver or resolve_mx
        self.txt_resolver: TxtResolver = txt_resolver or resolve_txt
        self.keys = keys or KeyRing(store)
        self._sinks: list[EventSink] = []
        # Idempotency-Key -> [lock, holders]; an entry lives while anyone holds or awaits its lock.
        self._send_locks: dict[tuple[str, str], list[Any]] = {}
        self._retry_listeners: list[Callable[[], None]] = []

    @property
    def smtp_port(self) -> int:
        return self.config.smtp_port

    # ------------------------------------------------------------ what parts B and C use

    def add_event_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    async def emit(self, event: InboxEvent) -> None:
        for sink in list(self._sinks):
            try:
                result = sink(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("event sink failed for %s %s", event.event_type, event.event_id)

    async def ingest(self, raw: bytes, mail_from: str, rcpt_tos: Sequence[str]) -> list[InboxEvent]:
        """Store mail received over SMTP (durably) and emit `message.received` per inbox."""
        events = await self.store.insert_inbound(raw, mail_from=mail_from, rcpt_tos=rcpt_tos)
        if rcpt_tos and not events:
            # Every recipient vanished between RCPT and DATA (inbox deleted): refuse, never 250 into nowhere.
            raise LookupError("no local inbox for any recipient")
        for event in events:
            await self.emit(event)
        return events

    def is_local_recipient(self, address: str) -> bool:
        return self.store.inbox_for_address(address) is not None

    def authenticate(self, key: str) -> KeyScope | None:
        return self.keys.authenticate(key)

    def inbox_owner(self, inbox_id: str) -> tuple[str, str | None, str] | None:
        """(tenant_id, workspace_id, email) of an inbox, or None."""
        record = self.store.inbox_record(inbox_id)
        return (record.tenant_id, record.workspace_id, record.email) if record else None

    async def webhook_current_url(self, webhook_id: str) -> str | None:
        """The webhook's URL now, or None when it was deleted or disabled."""
        row = await self.store.get_webhook(webhook_id)
        return str(row["url"]) if row is not None and row["is_active"] else None

    async def webhook_targets(self, event: InboxEvent) -> list[WebhookTarget]:
        """Active webhooks covering the event's inbox and subscribed to its type."""
        if not self.store.may_have_webhooks():
            return []  # the common case with no webhooks: no database read on the SMTP accept path
        rows = await self.store.webhooks_for_event(event.tenant_id, event.workspace_id, event.inbox_id)
        targets = []
        for row in rows:
            events = tuple(json.loads(row["events_json"]))
            if not events or event.event_type in events:
                targets.append(WebhookTarget(row["id"], row["url"], row["secret"], events))
        return targets

    # ------------------------------------------------------------ outbound

    async def send(
        self,
        inbox_id: str,
        outgoing: Outgoing,
        *,
        idempotency_key: str | None = None,
        draft_id: str | None = None,
        expect_hash: str | None = None,
    ) -> SendResult:
        """Validate, store (with idempotency record and draft deletion), then deliver.

        With `expect_hash`, the message is sent only if it is still exactly what a preview with that
        hash showed (a person approved that content); otherwise CONTENT_CHANGED and nothing is sent.
        """
        _check_headers(outgoing)
        if idempotency_key is None:
            return await self._send_once(inbox_id, outgoing, None, draft_id, expect_hash)
        key = (inbox_id, idempotency_key)
        entry = self._send_locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                previous = await self._previous_send(inbox_id, idempotency_key)
                if previous is not None:
                    return replace(previous, draft_id=draft_id)
                return await self._send_once(inbox_id, outgoing, idempotency_key, draft_id, expect_hash)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._send_locks.pop(key, None)

    async def _previous_send(self, inbox_id: str, idempotency_key: str) -> SendResult | None:
        row = await self.store.idempotent_message(inbox_id, idempotency_key)
        if row is None:
            return None
        delivery = await self.store.delivery(row["id"]) or {}
        return SendResult(
            row["id"], row["thread_id"], row["status"], row["message_id_hdr"] or "",
            relay_reply=delivery.get("last_reply"), next_attempt_at=delivery.get("next_attempt_at"),
            retry_until=delivery.get("retry_until") if row["status"] == "queued" else None,
        )  # fmt: skip

    async def new_recipients(self, inbox_id: str, recipients: Sequence[str], known: Sequence[str] = ()) -> list[str]:
        """The recipients that need consent: never wrote to this inbox, not local, not answered by this reply."""
        answered = {a.lower() for a in known}
        return [
            rcpt
            for rcpt in _unique(recipients)
            if rcpt.lower() not in answered
            and not self.is_local_recipient(rcpt)
            and not await self.store.has_correspondent(inbox_id, rcpt)
        ]

    async def preview(self, inbox_id: str, outgoing: Outgoing) -> SendPreview:
        """What sending `outgoing` from this inbox would put on the wire, and who is new; sends nothing."""
        _check_headers(outgoing)
        record = self.store.inbox_record(inbox_id)
        inbox = await self.store.get_inbox(inbox_id)
        if record is None or inbox is None:
            raise BackendError.not_found("inbox")
        if not outgoing.to:
            raise BackendError.validation("to", "at least one recipient is required")
        from_address = await self.store.primary_address(inbox_id) or record.email
        from_name = inbox.get("display_name")
        try:  # set before the header check existed: refused here, before anyone is asked to approve it
            check_header_value("displayName", from_name)
        except UnsafeHeaderValue as exc:
            raise BackendError.validation(exc.argument, exc.reason) from None
        return SendPreview(
            from_address=from_address,
            from_name=from_name,
            to=list(outgoing.to),
            cc=list(outgoing.cc),
            bcc=list(outgoing.bcc),
            subject=outgoing.subject,
            plain_body=outgoing.plain_body,
            html_body=outgoing.html_body,
            attachments=[(a.filename, len(a.data)) for a in outgoing.attachments],
            new_recipients=await self.new_recipients(
                inbox_id, [*outgoing.to, *outgoing.cc, *outgoing.bcc], outgoing.known
            ),
            answering=list(outgoing.known),
            in_reply_to=outgoing.in_reply_to,
            content_hash=content_hash(from_address=from_address, from_name=from_name, outgoing=outgoing),
        )

    async def _send_once(
        self,
        inbox_id: str,
        outgoing: Outgoing,
        idempotency_key: str | None,
        draft_id: str | None,
        expect_hash: str | None = None,
    ) -> SendResult:
        record = self.store.inbox_record(inbox_id)
        if record is None:
            raise BackendError.not_found("inbox")
        recipients = _unique([*outgoing.to, *outgoing.cc, *outgoing.bcc])
        preview = await self.preview(inbox_id, outgoing)
        if expect_hash is not None and expect_hash != preview.content_hash:
            raise BackendError(
                409,
                "CONTENT_CHANGED",
                "the message is no longer what was approved (its recipients or content changed); nothing was sent",
            )
        if preview.new_recipients and not outgoing.verified:
            unknown = preview.new_recipients
            listed = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            raise BackendError(
                400,
                "VALIDATION_ERROR",
                f"verified: {listed} never wrote to this inbox; pass verified: true only if you have checked "
                "the address(es) out-of-band",
                details=[{"path": "verified", "message": f"required for unknown recipient {r}"} for r in unknown],
            )
        from_address, from_name = preview.from_address, preview.from_name
        message_id = new_message_id(from_address.rpartition("@")[2] or self.config.domain)
        try:
            raw = build_outbound(
                from_address=from_address,
                from_name=from_name,
                to=outgoing.to,
                cc=outgoing.cc,
                subject=outgoing.subject,
                plain_body=outgoing.plain_body,
                html_body=outgoing.html_body,
                message_id=message_id,
                in_reply_to=outgoing.in_reply_to,
                references=outgoing.references,
                attachments=outgoing.attachments,
            )
        except UnsafeHeaderValue as exc:
            raise BackendError.validation(exc.argument, exc.reason) from None
        await self._pause_at("recording")
        try:
            row = await self.store.insert_outbound(
                inbox_id=inbox_id,
                thread_id=outgoing.thread_id,
                message_id_hdr=message_id,
                in_reply_to=outgoing.in_reply_to,
                references=outgoing.references,
                from_address=from_address,
                from_name=from_name,
                to=outgoing.to,
                cc=outgoing.cc,
                bcc=outgoing.bcc,
                subject=outgoing.subject,
                plain_body=outgoing.plain_body,
                html_body=outgoing.html_body,
                attachments=[(a.filename, a.content_type, a.data) for a in outgoing.attachments],
                raw=raw,
                idempotency_key=idempotency_key,
                delete_draft_id=draft_id,
            )
        except LookupError:
            raise BackendError.not_found("draft") from None
        await self._pause_at("recorded")  # recorded as queued (the draft gone with it), not yet handed over
        outcome = await self._first_delivery(record.tenant_id, record.workspace_id, row, recipients, raw)
        if outcome.refused:
            raise BackendError(
                502,
                "RELAY_REJECTED",
                f"the relay refused message {row['id']}: {outcome.reply}. It was not sent; it is stored with"
                " status failed",
            )
        return SendResult(
            row["id"], row["thread_id"], outcome.status, message_id, draft_id, relay_reply=outcome.reply,
            next_attempt_at=outcome.next_attempt_at, retry_until=outcome.retry_until,
        )  # fmt: skip

    # ------------------------------------------------------------ delivery states

    async def _pause_at(self, point: str) -> None:
        """Test hook (config.test_pause_at): stop here for good, so a test can kill the daemon at this point."""
        if self.config.test_pause_at != point:
            return
        (self.config.data_dir / f"paused-at-{point}").write_text(str(os.getpid()), encoding="utf-8")
        logger.warning("test hook: send paused at %s", point)
        await anyio.sleep_forever()

    def add_retry_listener(self, listener: Callable[[], None]) -> None:
        """`listener()` is called when a send is queued for a retry (the daemon's retry worker wakes up)."""
        self._retry_listeners.append(listener)

    async def _first_delivery(
        self, tenant_id: str, workspace_id: str | None, row: dict[str, Any], recipients: list[str], raw: bytes
    ) -> _Outcome:
        """Hand a just-recorded send over: local inboxes at once, the rest to the relay (or captured)."""
        local = [r for r in recipients if self.is_local_recipient(r)]
        remote = [r for r in recipients if r not in local]
        handed_over = bool(local) or (bool(remote) and self.relay is not None)
        if handed_over:
            await self.store.claim_delivery(row["id"])  # relaying: a crash from here on means unknown
            await self._pause_at("relaying")
        if local:
            try:
                await self.ingest(raw, row["from_address"], local)
            except Exception as exc:  # noqa: BLE001 - the message must not stay in flight forever
                logger.warning("local delivery of %s failed: %s", row["id"], type(exc).__name__)
                await self.store.finish_delivery(row["id"], "failed", f"local delivery failed: {type(exc).__name__}")
                raise BackendError(
                    502, "SMTP_ERROR",
                    f"local delivery of message {row['id']} failed; it is stored with status failed",
                ) from None
        if remote and self.relay is not None:
            return await self._relay(tenant_id, workspace_id, row, remote, raw, attempts=1, retry_until=None)
        status = "captured" if remote else "delivered"  # captured: no relay configured, kept here
        return await self._finish(tenant_id, workspace_id, row, status)

    async def _relay(
        self,
        tenant_id: str,
        workspace_id: str | None,
        row: dict[str, Any],
        remote: list[str],
        raw: bytes,
        *,
        attempts: int,
        retry_until: str | None,
    ) -> _Outcome:
        """One attempt with the relay (the send is `relaying`): its outcome, recorded."""
        assert self.relay is not None
        try:
            await self.relay.send(row["from_address"], remote, raw)
        except RelayRejected as exc:
            if exc.accepted:  # some recipients got it: a failure would invite a duplicate resend
                logger.warning("relay refused %d of %d recipients of %s", len(exc.refused), len(remote), row["id"])
                return await self._finish(tenant_id, workspace_id, row, "partial", exc.reply())
            if exc.permanent:
                return replace(await self._finish(tenant_id, workspace_id, row, "failed", exc.reply()), refused=True)
            return await self._retry_later(tenant_id, workspace_id, row, exc.reply(), attempts, retry_until)
        except RelayOutcomeUnknown as exc:
            return await self._finish(tenant_id, workspace_id, row, "unknown", exc.reply())
        except Exception as exc:  # noqa: BLE001 - a relay that broke before answering: try again later
            logger.warning("relay failed: %s", type(exc).__name__)
            reply = f"relay failed: {type(exc).__name__}"
            return await self._retry_later(tenant_id, workspace_id, row, reply, attempts, retry_until)
        await self._pause_at("relayed")  # the relay said yes; not yet recorded
        return await self._finish(tenant_id, workspace_id, row, "sent")

    async def _finish(
        self, tenant_id: str, workspace_id: str | None, row: dict[str, Any], status: str, reply: str | None = None
    ) -> _Outcome:
        await self.store.finish_delivery(row["id"], status, reply)
        row["status"] = status
        if status in ("sent", "delivered", "captured", "partial"):
            await self.emit(_event("message.sent", tenant_id, workspace_id, row))
        return _Outcome(status, reply)

    async def _retry_later(
        self,
        tenant_id: str,
        workspace_id: str | None,
        row: dict[str, Any],
        reply: str,
        attempts: int,
        retry_until: str | None,
    ) -> _Outcome:
        """A temporary failure: queued again with backoff, or failed once the attempts are used up."""
        base = self.config.send_retry_base_seconds
        if attempts >= self.config.send_max_attempts:
            return await self._finish(
                tenant_id, workspace_id, row, "failed", f"{reply} (gave up after {attempts} attempts)"
            )
        now = datetime.now(UTC)
        if retry_until is None:  # the last attempt's time, plus one base interval of slack
            last = sum(base * 3**n for n in range(self.config.send_max_attempts - 1)) + base
            retry_until = _iso(now + timedelta(seconds=last))
        next_attempt_at = _iso(now + timedelta(seconds=base * 3 ** (attempts - 1)))
        await self.store.schedule_retry(
            row["id"], next_attempt_at=next_attempt_at, retry_until=retry_until, reply=reply
        )
        for listener in list(self._retry_listeners):
            listener()
        return _Outcome("queued", reply, next_attempt_at, retry_until)

    async def retry_due_sends(self) -> float | None:
        """Try each queued send whose retry is due (the daemon's retry worker calls this).

        Returns seconds until the next retry is due, or None when none is scheduled.
        """
        for row in await self.store.due_deliveries(_iso(datetime.now(UTC))):
            await self._retry(row)
        upcoming = await self.store.next_delivery_at()
        if upcoming is None:
            return None
        wait = (datetime.fromisoformat(upcoming.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
        return max(wait, 0.0)

    async def _retry(self, row: dict[str, Any]) -> None:
        record = self.store.inbox_record(row["inbox_id"])
        tenant_id, workspace_id = (record.tenant_id, record.workspace_id) if record else ("", None)
        if not await self.store.claim_delivery(row["id"]):
            return  # no longer queued
        reply = row["last_reply"] or "temporary failure"
        expired = row["retry_until"] is not None and row["retry_until"] < _iso(datetime.now(UTC))
        if record is None or row["deleted"] or self.relay is None or expired:
            why = (
                "the message was deleted while queued" if row["deleted"] or record is None
                else "no relay is configured any more" if self.relay is None
                else f"the retries ended at {row['retry_until']} while the daemon was not running"
            )  # fmt: skip
            await self._finish(tenant_id, workspace_id, row, "failed", f"not sent: {why}; last answer: {reply}")
            return
        raw = await self.store.outbound_raw(row["id"])
        recipients = _unique([*json.loads(row["to_json"]), *json.loads(row["cc_json"]), *json.loads(row["bcc_json"])])
        remote = [r for r in recipients if not self.is_local_recipient(r)]  # local ones got it the first time
        if raw is None or not remote:
            await self._finish(tenant_id, workspace_id, row, "failed", "not sent: nothing left to relay")
            return
        await self._pause_at("relaying")
        await self._relay(
            tenant_id, workspace_id, row, remote, raw, attempts=int(row["attempts"]) + 1, retry_until=row["retry_until"]
        )

    async def recover_sends(self) -> tuple[int, int]:
        """At daemon start: sends a previous run left with the relay become `unknown` (never resent);
        sends recorded but never handed over are due now. Returns (unknown, requeued)."""
        return await self.store.recover_deliveries(
            _iso(datetime.now(UTC)),
            "the daemon stopped while this message was being handed to the relay; it may have been delivered",
        )

    # ------------------------------------------------------------ replies, forwards, drafts

    async def _parent(self, inbox_id: str, message_id: str) -> dict[str, Any]:
        parent = await self.store.get_message(inbox_id, message_id)
        if parent is None:
            raise BackendError.not_found("message")
        return parent

    async def reply_outgoing(
        self,
        inbox_id: str,
        parent_id: str,
        *,
        reply_all: bool,
        plain_body: str | None,
        html_body: str | None,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        to: Sequence[str] = (),
        subject: str | None = None,
        verified: bool = False,
    ) -> Outgoing:
        """An Outgoing that continues the parent's thread with In-Reply-To and References set.

        Only the people the reply answers count as known: the parent's sender (or, replying to our own
        message, its recipients). Reply-all's other participants and any added cc/bcc follow the
        recipient rule like any other send.
        """
        parent = await self._parent(inbox_id, parent_id)
        own = {a.lower() for a in await self.store.inbox_addresses(inbox_id)}
        parent_to = _plain_addresses(json.loads(parent["to_json"]))
        parent_cc = _plain_addresses(json.loads(parent["cc_json"]))
        if parent["direction"] == "inbound":
            answered = _plain_addresses([parent["from_address"]] if parent["from_address"] else [])
        else:
            answered = parent_to
        recipients = list(to) if to else list(answered)
        extra_cc = list(cc)
        if reply_all:
            others = parent_to if parent["direction"] == "inbound" else []
            extra_cc = [*extra_cc, *others, *parent_cc]
        recipients = [r for r in _unique(recipients) if r.lower() not in own] or recipients
        taken = {r.lower() for r in recipients}
        extra_cc = [r for r in _unique(extra_cc) if r.lower() not in own and r.lower() not in taken]
        references = [*json.loads(parent["references_json"] or "[]")]
        if parent["message_id_hdr"]:
            references.append(parent["message_id_hdr"])
        return Outgoing(
            to=recipients,
            cc=extra_cc,
            bcc=list(bcc),
            subject=subject or reply_subject(parent["subject"]),
            plain_body=plain_body,
            html_body=html_body,
            verified=verified,
            thread_id=parent["thread_id"],
            in_reply_to=parent["message_id_hdr"],
            references=references[-50:],
            known=answered,
        )

    async def forward_outgoing(
        self,
        inbox_id: str,
        parent_id: str,
        *,
        to: Sequence[str],
        cc: Sequence[str],
        bcc: Sequence[str],
        plain_body: str | None,
        html_body: str | None,
        verified: bool,
    ) -> Outgoing:
        """An Outgoing quoting the original below the note, with its attachments re-attached."""
        parent = await self._parent(inbox_id, parent_id)
        sender = parent["from_address"] or ""
        from_header = f"{parent['from_name']} <{sender}>" if parent["from_name"] else sender
        quote = forward_quote(
            from_header=from_header,
            date=parent["sent_at"] or parent["received_at"] or parent["created_at"],
            subject=parent["subject"],
            to=json.loads(parent["to_json"]),
            body=parent["plain_body"] if parent["plain_body"] is not None else parent["html_body"],
        )
        plain = f"{plain_body}\n\n{quote}" if plain_body else quote
        html = None
        if html_body is not None or parent["html_body"] is not None:
            original_html = parent["html_body"] or f"<pre>{_escape(parent['plain_body'] or '')}</pre>"
            header_html = "<br>".join(_escape(line) for line in quote.split("\n")[:5])
            html = f"{html_body or _escape(plain_body or '')}<br><br>{header_html}<br><br>{original_html}"
        blobs = await self.store.attachment_blobs(inbox_id, parent_id)
        return Outgoing(
            to=list(to),
            cc=list(cc),
            bcc=list(bcc),
            subject=forward_subject(parent["subject"]),
            plain_body=plain,
            html_body=html,
            verified=verified,
            thread_id=parent["thread_id"],
            attachments=[OutboundAttachment(name, ctype, data) for name, ctype, data in blobs],
        )

    async def send_draft(
        self,
        inbox_id: str,
        draft_id: str,
        *,
        verified: bool,
        idempotency_key: str | None = None,
        expect_hash: str | None = None,
    ) -> SendResult:
        if idempotency_key is not None:  # a retried draft send: the draft is already gone
            previous = await self._previous_send(inbox_id, idempotency_key)
            if previous is not None:
                return replace(previous, draft_id=draft_id)
        outgoing = await self.draft_outgoing(inbox_id, draft_id, verified=verified)
        return await self.send(
            inbox_id, outgoing, idempotency_key=idempotency_key, draft_id=draft_id, expect_hash=expect_hash
        )

    async def draft_outgoing(self, inbox_id: str, draft_id: str, *, verified: bool) -> Outgoing:
        """The message a draft would send (a reply draft continues its thread)."""
        draft = await self.store.get_draft(inbox_id, draft_id)
        if draft is None:
            raise BackendError.not_found("draft")
        to, cc, bcc = (json.loads(draft[k]) for k in ("to_json", "cc_json", "bcc_json"))
        if draft["reply_to_message_id"]:
            outgoing = await self.reply_outgoing(
                inbox_id,
                draft["reply_to_message_id"],
                reply_all=False,
                plain_body=draft["plain_body"],
                html_body=draft["html_body"],
                cc=cc,
                bcc=bcc,
                to=to,
                subject=draft["subject"] or None,
                verified=verified,
            )
        else:
            if not to:
                raise BackendError.validation("to", "the draft has no recipient")
            outgoing = Outgoing(
                to=to,
                cc=cc,
                bcc=bcc,
                subject=draft["subject"] or "",
                plain_body=draft["plain_body"],
                html_body=draft["html_body"],
                verified=verified,
            )
        return outgoing


def _check_headers(outgoing: Outgoing) -> None:
    if len(outgoing.to) + len(outgoing.cc) + len(outgoing.bcc) > MAX_RECIPIENTS:
        raise BackendError.validation("to", f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
    try:
        check_header_value("subject", outgoing.subject)
        for name in ("to", "cc", "bcc"):
            check_header_values(name, getattr(outgoing, name))
    except UnsafeHeaderValue as exc:
        raise BackendError.validation(exc.argument, exc.reason) from None


def _plain_addresses(addresses: Sequence[str]) -> list[str]:
    """Stored addresses a reply may go to: bare addr-specs only (a quoted local part with spaces is text
    a stranger wrote, not a mailbox anyone should be sent to; the relay would refuse it anyway)."""
    return [a for a in addresses if a and ADDRESS_RE.match(a)]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unique(addresses: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for addr in addresses:
        if addr and addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _event(
    event_type: EventType, tenant_id: str, workspace_id: str | None, row: dict[str, Any]
) -> InboxEvent:
    message = event_message(row)
    return InboxEvent(
        event_type=event_type,
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        inbox_id=row["inbox_id"],
        message=message,
        thread={"thread_id": row["thread_id"], "subject": row.get("subject") or ""},
        has_attachments=bool(row.get("has_attachments")),
    )
