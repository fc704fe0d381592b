"""The linkedin_signals toolset (hosted only): manage signals, their watchlists and deliveries, past searches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.client.linkedin_input import Cadence, Intent
from mam_mcp.toolkit.results import UntrustedFence, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, UPDATE, WRITE, Toolset
from mam_mcp.tools.linkedin.access import linkedin_api, with_progress
from mam_mcp.tools.linkedin.arguments import Id, ProfileUrl
from mam_mcp.tools.linkedin.presentation import known_fields, one_line, search_text, signal_data, signal_line

if TYPE_CHECKING:
    from mam_mcp.client.linkedin_models import SignalRun

toolset = Toolset(
    "linkedin_signals",
    "Manage LinkedIn signals (get, update, pause, run, delete), watchlists, webhook deliveries, past searches.",
    hosted_only=True,
)


@toolset.tool(title="Get LinkedIn signal", annotations=READ)
async def linkedin_get_signal(rt: Runtime, signal_id: Id) -> CallToolResult:
    """Get one signal: kind, rule, cadence, state, last poll and last error."""
    api = await linkedin_api(rt)
    signal = await api.signals.get(signal_id)
    data = signal_data(signal)
    if signal.intent_description:
        data["intent_description"] = signal.intent_description
    return ok(
        signal_line(data).removeprefix("- ")
        + (f". Last error: {data['last_error']}" if data.get("last_error") else ""),
        data,
    )


@toolset.tool(title="Update LinkedIn signal", annotations=UPDATE)
async def linkedin_update_signal(
    rt: Runtime,
    signal_id: Id,
    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
    query: Annotated[str | None, Field(min_length=2, max_length=200)] = None,
    intent_description: Annotated[str | None, Field(min_length=20, max_length=4000)] = None,
    cadence: Cadence | None = None,
    webhook_url: Annotated[str | None, Field(max_length=2000, pattern=r"^https://")] = None,
    min_intent: Intent | None = None,
    enabled: Annotated[bool | None, Field(description="false pauses the signal, true resumes it.")] = None,
) -> CallToolResult:
    """Change a signal's name, keyword, firing rule, cadence, webhook or minimum intent, or pause/resume it."""
    api = await linkedin_api(rt)
    signal = await api.signals.update(
        signal_id,
        name=name,
        query=query,
        intentDescription=intent_description,
        cadence=cadence,
        webhookUrl=webhook_url,
        filterMinIntent=min_intent,
        enabled=enabled,
    )
    data = signal_data(signal)
    return ok("Updated: " + signal_line(data).removeprefix("- "), data)


@toolset.tool(title="Delete LinkedIn signal", annotations=DELETE)
async def linkedin_delete_signal(rt: Runtime, signal_id: Id) -> CallToolResult:
    """Delete a signal and stop its polling (its matches go with it)."""
    api = await linkedin_api(rt)
    await api.signals.delete(signal_id)
    return ok(f"Deleted signal {signal_id}.", {"deleted": True, "id": signal_id})


@toolset.tool(title="Run LinkedIn signal now", annotations=WRITE)
async def linkedin_run_signal(rt: Runtime, signal_id: Id, ctx: Context | None = None) -> CallToolResult:
    """Poll a signal now instead of waiting for its cadence (10-15 s; spends quota). New matches appear in linkedin_list_signal_matches."""
    api = await linkedin_api(rt)

    async def run() -> SignalRun:
        return await api.signals.run(signal_id)

    outcome = await with_progress(ctx, "polling LinkedIn", run)
    result = outcome.result or {}
    counts = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}
    detail = ", ".join(f"{k} {v}" for k, v in counts.items())
    return ok(
        f"Ran signal {signal_id}" + (f": {detail}." if detail else ".") + " Read new matches with "
        "linkedin_list_signal_matches.",
        {"id": signal_id, "result": counts},
    )


@toolset.tool(title="List signal webhook deliveries", annotations=READ)
async def linkedin_list_signal_deliveries(rt: Runtime, signal_id: Id) -> CallToolResult:
    """The webhook delivery log of a signal: status, attempts and the receiver's HTTP status, newest first."""
    api = await linkedin_api(rt)
    deliveries = [known_fields(d) for d in (await api.signals.deliveries(signal_id)).deliveries]
    lines = [
        f"- {d['id']} {d.get('status') or '?'} attempts {d.get('attempts', 0)} HTTP {d.get('response_status', '-')}"
        + (f" error: {one_line(d['error'], 120)}" if d.get("error") else "")
        for d in deliveries
    ]
    return ok(
        f"{len(deliveries)} deliveries" + (":\n" + "\n".join(lines) if lines else "."),
        {"deliveries": deliveries, "count": len(deliveries)},
    )


