"""Draft review as an MCP App: hosts that render apps show a review view beside create_draft and
update_draft results, where the person reads the draft exactly as it would be sent, edits it, and
approves or discards it.

The view (`ui://mam-mcp/draft-review.html`) is the console's draft review (mam_mcp/web) in one
self-contained page. It acts through tools: `review_draft` and `approve_draft` are for the view only
(`_meta.ui.visibility: ["app"]`: hosts keep them from the model), `update_draft` and `delete_draft`
are the ordinary ones. Approval names the content hash of the preview on screen, so exactly that
message is sent, and the outbound policy applies as for any send.

Graceful without apps: for a client that did not negotiate the extension, tools/list is today's
(no app-only tools, no `_meta.ui`), the app-only tools refuse to run, and every result is the same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.client.errors import MamError, ValidationFailed
from mam_mcp.toolkit.arguments import DraftId, InboxId
from mam_mcp.toolkit.results import UNTRUSTED_NOTE, UntrustedFence, fail, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.send_status import send_outcome_data, send_outcome_text
from mam_mcp.toolkit.toolsets import READ, SEND, Toolset, ToolSpec
from mam_mcp.tools.consent import confirmation_text
from mam_mcp.tools.outbound import SendRequest, check_policy

__all__ = [
    "APP_MIME_TYPE",
    "RESOURCE_URI",
    "REVIEW_APP_TOOLS",
    "DraftReviewApp",
    "draft_review_app",
    "review_app_tools_beside",
    "review_page",
]

RESOURCE_URI = "ui://mam-mcp/draft-review.html"
REVIEWED_TOOLS = ("create_draft", "update_draft")  # their results open the view
APP_ONLY: dict[str, Any] = {"resourceUri": RESOURCE_URI, "visibility": ["app"]}

# Not a catalogue toolset: these exist only beside the drafts toolset, for clients with apps.
app_tools = Toolset("draft_review", "The draft review view's own actions (MCP Apps).")
REVIEW_APP_TOOLS = frozenset({"review_draft", "approve_draft"})

ContentHash = Annotated[str, Field(min_length=8, max_length=64, description="contentHash of the preview shown.")]


def review_page() -> str:
    """The view: the shared review's CSS and JS and the host bridge, inlined in one document."""
    from mam_mcp.web import asset

    page = asset("review_app.html").decode("utf-8")
    for name in ("draft_review.css", "draft_review.js", "review_app.js"):
        text = asset(name).decode("utf-8")
        if "</script" in text.lower() or "</style" in text.lower():
            raise ValueError(f"{name} cannot be inlined: it closes its own element")
        page = page.replace("{{" + name + "}}", text)
    return page


async def _review_state(rt: Runtime, inbox_id: str, draft_id: str) -> tuple[dict[str, Any], Any]:
    client = await rt.client()
    draft = await client.drafts.get(inbox_id, draft_id)
    preview = None
    problem = None
    try:
        preview = await SendRequest("draft", inbox_id, draft_id=draft_id).preview(client, rt.settings)
    except MamError as error:  # e.g. no recipient yet: the view says so and offers no approval
        problem = error.message
    state = {"draft": draft.wire(), "preview": preview.wire() if preview else None, "problem": problem}
    return state, preview


@app_tools.tool(title="Review draft", annotations=READ)
async def review_draft(rt: Runtime, inbox_id: InboxId, draft_id: DraftId) -> CallToolResult:
    """For the draft review view: a draft and exactly what approving it would send."""
    state, preview = await _review_state(rt, inbox_id, draft_id)
    shown = (
        confirmation_text(preview, f"Draft {draft_id}, exactly as it would be sent:")
        if preview is not None
        else f"Draft {draft_id} cannot be sent yet: {state['problem']}"
    )
    return ok(f"Draft {draft_id} for review. {UNTRUSTED_NOTE}\n" + UntrustedFence().wrap(shown), state)


