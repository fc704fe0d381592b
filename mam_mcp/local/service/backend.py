"""Composition root of the local backend: store, keys, outbound path and event fan-out.

The REST app and the SMTP ingress both go through `LocalBackend`; the event hub (WebSockets)
registers as an event sink. A failing sink is logged and skipped: it never breaks a send or an
SMTP accept. Events are built here (events/model.py); replies, forwards and drafts are composed
in compose.py.

Webhooks are not a sink: their deliveries are rows of the store's outbox. For a received mail
they are written in the message's own transaction (`ingest` hands the store a builder that turns
each stored copy into its event and that event's webhook bodies), so a crash leaves the message
with all its deliveries or neither; for a sent message, right after its outcome is recorded.
Outbox listeners (the dispatcher's wake-up) hear when new rows are committed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio

from mam_mcp.headers import UnsafeHeaderValue, check_header_value
from mam_mcp.local.auth.keys import KeyRing
from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.crash import crash_point
from mam_mcp.local.dns import MxResolver, TxtResolver, resolve_mx, resolve_txt
from mam_mcp.local.events.model import MailEvent, message_event
from mam_mcp.local.mime.build import build_outbound, new_message_id
from mam_mcp.local.mime.source import RawMessage
from mam_mcp.local.relay.smtp_relay import RelayOutcomeUnknown, RelayRefused
from mam_mcp.local.service import compose
from mam_mcp.local.service.accounts import AccountService
from mam_mcp.local.service.admin import AdminService
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.service.idempotency import SEND_FINGERPRINT_FORMAT, IdempotentRequests
from mam_mcp.local.service.mailbox import MailboxService
from mam_mcp.local.service.outgoing import (
    Outgoing,
    SendOutcome,
    SendPreview,
    check_headers,
    content_hash,
    unique_addresses,
)
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.local.store.mail import InboundCopy
from mam_mcp.local.store.outbox import OutboxEntry
from mam_mcp.local.timestamps import iso_from_epoch, iso_utc, utc_now_iso

__all__ = ["EventSink", "LocalBackend", "OutboundRelay", "WebhookTarget"]

logger = logging.getLogger(__name__)

EventSink = Callable[[MailEvent], Awaitable[None] | None]
# A queued send is never relayed later than its last scheduled attempt plus this much (or one base
# interval when longer): time for a busy machine, not for a daemon that was stopped meanwhile.
_RETRY_SLACK_SECONDS = 60.0


class OutboundRelay(Protocol):
    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        """Hand a message to the relay; raises RelayRefused(permanent, message), or
        RelayOutcomeUnknown when the connection failed after the message went over."""


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _AttemptOutcome:
    """What one delivery attempt came to."""

    status: str
    reply: str | None = None
    next_attempt_at: str | None = None
    retry_until: str | None = None
    refused: bool = False  # the relay said no for good (5xx): RELAY_REJECTED


def _subscribed(webhook: dict[str, Any], event_type: str) -> bool:
    """A webhook row (`events_json`) wants this event type (no list: every type)."""
    events = json.loads(webhook["events_json"]) if webhook.get("events_json") else []
    return not events or event_type in events


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
        self.requests = IdempotentRequests(store.requests)  # Idempotency-Key of the create routes
        # What the REST routes call (api/ never reaches the store itself):
        self.accounts = AccountService(store, self.keys)
        self.mailbox = MailboxService(store)
        self.admin = AdminService(config, store)
        self._sinks: list[EventSink] = []
        # Idempotency-Key -> [lock, holders]; an entry lives while anyone holds or awaits its lock.
        self._send_locks: dict[tuple[str, str], list[Any]] = {}
        self._retry_listeners: list[Callable[[], None]] = []
        self._outbox_listeners: list[Callable[[], None]] = []

    @property
    def smtp_port(self) -> int:
        return self.config.smtp_port

    # ------------------------------------------------------------ ingress, events, keys (SMTP, hub, webhooks)

    def add_event_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    async def emit(self, event: MailEvent) -> None:
        for sink in list(self._sinks):
            try:
                result = sink(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("event sink failed for %s %s", event.event_type, event.event_id)

    def add_outbox_listener(self, listener: Callable[[], None]) -> None:
        """`listener()` is called when webhook deliveries were committed to the outbox (the dispatcher wakes)."""
        self._outbox_listeners.append(listener)

    def _outbox_changed(self) -> None:
        for listener in list(self._outbox_listeners):
            listener()

    async def ingest(self, raw: RawMessage, mail_from: str, rcpt_tos: Sequence[str]) -> list[MailEvent]:
        """Store mail received over SMTP with its webhook deliveries (durably, one transaction) and
        emit `message.received` per inbox. A retry of a mail already stored (store/mail.py,
        `DEDUP_WINDOW_SECONDS`) stores and emits nothing new. `raw` is bytes, or a large message SMTP
        spooled to a file (read, never closed, here)."""
        built: dict[str, MailEvent] = {}  # message id -> its event; a job run twice overwrites its own
        queued = False

        def outbox(copy: InboundCopy, webhooks: Sequence[dict[str, Any]]) -> list[OutboxEntry]:
            nonlocal queued
            event = message_event(
                "message.received", tenant_id=copy.inbox.tenant_id, workspace_id=copy.inbox.workspace_id,
                row=copy.message, thread_subject=copy.thread_subject, timestamp=copy.message["at"],
            )  # fmt: skip
            built[copy.message["id"]] = event
            wanted = [w["id"] for w in webhooks if _subscribed(w, event.event_type)]
            if not wanted:
                return []
            queued = True
            body = event.webhook_body()
            return [OutboxEntry(webhook_id, event.event_id, event.event_type, body) for webhook_id in wanted]

        copies = await self.store.mail.insert_inbound(raw, mail_from=mail_from, rcpt_tos=rcpt_tos, outbox=outbox)
        crash_point("ingest.after_commit")
        if rcpt_tos and not copies:
            # Every recipient vanished between RCPT and DATA (inbox deleted): refuse, never 250 into nowhere.
            raise LookupError("no local inbox for any recipient")
        if any(copy.duplicate for copy in copies):
            logger.info("smtp: a mail received before was sent again (a sender's retry): stored once")
        events = [built[copy.message["id"]] for copy in copies if not copy.duplicate]
        if queued:
            self._outbox_changed()
        for event in events:
            await self.emit(event)
        return events

    def is_local_recipient(self, address: str) -> bool:
        return self.store.accounts.inbox_for_address(address) is not None

    def authenticate(self, key: str) -> KeyScope | None:
        return self.keys.authenticate(key)

    def inbox_owner(self, inbox_id: str) -> tuple[str, str | None, str] | None:
        """(tenant_id, workspace_id, email) of an inbox, or None."""
        record = self.store.accounts.inbox_record(inbox_id)
        return (record.tenant_id, record.workspace_id, record.email) if record else None

    async def webhook_targets(self, event: MailEvent) -> list[WebhookTarget]:
        """Active webhooks covering the event's inbox and subscribed to its type."""
        if not self.store.admin.may_have_webhooks():
            return []  # the common case with no webhooks: no database read on the SMTP accept path
        rows = await self.store.admin.webhooks_for_event(event.tenant_id, event.workspace_id, event.inbox_id)
        return [
            WebhookTarget(row["id"], row["url"], row["secret"], tuple(json.loads(row["events_json"])))
            for row in rows
            if _subscribed(row, event.event_type)
        ]

    async def webhook_destination(self, webhook_id: str) -> tuple[str, str] | None:
        """(URL, secret) of a webhook now, or None when it was deleted or disabled (the dispatcher signs with it)."""
        row = await self.store.admin.get_webhook(webhook_id)
        return (str(row["url"]), str(row["secret"])) if row is not None and row["is_active"] else None

    async def record_webhooks(self, event: MailEvent) -> None:
        """Record the event's webhook deliveries in the outbox (their own transaction); durable when this returns."""
        targets = await self.webhook_targets(event)
        if not targets:
            return
        body = event.webhook_body()
        await self.store.outbox.add([OutboxEntry(t.id, event.event_id, event.event_type, body) for t in targets])
        self._outbox_changed()

    # ------------------------------------------------------------ ephemeral inboxes

    async def delete_expired_inboxes(self, *, limit: int = 50) -> list[str]:
        """Delete up to `limit` inboxes whose time to live ran out, with their mail, drafts, lists,
        webhooks and keys (as DELETE /v1/inboxes/:id does); returns their ids."""
        deleted = await self.store.delete_expired_inboxes(utc_now_iso(), limit=limit)
        if deleted:
            gone = set(deleted)
            self.keys.forget(lambda key: key.inbox_id in gone)
            logger.info("deleted %d expired inbox(es)", len(deleted))
        return deleted

    async def housekeeping(self, *, batch: int = 500, max_batches: int = 20) -> int:
        """Delete webhook deliveries that ended more than `delivery_log_days` ago (bounded: at most
        `max_batches` writes of `batch` rows; a larger backlog waits for the next run) and inbound
        digests past the dedup window. Returns the number of deliveries deleted."""
        cutoff = iso_from_epoch(time.time() - self.config.delivery_log_days * 86_400)
        total = 0
        for _ in range(max_batches):
            deleted = await self.store.outbox.prune_finished(cutoff, limit=batch)
            total += deleted
            if deleted < batch:
                break
        await self.store.forget_old_digests()
        if total:
            logger.info("deleted %d webhook deliveries older than %g days", total, self.config.delivery_log_days)
        return total

    # ------------------------------------------------------------ outbound

    async def send(
        self,
        inbox_id: str,
        outgoing: Outgoing,
        *,
        idempotency_key: str | None = None,
        request_fingerprint: str | None = None,
        draft_id: str | None = None,
        expect_hash: str | None = None,
    ) -> SendOutcome:
        """Validate, store (with idempotency record and draft deletion), then deliver.

        With `expect_hash`, the message is sent only if it is still exactly what a preview with that
        hash showed (a person approved that content); otherwise CONTENT_CHANGED and nothing is sent.
        A key already used answers with the first send's outcome, unless `request_fingerprint` shows
        a different request: IDEMPOTENCY_KEY_REUSED, nothing sent.
        """
        check_headers(outgoing)
        if idempotency_key is None:
            return await self._send_once(inbox_id, outgoing, None, None, draft_id, expect_hash)
        key = (inbox_id, idempotency_key)
        entry = self._send_locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                previous = await self.previous_send(inbox_id, idempotency_key, request_fingerprint)
                if previous is not None:
                    return replace(previous, draft_id=draft_id)
                return await self._send_once(
                    inbox_id, outgoing, idempotency_key, request_fingerprint, draft_id, expect_hash
                )
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._send_locks.pop(key, None)

    async def previous_send(
        self, inbox_id: str, idempotency_key: str, request_fingerprint: str | None
    ) -> SendOutcome | None:
        """The outcome of the send made with this key, None if there was none; IDEMPOTENCY_KEY_REUSED
        if it was made by a different request (a record without a fingerprint, or of another
        fingerprint format, answers any request with its key)."""
        row = await self.store.mail.idempotent_message(inbox_id, idempotency_key)
        if row is None:
            return None
        recorded = row["idempotency_fingerprint"]
        if (
            recorded is not None
            and request_fingerprint is not None
            and recorded.startswith(SEND_FINGERPRINT_FORMAT)
            and request_fingerprint.startswith(SEND_FINGERPRINT_FORMAT)
            and recorded != request_fingerprint
        ):
            # Answering with the first send would tell the caller a different mail went out.
            raise BackendError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for a different send; nothing was sent. Use a new key for a"
                " new message",
            )
        delivery = await self.store.sends.delivery(row["id"]) or {}
        return SendOutcome(
            row["id"], row["thread_id"], row["status"], row["message_id_hdr"] or "",
            relay_reply=delivery.get("last_reply"), next_attempt_at=delivery.get("next_attempt_at"),
            retry_until=delivery.get("retry_until") if row["status"] == "queued" else None,
        )  # fmt: skip

    async def new_recipients(self, inbox_id: str, recipients: Sequence[str], known: Sequence[str] = ()) -> list[str]:
        """The recipients that need consent: never wrote to this inbox, not local, not answered by this reply."""
        answered = {a.lower() for a in known}
        return [
            rcpt
            for rcpt in unique_addresses(recipients)
            if rcpt.lower() not in answered
            and not self.is_local_recipient(rcpt)
            and not await self.store.mail.has_correspondent(inbox_id, rcpt)
        ]

    async def preview(self, inbox_id: str, outgoing: Outgoing) -> SendPreview:
        """What sending `outgoing` from this inbox would put on the wire, and who is new; sends nothing."""
        check_headers(outgoing)
        record = self.store.accounts.inbox_record(inbox_id)
        inbox = await self.store.accounts.get_inbox(inbox_id)
        if record is None or inbox is None:
            raise BackendError.not_found("inbox")
        if not outgoing.to:
            raise BackendError.validation("to", "at least one recipient is required")
        from_address = await self.store.accounts.primary_address(inbox_id) or record.email
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
        request_fingerprint: str | None,
        draft_id: str | None,
        expect_hash: str | None = None,
    ) -> SendOutcome:
        record = self.store.accounts.inbox_record(inbox_id)
        if record is None:
            raise BackendError.not_found("inbox")
        recipients = unique_addresses([*outgoing.to, *outgoing.cc, *outgoing.bcc])
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
            row = await self.store.mail.insert_outbound(
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
                idempotency_fingerprint=request_fingerprint,
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
        return SendOutcome(
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
    ) -> _AttemptOutcome:
        """Hand a just-recorded send over: local inboxes at once, the rest to the relay (or captured)."""
        local = [r for r in recipients if self.is_local_recipient(r)]
        remote = [r for r in recipients if r not in local]
        handed_over = bool(local) or (bool(remote) and self.relay is not None)
        if handed_over:
            await self.store.sends.claim_delivery(row["id"])  # relaying: a crash from here on means unknown
            await self._pause_at("relaying")
        if local:
            try:
                await self.ingest(raw, row["from_address"], local)
            except Exception as exc:  # noqa: BLE001 - the message must not stay in flight forever
                logger.warning("local delivery of %s failed: %s", row["id"], type(exc).__name__)
                await self.store.sends.finish_delivery(row["id"], "failed", f"local delivery failed: {type(exc).__name__}")
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
    ) -> _AttemptOutcome:
        """One attempt with the relay (the send is `relaying`): its outcome, recorded."""
        assert self.relay is not None
        try:
            await self.relay.send(row["from_address"], remote, raw)
        except RelayRefused as exc:
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
    ) -> _AttemptOutcome:
        await self.store.sends.finish_delivery(row["id"], status, reply)
        row["status"] = status
        if status in ("sent", "delivered", "captured", "partial"):
            sent = message_event(
                "message.sent", tenant_id=tenant_id, workspace_id=workspace_id, row=row,
                thread_subject=row.get("subject") or "",
            )  # fmt: skip
            try:
                await self.record_webhooks(sent)
            except Exception:  # the send itself is done and recorded: its webhooks are what is lost
                logger.exception("webhooks: could not record the deliveries of %s %s", sent.event_type, sent.event_id)
            await self.emit(sent)
        return _AttemptOutcome(status, reply)

    async def _retry_later(
        self,
        tenant_id: str,
        workspace_id: str | None,
        row: dict[str, Any],
        reply: str,
        attempts: int,
        retry_until: str | None,
    ) -> _AttemptOutcome:
        """A temporary failure: queued again with backoff, or failed once the attempts are used up."""
        base = self.config.send_retry_base_seconds
        if attempts >= self.config.send_max_attempts:
            return await self._finish(
                tenant_id, workspace_id, row, "failed", f"{reply} (gave up after {attempts} attempts)"
            )
        now = datetime.now(UTC)
        slack = max(base, _RETRY_SLACK_SECONDS)
        if retry_until is None:  # the last attempt's time, plus slack for a busy machine (a base interval, >= 60 s)
            last = sum(base * 3**n for n in range(self.config.send_max_attempts - 1)) + slack
            retry_until = iso_utc(now + timedelta(seconds=last))
        next_at = now + timedelta(seconds=base * 3 ** (attempts - 1))
        next_attempt_at = iso_utc(next_at)
        # Backoff counts from each attempt's end: slow attempts (a relay timing out) push the schedule
        # later than the first estimate; the window follows, so a scheduled attempt is never dropped.
        retry_until = max(retry_until, iso_utc(next_at + timedelta(seconds=slack)))
        await self.store.sends.schedule_retry(
            row["id"], next_attempt_at=next_attempt_at, retry_until=retry_until, reply=reply
        )
        for listener in list(self._retry_listeners):
            listener()
        return _AttemptOutcome("queued", reply, next_attempt_at, retry_until)

    async def retry_due_sends(self) -> float | None:
        """Try each queued send whose retry is due (the daemon's retry worker calls this).

        Returns seconds until the next retry is due, or None when none is scheduled.
        """
        for row in await self.store.sends.due_deliveries(iso_utc(datetime.now(UTC))):
            await self._retry(row)
        upcoming = await self.store.sends.next_delivery_at()
        if upcoming is None:
            return None
        wait = (datetime.fromisoformat(upcoming.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
        return max(wait, 0.0)

    async def _retry(self, row: dict[str, Any]) -> None:
        record = self.store.accounts.inbox_record(row["inbox_id"])
        tenant_id, workspace_id = (record.tenant_id, record.workspace_id) if record else ("", None)
        if not await self.store.sends.claim_delivery(row["id"]):
            return  # no longer queued
        reply = row["last_reply"] or "temporary failure"
        expired = row["retry_until"] is not None and row["retry_until"] < iso_utc(datetime.now(UTC))
        if record is None or row["deleted"] or self.relay is None or expired:
            why = (
                "the message was deleted while queued" if row["deleted"] or record is None
                else "no relay is configured any more" if self.relay is None
                else f"the retries ended at {row['retry_until']} while the daemon was not running"
            )  # fmt: skip
            await self._finish(tenant_id, workspace_id, row, "failed", f"not sent: {why}; last answer: {reply}")
            return
        raw = await self.store.sends.outbound_raw(row["id"])
        recipients = unique_addresses([*json.loads(row["to_json"]), *json.loads(row["cc_json"]), *json.loads(row["bcc_json"])])
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
        return await self.store.sends.recover_deliveries(
            iso_utc(datetime.now(UTC)),
            "the daemon stopped while this message was being handed to the relay; it may have been delivered",
        )

    # ------------------------------------------------------------ replies, forwards, drafts (compose.py)

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
        """The Outgoing of a reply to a stored message (see `compose.reply_outgoing`)."""
        return await compose.reply_outgoing(
            self.store, inbox_id, parent_id, reply_all=reply_all, plain_body=plain_body, html_body=html_body,
            cc=cc, bcc=bcc, to=to, subject=subject, verified=verified,
        )  # fmt: skip

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
        """The Outgoing of a forward of a stored message (see `compose.forward_outgoing`)."""
        return await compose.forward_outgoing(
            self.store, inbox_id, parent_id, to=to, cc=cc, bcc=bcc, plain_body=plain_body, html_body=html_body,
            verified=verified,
        )  # fmt: skip

    async def draft_outgoing(self, inbox_id: str, draft_id: str, *, verified: bool) -> Outgoing:
        """The message a draft would send (see `compose.draft_outgoing`)."""
        return await compose.draft_outgoing(self.store, inbox_id, draft_id, verified=verified)

    async def send_draft(
        self,
        inbox_id: str,
        draft_id: str,
        *,
        verified: bool,
        idempotency_key: str | None = None,
        request_fingerprint: str | None = None,
        expect_hash: str | None = None,
    ) -> SendOutcome:
        if idempotency_key is not None:  # a retried draft send: the draft is already gone
            previous = await self.previous_send(inbox_id, idempotency_key, request_fingerprint)
            if previous is not None:
                return replace(previous, draft_id=draft_id)
        outgoing = await self.draft_outgoing(inbox_id, draft_id, verified=verified)
        return await self.send(
            inbox_id,
            outgoing,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            draft_id=draft_id,
            expect_hash=expect_hash,
        )
