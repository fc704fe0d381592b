"""The workflow prompts (over the in-memory MCP client) and the shipped skill text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.types import TextContent

from mam_mcp.prompts import register_prompts

REPO = Path(__file__).resolve().parent.parent
SKILL_DIR = REPO / "skills" / "myagentmail"

# Stable tool names of DESIGN §4 (hosts, prompts and scripts refer to them).
STABLE_TOOLS = frozenset(
    """
    list_inboxes create_inbox send_email reply_to_email forward_email list_messages get_message
    wait_for_email list_threads get_thread get_attachment mark_message
    create_draft update_draft list_drafts send_draft delete_draft
    linkedin_search_posts linkedin_create_signal linkedin_list_signals linkedin_list_signal_matches
    linkedin_lookup_profile linkedin_send_connection_request linkedin_send_message
    linkedin_list_conversations
    get_inbox update_inbox delete_inbox add_inbox_address remove_inbox_address delete_message
    get_raw_message verify_email
    list_address_lists create_address_list get_address_list delete_address_list add_list_entry
    remove_list_entry
    create_domain list_domains get_domain verify_domain get_zone_file delete_domain
    create_workspace list_workspaces get_workspace delete_workspace create_workspace_key
    list_workspace_keys revoke_workspace_key
    create_webhook list_webhooks get_webhook update_webhook delete_webhook get_metrics
    linkedin_get_signal linkedin_update_signal linkedin_delete_signal linkedin_run_signal
    linkedin_list_signal_deliveries linkedin_test_signal_webhook linkedin_list_watchlist
    linkedin_add_watchlist_entries linkedin_remove_watchlist_entry linkedin_list_searches
    linkedin_get_search
    linkedin_search_content linkedin_list_author_posts linkedin_list_post_comments
    linkedin_list_post_reactions linkedin_get_conversation
    linkedin_list_sessions linkedin_session_utilization linkedin_revoke_session
    """.split()
)
TOOLSETS = frozenset(
    "email drafts linkedin inbox_admin lists domains workspaces webhooks linkedin_signals "
    "linkedin_posts linkedin_sessions".split()
)

EXPECTED_ARGUMENTS = {
    "verify_signup": {"service": True, "inbox_id": False},
    "triage_inbox": {"inbox_id": True},
    "draft_reply_for_approval": {"inbox_id": True, "message_id": True, "guidance": False},
    "linkedin_intent_outreach": {"topic": True, "ideal_customer": True, "inbox_id": False},
}


def _server() -> MCPServer:
    server = MCPServer("t")
    register_prompts(server)
    return server


async def _render(name: str, arguments: dict[str, str]) -> str:
    async with Client(_server()) as client:
        result = await client.get_prompt(name, arguments)
    assert result.messages, name
    assert all(m.role == "user" for m in result.messages)
    texts = [m.content.text for m in result.messages if isinstance(m.content, TextContent)]
    return "\n".join(texts)


def _tool_names_in(text: str) -> set[str]:
    return {word for word in re.findall(r"\b[a-z][a-z_]+\b", text) if word in STABLE_TOOLS}


async def test_the_four_prompts_are_listed_with_their_arguments() -> None:
    async with Client(_server()) as client:
        listed = await client.list_prompts()
    prompts = {p.name: p for p in listed.prompts}
    assert set(prompts) == set(EXPECTED_ARGUMENTS)
    for name, expected in EXPECTED_ARGUMENTS.items():
        prompt = prompts[name]
        assert prompt.description and prompt.title
        arguments = {a.name: a.required for a in prompt.arguments or []}
        assert arguments == expected, name
        assert all(a.description for a in prompt.arguments or []), name


async def test_verify_signup_creates_inbox_then_waits_and_uses_code_and_cursor() -> None:
    text = await _render("verify_signup", {"service": "Acme Cloud"})
    assert "Acme Cloud" in text
    assert text.index("create_inbox") < text.index("wait_for_email")
    needles = ("from_contains", "found: false", "`code`", "links", "cursor", "received_after", "untrusted")
    for needle in needles:
        assert needle in text, needle


async def test_verify_signup_with_inbox_reuses_it_and_does_not_create_one() -> None:
    text = await _render("verify_signup", {"service": "Acme", "inbox_id": "inb_123"})
    assert "inb_123" in text
    assert "create_inbox" not in text
    assert "wait_for_email" in text


async def test_triage_inbox_reads_without_sending() -> None:
    text = await _render("triage_inbox", {"inbox_id": "inb_9"})
    assert "inb_9" in text
    assert {"list_messages", "get_message", "create_draft"} <= _tool_names_in(text)
    assert "send_email" not in text and "reply_to_email" not in text
    assert "untrusted" in text


async def test_draft_reply_uses_drafts_and_sends_only_after_approval() -> None:
    text = await _render(
        "draft_reply_for_approval",
        {"inbox_id": "inb_1", "message_id": "msg_2", "guidance": "decline politely"},
    )
    for needle in ("inb_1", "msg_2", "decline politely", "reply_to_message_id", "approv", "untrusted"):
        assert needle in text, needle
    assert text.index("get_message") < text.index("create_draft") < text.index("send_draft")
    assert {"update_draft", "delete_draft"} <= _tool_names_in(text)


async def test_draft_reply_without_guidance_renders() -> None:
    text = await _render("draft_reply_for_approval", {"inbox_id": "inb_1", "message_id": "msg_2"})
    assert "Guidance" not in text
    assert "create_draft" in text


async def test_linkedin_outreach_names_the_rule_negatives_and_note_limits() -> None:
    text = await _render(
        "linkedin_intent_outreach",
        {"topic": "reply rates dropping", "ideal_customer": "B2B SaaS founders", "inbox_id": "inb_7"},
    )
    needles = (
        "reply rates dropping",
        "B2B SaaS founders",
        "inb_7",
        "does NOT fire",
        "200 characters",
        "200 bytes",
        "session_id",
        "LINKEDIN_RATE_LIMITED",
    )
    for needle in needles:
        assert needle in text, needle
    assert {
        "linkedin_search_posts",
        "linkedin_create_signal",
        "linkedin_list_signal_matches",
        "linkedin_send_connection_request",
        "create_draft",
        "send_draft",
    } <= _tool_names_in(text)


async def test_linkedin_outreach_without_inbox_skips_email() -> None:
    text = await _render("linkedin_intent_outreach", {"topic": "t", "ideal_customer": "c"})
    assert "create_draft" not in text and "send_email" not in text


@pytest.mark.parametrize("name", sorted(EXPECTED_ARGUMENTS))
async def test_every_tool_named_in_a_prompt_is_a_stable_tool(name: str) -> None:
    text = await _render(name, {arg: "x" for arg in EXPECTED_ARGUMENTS[name]})
    tool_like = _tool_like(set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", text)))
    assert tool_like <= STABLE_TOOLS, tool_like - STABLE_TOOLS


# --- the shipped skill text ---------------------------------------------------------------


def _skill_text() -> str:
    return (SKILL_DIR / "SKILL.md").read_text(encoding="utf-8")


def test_skill_has_frontmatter_with_name_and_description() -> None:
    text = _skill_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "SKILL.md must start with YAML frontmatter"
    fields = dict(line.split(":", 1) for line in match.group(1).splitlines() if ":" in line)
    assert fields["name"].strip() == "myagentmail"
    description = fields["description"].strip()
    assert len(description) > 80
    # A plain YAML scalar: these would end it early or start a comment.
    assert ": " not in description and " #" not in description
    assert len(text.splitlines()) <= 260


def _backticked_identifiers(text: str) -> set[str]:
    """Snake_case identifiers in inline code spans, e.g. `wait_for_email` or `list_messages(...)`."""
    spans = re.findall(r"`([^`\n]+)`", text)
    return {m.group(1) for span in spans if (m := re.match(r"([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", span))}


def test_every_tool_name_in_the_skill_is_a_stable_tool() -> None:
    tool_like = _tool_like(_backticked_identifiers(_skill_text()))
    assert tool_like, "SKILL.md should name its tools in backticks"
    assert tool_like <= STABLE_TOOLS, tool_like - STABLE_TOOLS
    # The flagship tools are taught.
    assert {"wait_for_email", "create_inbox", "reply_to_email", "create_draft", "send_draft"} <= tool_like


def test_reference_docs_exist_and_name_only_stable_tools() -> None:
    names = {"email-workflows.md", "linkedin.md", "local-backend.md", "events.md"}
    present = {p.name for p in (SKILL_DIR / "references").glob("*.md")}
    assert names <= present
    for name in names:
        text = (SKILL_DIR / "references" / name).read_text(encoding="utf-8")
        tool_like = _tool_like(_backticked_identifiers(text))
        assert tool_like <= STABLE_TOOLS, (name, tool_like - STABLE_TOOLS)


# First words of our tool names: a snake_case identifier starting with one is taken for a tool name,
# except toolset names and the tool arguments below that happen to start with a verb.
_TOOL_VERBS = frozenset(
    "list create send reply forward get wait mark update delete add remove verify revoke linkedin".split()
)
_ARGUMENTS_LIKE_TOOLS = frozenset({"reply_all", "reply_to_message_id"})


def _tool_like(identifiers: set[str]) -> set[str]:
    not_tools = _ARGUMENTS_LIKE_TOOLS | TOOLSETS
    return {i for i in identifiers if i.split("_")[0] in _TOOL_VERBS and i not in not_tools}
