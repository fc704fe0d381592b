"""Property-based fuzzing of every tool's arguments through the MCP client (hypothesis).

Whatever the arguments (right or wrong types, missing or unknown names, empty, huge, hostile
strings), every call is answered with a result or a tool error that reads `CODE: message. Hint: ...`,
never a crash, a protocol error, a traceback or a raw validation dump. Local mode runs against the
real local backend (real SQLite in a temp dir), hosted mode against the strict fake of the API.
Deterministic (derandomized) and bounded: a few examples per tool.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.local.api.app import create_app
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.auth.keys import mint_tenant_key
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.server import build_server
from tests.conftest import FAKE_KEY, make_settings
from tests.fakes.hosted_api import FakeHostedAPI

ERROR_TEXT = re.compile(r"^[A-Z][A-Z0-9_]+: .+ Hint: .+", re.DOTALL)
LEAKS = ("Traceback", "errors.pydantic.dev", "input_value=", "Error executing tool", "validation error for")
EXAMPLES_PER_TOOL = 12

HOSTILE = [
    "", " ", "\x00", "a\r\nBcc: evil@example.org", "=?utf-8?q?x=0D=0ABcc:_evil@example.org?=", "\u2028",
    "../../etc/passwd", "%2e%2e%2f", "<script>alert(1)</script>", "'; DROP TABLE messages; --", "😀" * 50,
    "x" * 70_000, "jane@example.com", "not-an-address", "01ffffffffffffffffffffffffffffff", "-1", "1e309",
]


def _value(schema: dict[str, Any], real: dict[str, str]) -> st.SearchStrategy[Any]:
    """A value for one property: usually of the declared kind (with edge cases), sometimes of another."""
    kind = schema.get("type")
    wrong = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    if "enum" in schema:
        right: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
    elif kind == "string":
        right = st.one_of(st.sampled_from([*HOSTILE, *real.values()]), st.text(max_size=40))
    elif kind == "integer":
        right = st.one_of(st.integers(min_value=-5, max_value=200), st.sampled_from([0, 1, 100, 100_001, 2**63]))
    elif kind == "boolean":
        right = st.booleans()
    elif kind == "array":
        right = st.lists(st.sampled_from([*HOSTILE[:8], "jane@example.com", "a@b.c"]), max_size=60)
    elif kind == "object":
        right = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
    else:
        right = st.text(max_size=10)
    return st.one_of(right, right, right, wrong)


def _arguments(schema: dict[str, Any], real: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {
        name: (_value(prop, {k: v for k, v in real.items() if k in name} or real), name in required)
        for name, prop in properties.items()
    }

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for name, (strategy, is_required) in fields.items():
            # Real ids most of the time, so calls get past "not found" into the tool's own logic.
            if name in real and draw(st.integers(0, 3)) > 0:
                args[name] = real[name]
            elif draw(st.integers(0, 9)) < (9 if is_required else 5):
                args[name] = draw(strategy)
        if draw(st.integers(0, 9)) == 0:
            args[draw(st.sampled_from(["unknown", "inboxId", "__proto__", "x" * 300]))] = draw(st.text(max_size=5))
        return args

    return build()


def _check(name: str, args: dict[str, Any], result: Any) -> None:
    text = "".join(getattr(part, "text", "") for part in result.content)
    assert not any(leak in text for leak in LEAKS), f"{name}({args!r:.300}) leaked: {text[:500]}"
    if result.is_error:
        assert ERROR_TEXT.match(text), f"{name}({args!r:.300}) error without code and hint: {text[:500]}"
        assert "INTERNAL_ERROR" not in text, f"{name}({args!r:.300}) crashed: {text[:500]}"
    else:
        assert text and result.structured_content is not None, f"{name}: a result has text and structured content"


@asynccontextmanager
async def _local_client(folder: Path) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    config = LocalConfig(data_dir=folder / "local", http_port=0, smtp_port=0)
    store = EmailStore(config)
    await store.open()
    key = await mint_tenant_key(store)
    backend = LocalBackend(config, store)
    app = create_app(backend)

    async def factory(settings: Any) -> MamClient:
        return MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    server = build_server(make_settings(folder, hosted=False, env={"MAM_MCP_MODE": "local"}, toolsets="all"), client_factory=factory)
    try:
        async with Client(server) as client:
            inbox = (await client.call_tool("create_inbox", {"username": "fuzz"})).structured_content or {}
            mail = (
                b"From: Jane <jane@example.com>\r\nTo: fuzz@mam.localhost\r\nSubject: Hi\r\n\r\nCode 123456\r\n"
            )
            await backend.ingest(mail, "jane@example.com", ["fuzz@mam.localhost"])
            real = await _real_ids(client, str(inbox.get("id", "")))
            yield client, real
    finally:
        await server.runtime.aclose()  # type: ignore[attr-defined]
        await store.close()


@asynccontextmanager
async def _hosted_client(folder: Path) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    fake = FakeHostedAPI(api_key=FAKE_KEY)
    inbox = fake.seed_inbox("fuzz")
    fake.deliver_inbound(inbox["id"], from_address="jane@example.com", subject="Hi", plain_body="Code 123456")

    async def factory(settings: Any) -> MamClient:
        return MamClient(base_url="http://fake", api_key=FAKE_KEY, transport=fake.transport())

    server = build_server(make_settings(folder, toolsets="all"), client_factory=factory)
    try:
        async with Client(server) as client:
            yield client, await _real_ids(client, inbox["id"])
    finally:
        await server.runtime.aclose()  # type: ignore[attr-defined]


async def _real_ids(client: Client, inbox_id: str) -> dict[str, str]:
    real = {"inbox_id": inbox_id}
    listed = (await client.call_tool("list_messages", {"inbox_id": inbox_id})).structured_content or {}
    if listed.get("messages"):
        real["message_id"] = listed["messages"][0]["id"]
        real["thread_id"] = listed["messages"][0]["thread_id"]
    draft = (await client.call_tool("create_draft", {"inbox_id": inbox_id, "subject": "d"})).structured_content or {}
    if draft.get("id"):
        real["draft_id"] = draft["id"]
    return real


@pytest.fixture(scope="module", params=["local", "hosted"])
def fuzz_target(request: pytest.FixtureRequest) -> Iterator[tuple[BlockingPortal, Client, dict[str, str], list[dict[str, Any]]]]:
    with tempfile.TemporaryDirectory() as tmp, start_blocking_portal() as portal:
        opener = _local_client if request.param == "local" else _hosted_client
        with portal.wrap_async_context_manager(opener(Path(tmp))) as (client, real):
            tools = portal.call(client.list_tools).tools
            yield portal, client, real, [t.model_dump(by_alias=True, exclude_none=True) for t in tools]


def test_every_tool_answers_any_arguments_with_a_result_or_a_coded_error(
    fuzz_target: tuple[BlockingPortal, Client, dict[str, str], list[dict[str, Any]]],
) -> None:
    portal, client, real, tools = fuzz_target
    assert len(tools) >= 30
    for tool in tools:
        if tool["name"] != "wait_for_email":  # waits up to its timeout by design: fuzzed below, briefly
            _fuzz(portal, client, tool["name"], _arguments(tool["inputSchema"], real))


def _fuzz(portal: BlockingPortal, client: Client, name: str, strategy: st.SearchStrategy[dict[str, Any]]) -> None:
    @settings(max_examples=EXAMPLES_PER_TOOL, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(args=strategy)
    def call(args: dict[str, Any]) -> None:
        result = portal.call(client.call_tool, name, args)
        _check(name, args, result)

    call()


def test_wait_for_email_answers_any_arguments_quickly(
    fuzz_target: tuple[BlockingPortal, Client, dict[str, str], list[dict[str, Any]]],
) -> None:
    portal, client, real, tools = fuzz_target
    schema = next(t["inputSchema"] for t in tools if t["name"] == "wait_for_email")

    @settings(max_examples=EXAMPLES_PER_TOOL, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(args=_arguments(schema, real))
    def call(args: dict[str, Any]) -> None:
        timeout = args.get("timeout_seconds", 1)
        if isinstance(timeout, int) and not isinstance(timeout, bool):
            args["timeout_seconds"] = min(timeout, 1)  # a wrong type or a value below 1 is refused at once
        result = portal.call(client.call_tool, "wait_for_email", args)
        _check("wait_for_email", args, result)

    call()
