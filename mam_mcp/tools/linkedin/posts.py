"""The linkedin_posts toolset (hosted only): raw post search, an author's posts, comments, reactions, one DM thread.

Each of these acts as one LinkedIn account: with no session_id the only connected session is used,
else the error lists the sessions. Post, comment and message text is untrusted input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import AfterValidator, Field

from mam_mcp.client.linkedin_input import DatePosted, check_actor_url, check_conversation_urn, check_post_urn
from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import READ, Toolset
from mam_mcp.tools.linkedin.access import linkedin_api, resolve_session, with_progress
from mam_mcp.tools.linkedin.arguments import SessionFor
from mam_mcp.tools.linkedin.presentation import author_data, author_line, fenced, one_line

if TYPE_CHECKING:
    from mam_mcp.client.linkedin_models import ContentPosts

toolset = Toolset(
    "linkedin_posts",
    "Raw LinkedIn post search, an author's recent posts, a post's comments and reactions, one DM thread.",
    hosted_only=True,
)

PostUrn = Annotated[
    str,
    Field(max_length=300, description="urn:li:activity:... (or a post URL)."),
    AfterValidator(check_post_urn),
]


def _posts_result(posts: ContentPosts, head: str, session_id: str) -> CallToolResult:
    items: list[dict[str, Any]] = [
        {
            "post_url": p.post_url,
            "urn": p.urn,
            "excerpt": one_line(p.excerpt),
            "author": {
                "name": p.author_name,
                "headline": p.author_headline,
                "profile_url": p.author_profile_url,
            },
            "posted_at": p.posted_at,
            "reactions": p.reaction_count,
            "comments": p.comment_count,
        }
        for p in posts.posts
    ]
    data = {"posts": items, "count": len(items), "session_id": session_id, "untrusted": True}
    if not items:
        return ok(f"{head}: no posts.", data)
    lines = [
        f"{i}. {author_line(p['author'])} {p['posted_at'] or ''}\n   {p['post_url'] or p['urn'] or ''}\n   "
        f"{p['excerpt']}"
        for i, p in enumerate(items, 1)
    ]
    return fenced(f"{head}: {len(items)} post(s)", lines, data)


@toolset.tool(title="Search LinkedIn content", annotations=READ)
async def linkedin_search_content(
    rt: Runtime,
    keyword: Annotated[str, Field(min_length=2, max_length=200)],
    date_posted: DatePosted | None = None,
    count: Annotated[int, Field(ge=1, le=25)] = 10,
    session_id: SessionFor = None,
    ctx: Context | None = None,
) -> CallToolResult:
    """Raw keyword search of LinkedIn posts as LinkedIn ranks them, with no firing rule or classifier (for intent, use linkedin_search_posts)."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)

    async def run() -> ContentPosts:
        return await api.search.content(keyword, session_id=sid, date_posted=date_posted, count=count)

    posts = await with_progress(ctx, "searching LinkedIn", run)
    return _posts_result(posts, f"Posts for {keyword!r}", sid)


@toolset.tool(title="List an author's LinkedIn posts", annotations=READ)
async def linkedin_list_author_posts(
    rt: Runtime,
    author_url: Annotated[
        str, Field(max_length=300, description="Profile or company URL."), AfterValidator(check_actor_url)
    ],
    count: Annotated[int, Field(ge=1, le=100)] = 10,
    session_id: SessionFor = None,
) -> CallToolResult:
    """Recent posts by a person or company, with their URNs for comments and reactions."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)
    posts = await api.posts.by_author(author_url, session_id=sid, count=count)
    return _posts_result(posts, f"Posts by {author_url}", sid)


@toolset.tool(title="List post comments", annotations=READ)
async def linkedin_list_post_comments(
    rt: Runtime,
    post_urn: PostUrn,
    count: Annotated[int, Field(ge=1, le=100)] = 20,
    session_id: SessionFor = None,
) -> CallToolResult:
    """Who commented on a LinkedIn post and what they wrote."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)
    comments = (await api.posts.comments(post_urn, session_id=sid, count=count)).comments
    items: list[dict[str, Any]] = [
        {"author": author_data(c.author), "text": one_line(c.text, 500), "created_at": c.created_at}
        for c in comments
    ]
    data = {"comments": items, "count": len(items), "untrusted": True}
    if not items:
        return ok("No comments.", data)
    lines = [f"- {author_line(c['author'])}: {c['text']}" for c in items]
    return fenced(f"{len(items)} comment(s)", lines, data)


@toolset.tool(title="List post reactions", annotations=READ)
async def linkedin_list_post_reactions(
    rt: Runtime,
    post_urn: PostUrn,
    count: Annotated[int, Field(ge=1, le=100)] = 50,
    session_id: SessionFor = None,
) -> CallToolResult:
    """Who reacted to a LinkedIn post, with the reaction type (LIKE, CELEBRATE, SUPPORT, ...)."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)
    reactions = (await api.posts.reactions(post_urn, session_id=sid, count=count)).reactions
    items: list[dict[str, Any]] = [
        {"author": author_data(r.actor), "reaction": r.reaction_type} for r in reactions
    ]
    data = {"reactions": items, "count": len(items), "untrusted": True}
    if not items:
        return ok("No reactions.", data)
    lines = [f"- {r['reaction'] or '?'}: {author_line(r['author'])}" for r in items]
    return fenced(f"{len(items)} reaction(s)", lines, data)


@toolset.tool(title="Get LinkedIn conversation", annotations=READ)
async def linkedin_get_conversation(
    rt: Runtime,
    conversation_urn: Annotated[str, Field(max_length=600), AfterValidator(check_conversation_urn)],
    session_id: SessionFor = None,
) -> CallToolResult:
    """Read the messages of one LinkedIn DM thread, newest first (URN from linkedin_list_conversations)."""
    api = await linkedin_api(rt)
    sid = await resolve_session(api, session_id)
    messages = (await api.conversations.messages(conversation_urn, session_id=sid)).messages
    items = [
        {
            "message_urn": m.message_urn,
            "from": (m.sender.name if m.sender else None),
            "from_me": bool(m.is_from_viewer),
            "text": m.text,
            "sent_at": m.sent_at,
            "attachments": m.attachment_count,
        }
        for m in messages
    ]
    data = {"messages": items, "count": len(items), "conversation_urn": conversation_urn, "untrusted": True}
    if not items:
        return ok("No messages in this conversation.", data)
    lines = [
        f"[{m['sent_at'] or ''}] {'me' if m['from_me'] else (m['from'] or '?')}: {m['text'] or ''}"
        for m in items
    ]
    return fenced(f"{len(items)} message(s)", lines, data)
