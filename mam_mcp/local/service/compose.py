"""Composing replies, forwards and draft sends: the `Outgoing` each one sends, from stored mail.

A reply continues its parent's thread (In-Reply-To, References) and knows whom it answers; a
forward quotes the original under the note and re-attaches its attachments; a draft becomes the
message it describes (a reply draft continues its thread).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mam_mcp.local.mime.build import OutboundAttachment, forward_quote, forward_subject, reply_subject
from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.service.outgoing import Outgoing, plain_addresses, unique_addresses
from mam_mcp.local.store.email_store import EmailStore

__all__ = ["draft_outgoing", "forward_outgoing", "reply_outgoing"]


async def reply_outgoing(
    store: EmailStore,
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
    parent = await _parent(store, inbox_id, parent_id)
    own = {a.lower() for a in await store.accounts.inbox_addresses(inbox_id)}
    parent_to = plain_addresses(json.loads(parent["to_json"]))
    parent_cc = plain_addresses(json.loads(parent["cc_json"]))
    if parent["direction"] == "inbound":
        answered = plain_addresses([parent["from_address"]] if parent["from_address"] else [])
    else:
        answered = parent_to
    recipients = list(to) if to else list(answered)
    extra_cc = list(cc)
    if reply_all:
        others = parent_to if parent["direction"] == "inbound" else []
        extra_cc = [*extra_cc, *others, *parent_cc]
    recipients = [r for r in unique_addresses(recipients) if r.lower() not in own] or recipients
    taken = {r.lower() for r in recipients}
    extra_cc = [r for r in unique_addresses(extra_cc) if r.lower() not in own and r.lower() not in taken]
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
    store: EmailStore,
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
    parent = await _parent(store, inbox_id, parent_id)
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
    blobs = await store.mail.attachment_blobs(inbox_id, parent_id)
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


async def draft_outgoing(store: EmailStore, inbox_id: str, draft_id: str, *, verified: bool) -> Outgoing:
    """The message a draft would send (a reply draft continues its thread)."""
    draft = await store.mail.get_draft(inbox_id, draft_id)
    if draft is None:
        raise BackendError.not_found("draft")
    to, cc, bcc = (json.loads(draft[k]) for k in ("to_json", "cc_json", "bcc_json"))
    if draft["reply_to_message_id"]:
        outgoing = await reply_outgoing(
            store,
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


async def _parent(store: EmailStore, inbox_id: str, message_id: str) -> dict[str, Any]:
    parent = await store.mail.get_message(inbox_id, message_id)
    if parent is None:
        raise BackendError.not_found("message")
    return parent


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
