"""The drafts toolset (default): compose across turns, let a human approve, then send."""

from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.toolkit.arguments import (
    Body,
    DraftId,
    HtmlBody,
    InboxId,
    MessageId,
    OptionalRecipients,
    Subject,
    Verified,
)
from mam_mcp.toolkit.results import UNTRUSTED_NOTE, UntrustedFence, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.send_status import send_outcome_data, send_outcome_text
from mam_mcp.toolkit.toolsets import DELETE, READ, SEND, UPDATE, WRITE, Toolset
from mam_mcp.tools.consent import Consent, SendPlan, asking, finish_send, plan_send
from mam_mcp.tools.outbound import SendRequest

if TYPE_CHECKING:
    from mam_mcp.client.models import Draft

toolset = Toolset("drafts", "Drafts for human approval before sending.", default=True)


def _draft_data(draft: "Draft") -> dict[str, Any]:
    return {
        "id": draft.id,
        "inbox_id": draft.inbox_id,
        "to": draft.to,
        "cc": draft.cc,
        "bcc": draft.bcc,
        "subject": draft.subject,
        "body": draft.plain_body,
        "html_body": draft.html_body,
        "reply_to_message_id": draft.reply_to_message_id,
        "updated_at": draft.updated_at or draft.created_at,
    }


def _draft_lines(draft: "Draft") -> str:
    to = ", ".join(draft.to) or "(the replied-to sender)" if draft.reply_to_message_id else ", ".join(draft.to) or "(none yet)"
    extra = "".join(f"\n{name}: {', '.join(v)}" for name, v in (("Cc", draft.cc), ("Bcc", draft.bcc)) if v)
    return f"To: {to}{extra}\nSubject: {draft.subject or '(none)'}"


def _draft_text(verb: str, draft: "Draft") -> str:
    # A draft's subject and recipients may come from the mail it answers: they stay fenced.
    kind = f"reply to {draft.reply_to_message_id}" if draft.reply_to_message_id else "new message"
    return f"{verb} draft {draft.id} ({kind}). Nothing was sent. {UNTRUSTED_NOTE}\n" + UntrustedFence().wrap(
        _draft_lines(draft)
    )


@toolset.tool(title="Create draft", annotations=WRITE)
async def create_draft(
    rt: Runtime,
    inbox_id: InboxId,
    to: OptionalRecipients | None = None,
    subject: Subject | None = None,
    body: Body | None = None,
    html_body: HtmlBody | None = None,
    cc: OptionalRecipients | None = None,
    bcc: OptionalRecipients | None = None,
    reply_to_message_id: Annotated[
        MessageId | None, Field(description="Make it an in-thread reply to this message.")
    ] = None,
    verified: Verified = False,
) -> CallToolResult:
    """Save an email as a draft for a human to review; nothing is sent. Use this instead of sending when approval is wanted."""
    client = await rt.client()
    draft = await client.drafts.create(
        inbox_id, to=to, cc=cc, bcc=bcc, subject=subject, plain_body=body, html_body=html_body,
        reply_to_message_id=reply_to_message_id,
    )
    data = {**_draft_data(draft), "verified": verified}
    text = _draft_text("Created", draft)
    if verified:  # the API takes `verified` only when the draft is sent; nothing stores it with the draft
        text += " Pass verified=true to send_draft as well when it is approved."
    return ok(text, data)


@toolset.tool(title="Update draft", annotations=UPDATE)
async def update_draft(
    rt: Runtime,
    inbox_id: InboxId,
    draft_id: DraftId,
    to: OptionalRecipients | None = None,
    subject: Subject | None = None,
    body: Body | None = None,
    html_body: HtmlBody | None = None,
    cc: OptionalRecipients | None = None,
    bcc: OptionalRecipients | None = None,
) -> CallToolResult:
    """Change a draft; only the fields given change."""
    client = await rt.client()
    draft = await client.drafts.update(
        inbox_id, draft_id, to=to, cc=cc, bcc=bcc, subject=subject, plain_body=body, html_body=html_body
    )
    return ok(_draft_text("Updated", draft), _draft_data(draft))


@toolset.tool(title="List drafts", annotations=READ)
async def list_drafts(rt: Runtime, inbox_id: InboxId) -> CallToolResult:
    """List the drafts waiting in an inbox."""
    client = await rt.client()
    drafts = (await client.drafts.list(inbox_id)).drafts
    items = [_draft_data(d) for d in drafts]
    lines = [f"- {d['id']} to {', '.join(d['to']) or '?'}: {d['subject'] or '(no subject)'}" for d in items]
    text = f"{len(items)} draft(s)" + (f". {UNTRUSTED_NOTE}\n" + UntrustedFence().wrap("\n".join(lines)) if lines else ".")
    return ok(text, {"drafts": items, "untrusted": True})


async def _plan_send_draft(ctx: Context[Any, Any], inbox_id: str, draft_id: str) -> SendPlan:
    return await plan_send(ctx, SendRequest("draft", inbox_id, draft_id=draft_id))


@toolset.tool(title="Send draft", annotations=SEND)
async def send_draft(
    rt: Runtime,
    inbox_id: InboxId,
    draft_id: DraftId,
    verified: Verified = False,
    plan: Annotated[SendPlan, Resolve(_plan_send_draft)] = None,  # type: ignore[assignment]
    consent: Annotated[Consent, Resolve(asking(_plan_send_draft))] = None,  # type: ignore[assignment]
) -> CallToolResult:
    """Send a draft (after human approval) and delete it. Replies stay in their thread. Cannot be undone."""
    result, stopped = await finish_send(rt, plan, consent, verified=verified)
    if result is None:
        return stopped  # type: ignore[return-value]
    status = result.status or "sent"
    if status == "captured":
        text = (
            f"NOT SENT to the outside world: the local backend captured draft {draft_id} as message {result.id} "
            "(no SMTP relay configured). The draft was removed."
        )
    elif status in ("sent", "delivered"):
        text = f"Sent draft {draft_id} (status {status}) as message {result.id} in thread {result.thread_id}; the draft was removed."
    else:  # the message is recorded with its status; the draft went with the recording
        text = f"{send_outcome_text(f'Sent draft {draft_id}', result)} The draft was removed when the message was recorded."
    return ok(text, {**send_outcome_data(result), "draft_id": result.draft_id or draft_id})


@toolset.tool(title="Delete draft", annotations=DELETE)
async def delete_draft(rt: Runtime, inbox_id: InboxId, draft_id: DraftId) -> CallToolResult:
    """Discard a draft without sending it."""
    client = await rt.client()
    await client.drafts.delete(inbox_id, draft_id)
    return ok(f"Deleted draft {draft_id}; nothing was sent.", {"id": draft_id, "deleted": True})


__all__ = ["toolset"]
