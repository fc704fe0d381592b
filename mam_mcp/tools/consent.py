"""Asking the person before mail leaves (MCP form elicitation), in both protocol eras.

Every send tool takes two resolver parameters (`mcp.server.mcpserver.resolve`):

- a *plan* resolver (one per tool: it takes that tool's arguments by name) that computes the
  exact message the send would put on the wire and checks the outbound policy; it never raises,
  errors travel inside the plan;
- a *consent* resolver built by `asking(plan_resolver)` that decides whether to ask, and asks.

On 2026-07-28 the question rides an `InputRequiredResult` and the client calls again with the
answer (resolvers re-run on each round; the SDK accepts an answer only for the exact question
shown, so a message that changed in between is asked about again). On 2025-11-25 and older the
question is a mid-call `elicitation/create`, sent here with a timeout. Either way the send itself
happens once, in the tool body (`finish_send`), after the answer, bound to the preview's hash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import (
    AcceptedElicitation,
    Elicit,
    ElicitationResult,
    Resolve,
)
from mcp_types import CallToolResult
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from mam_mcp.client.errors import MamError
from mam_mcp.toolkit.results import UntrustedFence, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.tools.outbound import SendRequest, check_policy, check_recipient_rule

if TYPE_CHECKING:
    from mam_mcp.client.models import SendPreview, SendResult

__all__ = ["Consent", "Plan", "SendApproval", "SendPlan", "asking", "finish_send", "plan_send", "runtime_of"]

BODY_SHOWN = 500  # characters of the body a person sees in the confirmation
_INPUT_REQUIRED_ERA = "2026-07-28"

Outcome = Literal["not-needed", "unavailable", "accepted", "declined", "cancelled", "timed-out", "failed"]


class SendApproval(BaseModel):
    """The confirmation form."""

    send: bool = Field(default=True, title="Send this email now", description="Decline to send nothing.")


@dataclass(slots=True)
class SendPlan:
    """What a send tool is about to do: the exact message, or the error that stops it."""

    request: SendRequest
    preview: SendPreview | None = None
    error: MamError | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The consent resolver's own answer when it did not (or could not) put a question to the client."""

    outcome: Outcome
    detail: str = ""


def runtime_of(ctx: Context[Any, Any]) -> Runtime:
    runtime: Runtime = ctx.mcp_server.runtime  # type: ignore[attr-defined]  # set by build_server
    return runtime


async def plan_send(ctx: Context[Any, Any], request: SendRequest) -> SendPlan:
    """The plan resolvers' shared body: preview the message and check the outbound policy."""
    rt = runtime_of(ctx)
    try:
        client = await rt.client()
        preview = await request.preview(client, rt.settings)
        await check_policy(client, rt.settings.outbound, request, preview)
    except MamError as error:
        return SendPlan(request, error=error)
    return SendPlan(request, preview=preview)


def asking(plan_resolver: Any) -> Any:
    """The consent resolver for a tool whose plan comes from `plan_resolver`."""

    async def ask_consent(ctx: Context[Any, Any], plan: SendPlan) -> Decision | Elicit[SendApproval]:
        return await _ask(ctx, plan)

    # Annotations set by hand: the resolver framework reads them, and a closure's names cannot be
    # resolved from strings.
    ask_consent.__annotations__ = {
        "ctx": Context,
        "plan": Annotated[SendPlan, Resolve(plan_resolver)],
        "return": Decision | Elicit[SendApproval],
    }
    ask_consent.__qualname__ = f"ask_consent[{getattr(plan_resolver, '__name__', 'send')}]"
    return ask_consent


Plan = SendPlan
Consent = ElicitationResult[SendApproval]


def _needs_asking(rt: Runtime, plan: SendPlan) -> str | None:
    """Why this send needs a person's yes, or None."""
    mode = rt.settings.confirm_sends
    if plan.preview is None or mode == "off":
        return None
    if mode == "all":
        return "this server asks before every send (confirm_sends=all)"
    new = plan.preview.new_recipients
    if new:
        return f"{len(new)} recipient{'s' if len(new) > 1 else ''} never wrote to this inbox"
    return None