@app_tools.tool(title="Approve draft", annotations=SEND)
async def approve_draft(
    rt: Runtime, inbox_id: InboxId, draft_id: DraftId, content_hash: ContentHash
) -> CallToolResult:
    """For the draft review view only: send the draft the person approved there, if it is still that message."""
    client = await rt.client()
    request = SendRequest("draft", inbox_id, draft_id=draft_id)
    preview = await request.preview(client, rt.settings)
    if preview.content_hash != content_hash:
        return await _changed(rt, inbox_id, draft_id)
    await check_policy(client, rt.settings.outbound, request, preview)
    try:
        # The person read every recipient (new ones marked) and pressed approve: that is their consent.
        result = await request.send(
            client, verified=True, expect_hash=content_hash if rt.settings.mode == "local" else None
        )
    except MamError as error:
        if error.code == "CONTENT_CHANGED":
            return await _changed(rt, inbox_id, draft_id)
        raise
    text = send_outcome_text(f"The person approved draft {draft_id} in the review view; sent it", result)
    return ok(text, {**send_outcome_data(result), "approved": True, "draft_id": draft_id})


async def _changed(rt: Runtime, inbox_id: str, draft_id: str) -> CallToolResult:
    state, _ = await _review_state(rt, inbox_id, draft_id)
    message = "The draft changed since it was shown; nothing was sent. Review the new version."
    return ok(f"NOT SENT: {message}", {"approved": False, "code": "CONTENT_CHANGED", "message": message, **state})


class DraftReviewApp:
    """The extension (resource + capability), the view's tools, and the guard that hides them from
    clients without apps. Build the tools from `specs`, then `stamp` them before the server is made."""

    def __init__(self, reviewed: Sequence[str]) -> None:
        self.reviewed = tuple(reviewed)
        self.specs: list[ToolSpec] = list(app_tools.specs)
        self.app_only = frozenset(spec.name for spec in self.specs)
        self.extension = Apps()
        self.extension.add_html_resource(
            RESOURCE_URI,
            review_page(),
            name="draft-review",
            title="Draft review",
            description="Read a draft exactly as it would be sent; edit, approve or discard it.",
            csp=ResourceCsp(),  # nothing remote: no connections, no outside images, scripts or frames
            prefers_border=True,
        )

    def stamp(self, tools: Sequence[Tool]) -> None:
        """Point the reviewed tools at the view and mark the view's own tools app-only."""
        for tool in tools:
            if tool.name in self.app_only:
                tool.meta = {**(tool.meta or {}), "ui": dict(APP_ONLY)}
            elif tool.name in self.reviewed:
                tool.meta = {**(tool.meta or {}), "ui": {"resourceUri": RESOURCE_URI}}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: without apps, tools/list is today's and the view's tools do not run."""
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            if ctx.params.get("name") in self.app_only and not client_supports_apps(ctx):
                return fail(
                    ValidationFailed(
                        f"{ctx.params.get('name')}: only the draft review view of a host with MCP Apps can use this tool",
                        hint="Leave approval to the person: they approve drafts in the review view, the console or "
                        "`mam-mcp drafts approve`.",
                    )
                )
            return await call_next(ctx)
        result = await call_next(ctx)
        if ctx.method in ("tools/list", "resources/list") and not client_supports_apps(ctx):
            return _without_apps(result, self.app_only)
        return result


def _without_apps(result: HandlerResult, app_only: frozenset[str]) -> HandlerResult:
    """tools/list or resources/list as the wire dict (what middleware sees), minus the view, its tools
    and `_meta.ui` (the spec lets a server leave UI-only resources out of resources/list)."""
    if isinstance(result, dict) and isinstance(result.get("resources"), list):
        kept = [r for r in result["resources"] if not (isinstance(r, dict) and r.get("uri") == RESOURCE_URI)]
        return {**result, "resources": kept}
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return result
    tools = []
    for tool in result["tools"]:
        if not isinstance(tool, dict) or tool.get("name") in app_only:
            continue
        meta = tool.get("_meta")
        if isinstance(meta, dict) and "ui" in meta:
            tool = {k: v for k, v in tool.items() if k != "_meta"}
            rest = {k: v for k, v in meta.items() if k != "ui"}
            if rest:
                tool["_meta"] = rest
        tools.append(tool)
    return {**result, "tools": tools}


def review_app_tools_beside(selected: Iterable[str]) -> frozenset[str]:
    """The view's own tools that go with a selection of catalogue tools: only where drafts can be sent."""
    return REVIEW_APP_TOOLS if "send_draft" in set(selected) else frozenset()


def draft_review_app(specs: Sequence[ToolSpec]) -> DraftReviewApp | None:
    """The review app for this selection: only where drafts can be sent (approving is a send)."""
    names = {spec.name for spec in specs}
    if not review_app_tools_beside(names):
        return None
    return DraftReviewApp([name for name in REVIEWED_TOOLS if name in names])