@toolset.tool(title="Test signal webhook", annotations=WRITE)
async def linkedin_test_signal_webhook(rt: Runtime, signal_id: Id) -> CallToolResult:
    """Send a synthetic signed event to the signal's webhook URL and report the receiver's answer."""
    api = await linkedin_api(rt)
    result = await api.signals.test_webhook(signal_id)
    data = known_fields(result)
    state = "accepted" if result.ok else "failed"
    return ok(
        f"Test event {state}"
        + (f" (HTTP {result.status})" if result.status else "")
        + (f": {result.error}" if result.error else "."),
        data,
    )


@toolset.tool(title="List watchlist", annotations=READ)
async def linkedin_list_watchlist(rt: Runtime, signal_id: Id) -> CallToolResult:
    """List the profiles a job_change_watchlist signal watches, with entry ids."""
    api = await linkedin_api(rt)
    entries = [known_fields(e) for e in (await api.signals.watchlist.list(signal_id)).entries]
    lines = [
        f"- {e.get('id')} {e['profile_url']}" + (f" ({e['label']})" if e.get("label") else "")
        for e in entries
    ]
    return ok(
        f"{len(entries)} watched profile(s)" + (":\n" + "\n".join(lines) if lines else "."),
        {"entries": entries, "count": len(entries)},
    )


@toolset.tool(title="Add watchlist entries", annotations=WRITE)
async def linkedin_add_watchlist_entries(
    rt: Runtime,
    signal_id: Id,
    profile_urls: Annotated[list[ProfileUrl], Field(min_length=1, max_length=500)],
) -> CallToolResult:
    """Add profiles to a job_change_watchlist signal (500 per signal at most). The first poll of each only records the current role."""
    api = await linkedin_api(rt)
    result = await api.signals.watchlist.add(signal_id, [(url, None) for url in profile_urls])
    entries = [known_fields(e) for e in result.entries]
    return ok(
        f"Added {len(profile_urls)} profile(s) to signal {signal_id}.",
        {"entries": entries, "added": len(profile_urls)},
    )


@toolset.tool(title="Remove watchlist entry", annotations=DELETE)
async def linkedin_remove_watchlist_entry(rt: Runtime, signal_id: Id, entry_id: Id) -> CallToolResult:
    """Stop watching one profile (entry id from linkedin_list_watchlist)."""
    api = await linkedin_api(rt)
    await api.signals.watchlist.remove(signal_id, entry_id)
    return ok(f"Removed entry {entry_id}.", {"deleted": True, "id": entry_id})


@toolset.tool(title="List past LinkedIn searches", annotations=READ)
async def linkedin_list_searches(
    rt: Runtime, limit: Annotated[int, Field(ge=1, le=100)] = 20
) -> CallToolResult:
    """List past intent searches (id, query, result count); re-open one free with linkedin_get_search."""
    api = await linkedin_api(rt)
    searches = (await api.searches.list(limit=limit)).searches
    items = [
        {
            "id": s.id,
            "query": s.query,
            "lookback": s.lookback,
            "result_count": s.result_count,
            "error_code": s.error_code,
            "created_at": s.created_at,
        }
        for s in searches
    ]
    lines = [
        f"- {i['id']} {i['query']!r} ({i['lookback'] or '?'}): {i['result_count'] or 0} result(s), {i['created_at'] or ''}"
        for i in items
    ]
    return ok(
        f"{len(items)} search(es)" + (":\n" + "\n".join(lines) if lines else "."),
        {"searches": items, "count": len(items)},
    )


@toolset.tool(title="Get past LinkedIn search", annotations=READ)
async def linkedin_get_search(rt: Runtime, search_id: Id) -> CallToolResult:
    """Re-open a past intent search with its results (no LinkedIn quota spent)."""
    api = await linkedin_api(rt)
    text, data = search_text(await api.searches.get(search_id), UntrustedFence())
    return ok(text, data)
