"""Bad input through the MCP client: every tool answers VALIDATION_ERROR naming the field, and the server keeps answering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mam_mcp.config import Settings
from mam_mcp.server import build_server
from tests.conftest import make_settings


async def _no_client(settings: Settings) -> Any:
    raise AssertionError("validation must reject the call before any API client is created")


def _wrong_value(prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if kind == "string":
        return {"not": "a string"}
    if kind in ("integer", "number"):
        return "not a number"
    if kind == "boolean":
        return {"not": "a boolean"}
    if kind == "array":
        return "not an array"
    return 12345


def _valid_value(name: str, prop: dict[str, Any]) -> Any:
    if "enum" in prop:
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "integer":
        return max(prop.get("minimum", 1), 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return ["someone@example.com"]
    if name in ("to", "email"):
        return "someone@example.com"
    return "abc123"


@pytest.fixture
def client(tmp_path: Path) -> Client:
    # Entered inside each test: an async-generator fixture would enter the SDK's task group in another task.
    return Client(build_server(make_settings(tmp_path, toolsets="all"), client_factory=_no_client))


async def _tools(client: Client) -> list[Any]:
    return (await client.list_tools()).tools


def _assert_validation_error(result: Any, field: str) -> None:
    assert result.is_error, result
    text = result.content[0].text
    assert text.startswith("VALIDATION_ERROR: "), text
    assert field in text, (field, text)
    assert "pydantic" not in text and "errors.pydantic.dev" not in text
    assert result.structured_content["error"]["code"] == "VALIDATION_ERROR"


async def test_unknown_arguments_are_refused_by_name(client: Client) -> None:
    async with client:
        for tool in await _tools(client):
            result = await client.call_tool(tool.name, {"definitely_not_an_arg": 1})
            _assert_validation_error(result, "definitely_not_an_arg")


async def test_missing_required_arguments_name_the_field(client: Client) -> None:
    async with client:
        checked = 0
        for tool in await _tools(client):
            for name in tool.input_schema.get("required", []):
                args = {k: _valid_value(k, p) for k, p in tool.input_schema["properties"].items() if k in tool.input_schema["required"] and k != name}
                result = await client.call_tool(tool.name, args)
                _assert_validation_error(result, name)
                assert "required" in result.content[0].text
                checked += 1
        assert checked >= 10


async def test_wrong_types_name_the_field(client: Client) -> None:
    async with client:
        checked = 0
        for tool in await _tools(client):
            props = tool.input_schema.get("properties", {})
            required = tool.input_schema.get("required", [])
            for name, prop in props.items():
                args = {k: _valid_value(k, props[k]) for k in required}
                args[name] = _wrong_value(prop)
                result = await client.call_tool(tool.name, args)
                _assert_validation_error(result, name)
                checked += 1
        assert checked >= 40


HOSTILE = ["../../etc/passwd", "a\r\nBcc: victim@example.com", "x\x00y", "'; DROP TABLE messages; --", "<script>alert(1)</script>", "%2e%2e%2f"]


async def test_hostile_ids_and_header_values_are_refused(client: Client) -> None:
    async with client:
        for bad in HOSTILE:
            _assert_validation_error(await client.call_tool("get_message", {"inbox_id": bad, "message_id": "m1"}), "inbox_id")
            _assert_validation_error(await client.call_tool("get_message", {"inbox_id": "i1", "message_id": bad}), "message_id")
            _assert_validation_error(
                await client.call_tool("send_email", {"inbox_id": "i1", "to": [bad], "subject": "s", "body": "b"}), "to"
            )
        injected = await client.call_tool(
            "send_email", {"inbox_id": "i1", "to": ["a@example.com"], "subject": "hi\r\nBcc: victim@example.com", "body": "b"}
        )
        _assert_validation_error(injected, "subject")


async def test_oversized_values_are_refused(client: Client) -> None:
    async with client:
        huge = "x" * 1_000_001
        result = await client.call_tool("send_email", {"inbox_id": "i1", "to": ["a@example.com"], "subject": "s", "body": huge})
        _assert_validation_error(result, "body")
        result = await client.call_tool("send_email", {"inbox_id": "i1", "to": ["a@example.com"] * 51, "subject": "s", "body": "b"})
        _assert_validation_error(result, "to")
        result = await client.call_tool("list_messages", {"inbox_id": "i1", "limit": 10_000})
        _assert_validation_error(result, "limit")


async def test_server_keeps_answering_after_bad_input(client: Client) -> None:
    async with client:
        for _ in range(3):
            await client.call_tool("send_email", {"inbox_id": None, "to": 5})
            await client.call_tool("list_messages", {})
        tools = await _tools(client)
        assert any(t.name == "send_email" for t in tools)


async def test_an_unknown_tool_name_gets_the_closest_names_and_a_short_echo(tmp_path: Path) -> None:
    local = Client(build_server(make_settings(tmp_path, hosted=False), client_factory=_no_client))
    async with local:
        typo = await local.call_tool("list_inbox", {})
        assert typo.is_error
        assert typo.content[0].text.startswith("TOOL_NOT_AVAILABLE: unknown tool 'list_inbox' (did you mean list_inboxes")
        assert "`mam-mcp tools`" in typo.content[0].text
        huge = await local.call_tool("y" * 100_000, {})
        assert huge.is_error and len(huge.content[0].text) < 300
        linkedin = await local.call_tool("linkedin_search_posts", {"query": "x"})
        assert linkedin.is_error and "hosted MyAgentMail API" in linkedin.content[0].text
        assert "`mam-mcp login`" in linkedin.content[0].text
        assert any(t.name == "list_inboxes" for t in await _tools(local))  # and it keeps answering
