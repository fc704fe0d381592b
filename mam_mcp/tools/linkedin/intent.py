"""The linkedin toolset (default, hosted only): intent searches, signals, profiles, connection requests, DMs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import AfterValidator, Field

from mam_mcp.client.linkedin_input import Cadence, Intent, Lookback, SignalKind, check_connection_note
from mam_mcp.toolkit.results import UntrustedFence, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import READ, SEND, WRITE, Toolset
from mam_mcp.tools.linkedin.access import linkedin_api, resolve_session, with_progress
from mam_mcp.tools.linkedin.arguments import (
    Id,
    IntentDescription,
    ProfileRef,
    ProfileUrl,
    SessionFor,
    SessionId,
    plain_id,
)
from mam_mcp.tools.linkedin.presentation import (
    UNTRUSTED_LINKEDIN,
    author_line,
    fenced,
    known_fields,
    match_data,
    one_line,
    search_text,
    signal_data,
    signal_line,
)

if TYPE_CHECKING:
    from mam_mcp.client.linkedin_models import SearchRun

toolset = Toolset(
    "linkedin",
    "LinkedIn intent: searches and signals with a firing rule, profiles, connection requests, DMs.",
    default=True,
    hosted_only=True,
)


@toolset.tool(title="Search LinkedIn posts by intent", annotations=READ)
async def linkedin_search_posts(
    rt: Runtime,
    query: Annotated[str, Field(min_length=2, max_length=200, description="LinkedIn keyword pre-filter.")],
    intent_description: IntentDescription,
    lookback: Lookback = "past-week",
    min_intent: Intent | None = None,
    limit: Annotated[int, Field(ge=1, le=100)] = 25,
    session_id: SessionId = None,
    ctx: Context | None = None,
) -> CallToolResult:
    """One-shot intent search (10-15 s): LinkedIn posts classified by your firing rule. Returns authors (role, company, profile URL) and why each matched, or why nothing did."""
    api = await linkedin_api(rt)

    async def run() -> SearchRun:
        return await api.searches.run(
            query=query,
            intent_description=intent_description,
            lookback=lookback,
            min_intent=min_intent,
            limit=limit,
            session_id=session_id,
        )

    result = await with_progress(ctx, "searching LinkedIn", run)
    text, data = search_text(result, UntrustedFence())
    return ok(text, data)


@toolset.tool(title="Create LinkedIn signal", annotations=WRITE)
async def linkedin_create_signal(
    rt: Runtime,
    kind: SignalKind,
    name: Annotated[str, Field(min_length=1, max_length=200)],
    intent_description: IntentDescription,
    query: Annotated[str | None, Field(max_length=200)] = None,
    target_url: Annotated[str | None, Field(max_length=300)] = None,
    profile_urls: Annotated[list[str] | None, Field(max_length=500)] = None,
    cadence: Cadence | None = None,
    webhook_url: Annotated[str | None, Field(max_length=2000, pattern=r"^https://")] = None,
    min_intent: Intent | None = None,
    session_id: SessionId = None,
) -> CallToolResult:
    """Create a recurring LinkedIn watcher. kind: keyword (needs query), engagement (engagers of target_url's posts), job_change_watchlist (profile_urls), connection_accepted or message_received (need session_id)."""
    api = await linkedin_api(rt)
    signal = await api.signals.create(
        kind=kind,
        name=name,
        intent_description=intent_description,
        query=query,
        target_url=target_url,
        profile_urls=profile_urls,
        cadence=cadence,
        webhook_url=webhook_url,
        filter_min_intent=min_intent,
        session_id=session_id,
    )
    data = signal_data(signal)
    text = f"Created {signal.kind or kind} signal {signal.id} ({signal.name or name})."
    if signal.webhook_secret is not None and signal.webhook_secret.get_secret_value():
        path = rt.save_secret(f"linkedin-signal-{signal.id}", signal.webhook_secret.get_secret_value())
        data["webhook_secret_file"] = str(path)
        text += (
            f" Its webhook secret (shown only once) was saved to {path} (mode 0600); receivers verify the "
            "X-MyAgentMail-Signature header with it. Do not print the file."
        )
    text += " New matches: linkedin_list_signal_matches."
    return ok(text, data)


@toolset.tool(title="List LinkedIn signals", annotations=READ)
async def linkedin_list_signals(rt: Runtime) -> CallToolResult:
    """List LinkedIn signals with kind, cadence, state and match counts."""
    api = await linkedin_api(rt)
    items = [signal_data(s) for s in await api.signals.list()]
    text = f"{len(items)} signal(s)" + (
        ":\n" + "\n".join(signal_line(s) for s in items)
        if items
        else ". Create one with linkedin_create_signal."
    )
    return ok(text, {"signals": items, "count": len(items)})


@toolset.tool(title="List signal matches", annotations=READ)
async def linkedin_list_signal_matches(
    rt: Runtime,
    signal_id: Id,
    limit: Annotated[int, Field(ge=1, le=100)] = 20,
    since_id: Annotated[
        str | None, AfterValidator(plain_id), Field(description="Only matches after this one.")
    ] = None,
) -> CallToolResult:
    """A signal's matches: author (role, company, profile URL), post excerpt, intent and reason."""
    api = await linkedin_api(rt)
    matches = [
        match_data(m) for m in (await api.signals.matches(signal_id, limit=limit, since_id=since_id)).matches
    ]
    data = {"matches": matches, "count": len(matches), "untrusted": True}
    if not matches:
        return ok(f"No matches for signal {signal_id} yet.", data)
    lines = [
        f"- {m['id']} [{m['intent'] or '?'}] {author_line(m['author'])}\n  {m['post_url'] or ''}\n  "
        f"post: {m['excerpt']}\n  why: {m['reason'] or ''}"
        for m in matches
    ]
    return fenced(f"{len(matches)} match(es)", lines, data)


@toolset.tool(title="Look up LinkedIn profile", annotations=READ)
async def linkedin_lookup_profile(
    rt: Runtime, profile_url: ProfileUrl, session_id: SessionId = None
) -> CallToolResult:
    """Resolve a LinkedIn profile URL to name, headline and profile id (exact slug match only)."""
    api = await linkedin_api(rt)
    profile = (await api.profiles.lookup(profile_url, session_id=session_id)).profile
    data = known_fields(profile)
    data["untrusted"] = True
    summary = ", ".join(filter(None, [profile.name, profile.headline]))
    fence = UntrustedFence()
    return ok(
        f"Profile {profile.profile_id or profile.public_identifier or profile_url}. {UNTRUSTED_LINKEDIN}\n"
        + fence.wrap(summary or "(no name or headline)"),
        data,
    )


@toolset.tool(title="Send LinkedIn connection request", annotations=SEND)
async def linkedin_send_connection_request(
    rt: Runtime,
    target: ProfileRef,
    note: Annotated[
        str | None,
        Field(max_length=1000, description="Max 200 characters and 200 bytes; use ASCII punctuation."),
        AfterValidator(check_connection_note),
    ] = None,
    session_id: SessionId = None,
) -> CallToolResult:
    """Send a LinkedIn connection request, optionally with a note. Cannot be undone: get the user's approval first."""
    api = await linkedin_api(rt)
    result = await api.connections.send(target, message=note, session_id=session_id)
    data = {
        "ok": result.ok if result.ok is not None else True,
        "target": target,
        "status": result.status,
        "with_note": note is not None,
    }
    return ok(f"Connection request sent to {target}" + (" with a note." if note else "."), data)


@toolset.tool(title="Send LinkedIn message", annotations=SEND)
async def linkedin_send_message(
    rt: Runtime,
    recipient: ProfileRef,
    text: Annotated[str, Field(min_length=1, max_length=8000)],
    session_id: SessionFor = None,
) -> CallToolResult:
    """Send a LinkedIn DM to a 1st-degree connection. Cannot be undone: get the user's approval first."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)
    sent = await api.messages.send(session_id=sid, text=text, recipient=recipient)
    data = {
        "message_urn": sent.message_urn,
        "conversation_urn": sent.conversation_urn,
        "delivered_at": sent.delivered_at,
        "session_id": sid,
    }
    return ok(f"Message sent to {recipient} (conversation {sent.conversation_urn}).", data)


@toolset.tool(title="List LinkedIn conversations", annotations=READ)
async def linkedin_list_conversations(rt: Runtime, session_id: SessionFor = None) -> CallToolResult:
    """The ~20 latest LinkedIn DM threads: participants, unread count, preview."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)
    conversations = (await api.conversations.list(session_id=sid)).conversations
    items: list[dict[str, Any]] = [
        {
            "conversation_urn": c.conversation_urn,
            "participants": [known_fields(p) for p in c.participants],
            "unread_count": c.unread_count,
            "preview": one_line(c.preview, 160),
            "last_activity_at": c.last_activity_at,
        }
        for c in conversations
    ]
    data = {"conversations": items, "count": len(items), "session_id": sid, "untrusted": True}
    if not items:
        return ok("No conversations.", data)
    lines = [
        f"- {c['conversation_urn']} with {', '.join(p.get('name') or '?' for p in c['participants'])}"
        f" (unread {c['unread_count'] or 0}): {c['preview']}"
        for c in items
    ]
    return fenced(f"{len(items)} conversation(s)", lines, data)