def _can_ask(ctx: Context[Any, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means form support; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _input_required_era(ctx: Context[Any, Any]) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, _INPUT_REQUIRED_ERA)


async def _ask(ctx: Context[Any, Any], plan: SendPlan) -> Decision | Elicit[SendApproval]:
    rt = runtime_of(ctx)
    reason = _needs_asking(rt, plan)
    if reason is None or plan.preview is None:
        return Decision("not-needed")
    if not _can_ask(ctx):
        return Decision("unavailable")
    message = confirmation_text(plan.preview, f"Send this email? mam-mcp asks because {reason}.")
    if _input_required_era(ctx):
        # The client answers in a later request; an answer older than the timeout sends nothing.
        key = f"{plan.request.kind}:{plan.preview.content_hash}"
        asked_at = rt.consent_asked.get(key)
        answered = bool(ctx.input_responses)
        if asked_at is not None and answered and time.monotonic() - asked_at > rt.settings.confirm_timeout:
            rt.consent_asked.pop(key, None)
            return Decision("timed-out")
        if not answered or asked_at is None:
            rt.consent_asked[key] = time.monotonic()
        return Elicit(message, SendApproval)
    try:
        with anyio.move_on_after(rt.settings.confirm_timeout):
            outcome = await ctx.elicit(message, SendApproval)
            return Decision("accepted") if _approved(outcome) else Decision(
                "cancelled" if outcome.action == "cancel" else "declined"
            )
    except Exception as error:  # noqa: BLE001 - a client that fails to answer has not said yes
        return Decision("failed", type(error).__name__)
    return Decision("timed-out")


def _approved(outcome: ElicitationResult[SendApproval]) -> bool:
    return isinstance(outcome, AcceptedElicitation) and bool(getattr(outcome.data, "send", False))


def _decision(consent: Consent) -> Decision:
    """One answer from what the framework injected (our own Decision, or the client's reply)."""
    if isinstance(consent, AcceptedElicitation):
        data = consent.data
        if isinstance(data, Decision):
            return data
        return Decision("accepted") if isinstance(data, SendApproval) and data.send else Decision("declined")
    return Decision("cancelled" if consent.action == "cancel" else "declined")


def confirmation_text(preview: SendPreview, heading: str) -> str:
    """What the person reads before saying yes: sender, every recipient, subject, the start of the
    body, attachment names, and what is new."""
    new = {a.lower() for a in preview.new_recipients}

    def people(addresses: list[str]) -> str:
        return ", ".join(f"{a} (new)" if a.lower() in new else a for a in addresses)

    sender = f"{preview.from_name} <{preview.from_address}>" if preview.from_name else preview.from_address
    lines = [heading, "", f"From: {sender}", f"To: {people(preview.to)}"]
    if preview.cc:
        lines.append(f"Cc: {people(preview.cc)}")
    if preview.bcc:
        lines.append(f"Bcc: {people(preview.bcc)}")
    lines.append(f"Subject: {preview.subject}")
    if preview.attachments:
        lines.append("Attachments: " + ", ".join(a.filename for a in preview.attachments))
    body = preview.plain_body
    if not (body or "").strip() and preview.html_body:
        from mam_mcp.toolkit.presentation import html_to_text

        body = html_to_text(preview.html_body)
    body = body or ""
    shown = body[:BODY_SHOWN]
    lines += ["", shown + (f"\n[... {len(body) - BODY_SHOWN} more characters]" if len(body) > BODY_SHOWN else "")]
    if preview.new_recipients:
        lines += ["", "Never wrote to this inbox: " + ", ".join(preview.new_recipients)]
    lines += ["", f"Approval binds to exactly this message ({preview.content_hash[:12]})."]
    return "\n".join(lines)


async def finish_send(
    rt: Runtime, plan: SendPlan, consent: Consent, *, verified: bool
) -> tuple[SendResult | None, CallToolResult | None]:
    """Send after consent, or say plainly why nothing was sent.

    Returns (result, None) when the message went to the backend, or (None, tool result) when it was
    not sent (declined, timed out, held for a person's approval). Errors are raised as MamError.
    """
    if plan.error is not None:
        raise plan.error
    assert plan.preview is not None
    decision = _decision(consent)
    preview, request = plan.preview, plan.request
    client = await rt.client()
    if decision.outcome == "accepted":
        # The person saw every recipient, new ones included: that is the consent the rule asks for.
        result = await request.send(client, verified=True, expect_hash=_binding(rt, preview))
        return result, None
    if decision.outcome in ("declined", "cancelled", "timed-out", "failed"):
        return None, _not_sent(decision, preview)
    if decision.outcome == "unavailable" and rt.settings.confirm_sends == "all":
        return None, await _hold(rt, request, preview)
    # No question was needed, or none could be put (and the mode allows the agent's own `verified`).
    check_recipient_rule(preview, verified=verified)
    return await request.send(client, verified=verified, expect_hash=_binding(rt, preview)), None


def _binding(rt: Runtime, preview: SendPreview) -> str | None:
    """The local backend refuses a send that is no longer the previewed message; the hosted API cannot."""
    return preview.content_hash if rt.settings.mode == "local" else None


_NOT_SENT = {
    "declined": "the person declined this email",
    "cancelled": "the person dismissed the confirmation",
    "timed-out": "the person did not answer the confirmation in time",
    "failed": "the confirmation could not be shown",
}


def _not_sent(decision: Decision, preview: SendPreview) -> CallToolResult:
    why = _NOT_SENT[decision.outcome]
    text = (
        f"NOT SENT: {why}; nothing was sent. This is the person's decision, not an error: do not retry "
        "the same send. Ask the user what they want instead."
    )
    return ok(
        text,
        {"sent": False, "consent": decision.outcome, "to": preview.to, "cc": preview.cc, "bcc": preview.bcc},
    )


async def _hold(rt: Runtime, request: SendRequest, preview: SendPreview) -> CallToolResult:
    client = await rt.client()
    draft = await request.hold(client, preview)
    command = f"mam-mcp drafts approve {draft.id} --inbox {request.inbox_id}"
    where = " or approve it in the local console" if rt.settings.mode == "local" else ""
    extra = ""
    if request.kind == "forward" and preview.attachments:
        names = ", ".join(a.filename for a in preview.attachments)
        extra = f" Drafts carry no attachments: the forwarded files ({names}) are not in it."
    fence = UntrustedFence()
    kept = (
        f"draft {draft.id} stays in inbox {request.inbox_id}"
        if request.kind == "draft"
        else f"the message was saved as draft {draft.id} in inbox {request.inbox_id}"
    )
    text = (
        f"NOT SENT YET: this server asks a person before every send and this host cannot ask (no elicitation), "
        f"so {kept}; it awaits human approval. The person approves it with `{command}`{where}. "
        f"Do not try to send it yourself.{extra}"
    )
    if preview.new_recipients:
        text += " New recipients:\n" + fence.wrap(", ".join(preview.new_recipients))
    return ok(
        text,
        {"sent": False, "held": True, "draft_id": draft.id, "inbox_id": request.inbox_id, "approve_command": command},
    )
