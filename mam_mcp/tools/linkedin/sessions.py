"""The linkedin_sessions toolset (hosted only): connected LinkedIn accounts, their daily quota, revoking one.

Connecting an account needs a password or cookies, which never pass through MCP: the human runs
`mam-mcp linkedin connect` in a terminal.
"""

from mcp_types import CallToolResult

from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, Toolset
from mam_mcp.tools.linkedin.access import linkedin_api
from mam_mcp.tools.linkedin.arguments import Id
from mam_mcp.tools.linkedin.presentation import known_fields

toolset = Toolset(
    "linkedin_sessions",
    "Connected LinkedIn accounts, their per-session daily quota, revoking one.",
    hosted_only=True,
)

_CONNECT = "To add an account the user runs `mam-mcp linkedin connect` in a terminal."


@toolset.tool(title="List LinkedIn sessions", annotations=READ)
async def linkedin_list_sessions(rt: Runtime) -> CallToolResult:
    """List connected LinkedIn accounts (id, label, status). Tools auto-distribute across them; do not pick one yourself."""
    api = await linkedin_api(rt)
    sessions = [known_fields(s) for s in await api.sessions.list()]
    lines = [
        f"- {s['id']} {s.get('label') or '(no label)'}: {s.get('status') or 'unknown'}" for s in sessions
    ]
    text = f"{len(sessions)} LinkedIn session(s)" + (":\n" + "\n".join(lines) if lines else f". {_CONNECT}")
    return ok(text, {"sessions": sessions, "count": len(sessions)})


@toolset.tool(title="LinkedIn quota per session", annotations=READ)
async def linkedin_session_utilization(rt: Runtime) -> CallToolResult:
    """Daily LinkedIn budget and what each session used and has left, with rate-limit pauses. Low everywhere means connect another account."""
    api = await linkedin_api(rt)
    usage = await api.sessions.utilization()
    sessions = [known_fields(s) for s in usage.sessions]
    lines = []
    for s in usage.sessions:
        left = ", ".join(f"{k} {v}/{usage.budget.get(k, '?')}" for k, v in sorted(s.remaining.items()))
        paused = (
            f" PAUSED until {s.rate_limited_until} ({s.rate_limit_reason or 'rate limited'})"
            if s.rate_limited_until
            else ""
        )
        lines.append(f"- {s.session_id} {s.label or ''} [{s.status or '?'}]{paused}: left {left or 'n/a'}")
    # Headroom = some session neither paused nor nearly out of profile lookups (the reference's nudge rule).
    headroom = any(
        not s.rate_limited_until and s.remaining.get("profile_lookup", 99) >= 5 for s in usage.sessions
    )
    budget = ", ".join(f"{k} {v}" for k, v in sorted(usage.budget.items()))
    text = f"Daily budget per session: {budget or 'unknown'}.\n" + "\n".join(lines)
    if not headroom:
        text += f"\nLittle headroom left. {_CONNECT}"
    return ok(text, {"budget": usage.budget, "sessions": sessions})


@toolset.tool(title="Revoke LinkedIn session", annotations=DELETE)
async def linkedin_revoke_session(rt: Runtime, session_id: Id) -> CallToolResult:
    """Disconnect a LinkedIn account from MyAgentMail (e.g. to make room under the session cap). Signals pinned to it stop working."""
    api = await linkedin_api(rt)
    await api.sessions.revoke(session_id)
    return ok(f"Revoked LinkedIn session {session_id}.", {"revoked": True, "id": session_id})
