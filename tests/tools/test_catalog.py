"""Catalogue-wide checks (DESIGN §7) and the checked-in tools/list snapshot, one file per tool.

Update the snapshots deliberately with: MAM_UPDATE_SNAPSHOTS=1 pytest tests/tools/test_catalog.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mam_mcp.server import build_server
from mam_mcp.toolkit.toolsets import SEND
from mam_mcp.tools.catalog import SelectionError, load_toolsets, select_tools
from tests.conftest import make_settings

# tests/snapshots/tools/<tool name>.json: what tools/list says of that tool, so a change to one tool diffs one file.
SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots" / "tools"
UPDATE_HINT = "if deliberate, run MAM_UPDATE_SNAPSHOTS=1 pytest tests/tools/test_catalog.py and commit tests/snapshots/tools/"
STABLE_DEFAULT_EMAIL = {
    "list_inboxes", "create_inbox", "send_email", "reply_to_email", "forward_email", "list_messages",
    "get_message", "list_threads", "get_thread", "get_attachment", "mark_message",
}
STABLE_DRAFTS = {"create_draft", "update_draft", "list_drafts", "send_draft", "delete_draft"}
SENDING_TOOLS = {"send_email", "reply_to_email", "forward_email", "send_draft"}


async def _list_tools(tmp_path: Path, **overrides: object) -> list[dict]:
    server = build_server(make_settings(tmp_path, **overrides))
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    return [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]


# The default hosted set's tools/list must stay within 3,400 o200k tokens (issue 14). Tokens need a
# 75 MB tokenizer, so the suite checks the serialized size instead: 14,600 characters of compact JSON
# is 3,400 tokens at the 4.3 characters per token this catalogue measures
# (`python bench/tools_list_size.py` prints both; recalibrate here if the ratio moves).
DEFAULT_SET_BUDGET_CHARS = 14_600


async def test_the_default_tools_list_fits_its_token_budget(tmp_path: Path) -> None:
    tools = await _list_tools(tmp_path)  # hosted: email, drafts and linkedin
    wire = json.dumps({"tools": tools}, separators=(",", ":"), ensure_ascii=False)
    assert len(tools) == 25
    assert len(wire) <= DEFAULT_SET_BUDGET_CHARS, (
        f"tools/list of the default set is {len(wire)} characters, over the {DEFAULT_SET_BUDGET_CHARS} budget: "
        "shorten descriptions or put the new tool in a non-default toolset"
    )


def _snapshot_text(tool: dict[str, Any]) -> str:
    return json.dumps(tool, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


async def test_snapshot_of_all_tools_matches(tmp_path: Path) -> None:
    current = {t["name"]: _snapshot_text(t) for t in await _list_tools(tmp_path, toolsets="all")}
    if os.environ.get("MAM_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        for stale in SNAPSHOTS.glob("*.json"):
            if stale.stem not in current:
                stale.unlink()  # the tool is gone
        for name, text in current.items():
            (SNAPSHOTS / f"{name}.json").write_text(text, encoding="utf-8")
    saved = {path.stem: path.read_text(encoding="utf-8") for path in SNAPSHOTS.glob("*.json")}
    assert saved, f"no snapshots yet: {UPDATE_HINT}"
    added, removed = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    changed = sorted(name for name in set(current) & set(saved) if current[name] != saved[name])
    assert not (added or removed or changed), (
        f"tools/list changed (new: {added}, gone: {removed}, changed: {changed}): {UPDATE_HINT}"
    )


async def test_every_tool_has_toolset_title_description_and_all_four_hints(tmp_path: Path) -> None:
    specs = [spec for ts in load_toolsets() for spec in ts.specs]
    assert len({s.name for s in specs}) == len(specs), "tool names must be unique"
    for spec in specs:
        assert spec.toolset and spec.title and spec.description, spec.name
        a = spec.annotations
        for hint in (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint):
            assert hint is not None, f"{spec.name}: every hint is set explicitly"
        assert len(spec.description) <= 300, f"{spec.name}: descriptions are for the model, keep them short"
    for tool in await _list_tools(tmp_path, toolsets="all"):
        schema = tool["inputSchema"]
        assert "anyOf" not in schema and "oneOf" not in schema, tool["name"]
        assert schema.get("type") == "object"
        assert "title" not in schema and all("title" not in p for p in schema.get("properties", {}).values())


async def test_default_toolsets_are_email_and_drafts_with_stable_names(tmp_path: Path) -> None:
    names = {t["name"] for t in await _list_tools(tmp_path)}
    assert STABLE_DEFAULT_EMAIL | STABLE_DRAFTS <= names


async def test_sends_are_destructive_and_not_idempotent(tmp_path: Path) -> None:
    for tool in await _list_tools(tmp_path, toolsets="all"):
        if tool["name"] in SENDING_TOOLS:
            assert tool["annotations"] == {"destructiveHint": True}  # the other hints are MCP's defaults


def test_published_hints_leave_out_only_what_equals_mcps_defaults() -> None:
    from mam_mcp.toolkit.toolsets import DELETE, READ, UPDATE, WRITE, published_annotations

    def wire(preset: Any) -> dict[str, Any]:
        return published_annotations(preset).model_dump(by_alias=True, exclude_none=True)

    assert wire(READ) == {"readOnlyHint": True}
    assert wire(WRITE) == {"destructiveHint": False}
    assert wire(UPDATE) == {"destructiveHint": False, "idempotentHint": True}
    assert wire(DELETE) == {"destructiveHint": True, "idempotentHint": True}
    assert wire(SEND) == {"destructiveHint": True}
    closed = READ.model_copy(update={"open_world_hint": False})
    assert wire(closed) == {"readOnlyHint": True, "openWorldHint": False}


async def test_read_only_keeps_only_read_only_tools(tmp_path: Path) -> None:
    tools = await _list_tools(tmp_path, toolsets="all", read_only=True)
    assert tools, "read-only mode still offers the read tools"
    assert all(t["annotations"]["readOnlyHint"] is True for t in tools)
    names = {t["name"] for t in tools}
    assert not names & SENDING_TOOLS
    assert {"list_messages", "get_message", "list_inboxes"} <= names


async def test_tools_and_exclude_tools_select_exactly(tmp_path: Path) -> None:
    names = [t["name"] for t in await _list_tools(tmp_path, tools="list_inboxes,get_message,send_email", exclude_tools="send_email")]
    assert sorted(names) == ["get_message", "list_inboxes"]


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(SelectionError, match="unknown toolset"):
        select_tools(mode="hosted", toolsets=["emails"])
    with pytest.raises(SelectionError, match="unknown tool"):
        select_tools(mode="hosted", tools=["send_mail"])


async def test_send_tools_take_verified_where_the_reference_requires_it(tmp_path: Path) -> None:
    by_name = {t["name"]: t for t in await _list_tools(tmp_path)}
    for name in ("send_email", "forward_email", "create_draft"):
        assert by_name[name]["inputSchema"]["properties"]["verified"]["type"] == "boolean"


def test_hosted_only_table_matches_the_toolsets() -> None:
    from mam_mcp.tools.catalog import HOSTED_ONLY_TOOLSETS

    sets = load_toolsets()
    assert {ts.name for ts in sets if ts.hosted_only} == HOSTED_ONLY_TOOLSETS
    assert {ts.name for ts in sets if ts.hosted_only and ts.default} == {"linkedin"}  # hosted mode's defaults


def test_local_mode_serves_the_local_defaults_without_a_warning() -> None:
    specs, notes = select_tools(mode="local")
    assert {s.toolset for s in specs} == {"email", "drafts"} and notes == []
    _, notes = select_tools(mode="local", toolsets=["all"])  # all that local mode can serve
    assert notes == []
    _, notes = select_tools(mode="local", exclude_tools=["linkedin_search_posts"])
    assert notes == []


def test_local_mode_explains_a_hosted_toolset_or_tool_asked_for_by_name() -> None:
    specs, notes = select_tools(mode="local", toolsets=["email", "linkedin"])
    assert {s.toolset for s in specs} == {"email"}
    assert len(notes) == 1 and notes[0].startswith("toolset(s) linkedin need the hosted MyAgentMail API")
    assert "MYAGENTMAIL_API_KEY" in notes[0] and "`mam-mcp login`" in notes[0]
    specs, notes = select_tools(mode="local", tools=["list_inboxes", "linkedin_search_posts"])
    assert [s.name for s in specs] == ["list_inboxes"]
    assert len(notes) == 1 and notes[0].startswith("tool(s) linkedin_search_posts need the hosted")


def test_an_unknown_name_gets_the_closest_ones_and_is_not_echoed_at_any_length() -> None:
    with pytest.raises(SelectionError) as raised:
        select_tools(mode="local", tools=["list_inbox"])
    assert "'list_inbox' (did you mean list_inboxes" in str(raised.value) and "`mam-mcp tools`" in str(raised.value)
    with pytest.raises(SelectionError) as raised:
        select_tools(mode="local", tools=["x" * 5000])
    assert len(str(raised.value)) < 200
    with pytest.raises(SelectionError, match=r"'emails' \(did you mean email\b"):
        select_tools(mode="local", toolsets=["emails"])
