"""A real `mam-mcp serve` subprocess over stdio, in hosted mode against the fake API under uvicorn (DESIGN §7).

Covered: the stateless 2026-07-28 protocol (no handshake) and the `initialize` handshake at
2025-06-18 and 2025-11-25; the server's stderr carries no secret.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import FAKE_KEY
from tests.fakes.hosted_api import FakeHostedAPI


def _command() -> tuple[str, list[str]]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("mam-mcp")
    if script.exists():
        return str(script), ["serve"]
    found = shutil.which("mam-mcp")
    return (found, ["serve"]) if found else (sys.executable, ["-m", "mam_mcp.cli", "serve"])


def _params(tmp_path: Path, base_url: str) -> StdioServerParameters:
    command, args = _command()
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MYAGENTMAIL_API_KEY": FAKE_KEY,
        "MYAGENTMAIL_BASE_URL": base_url,
        "MAM_MCP_LOG_LEVEL": "DEBUG",  # the most talkative level must still carry no secret
    }
    return StdioServerParameters(command=command, args=args, env=env)


async def _list_and_call(client: Client, inbox_id: str) -> None:
    names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"list_inboxes", "send_email", "create_draft"} <= names
    result = await client.call_tool("list_inboxes", {})
    assert not result.is_error, result.content
    assert inbox_id in str(result.structured_content)
    bad = await client.call_tool("get_message", {"inbox_id": inbox_id})
    assert bad.is_error and bad.content[0].text.startswith("VALIDATION_ERROR")


@pytest.mark.parametrize("handshake_version", [None, "2025-06-18", "2025-11-25"])
async def test_stdio_subprocess_lists_and_calls_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handshake_version: str | None
) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    stderr_path = tmp_path / "stderr.log"
    if handshake_version is not None:
        # The SDK client always offers its newest handshake version; pin the one under test.
        monkeypatch.setattr("mcp.client.session.LATEST_HANDSHAKE_VERSION", handshake_version)
    mode = "legacy" if handshake_version else "2026-07-28"
    # The fake runs in a task group of this task (a fixture would exit it from another task).
    async with fake.serving() as base_url:
        with stderr_path.open("w") as errlog, anyio.fail_after(60):
            async with Client(_stdio(_params(tmp_path, base_url), errlog), mode=mode) as client:
                assert client.protocol_version == (handshake_version or "2026-07-28")
                await _list_and_call(client, inbox["id"])
    assert [r for r in fake.requests if r.path == "/v1/inboxes"], "the subprocess reached the fake API"
    assert fake.violations == []
    log = stderr_path.read_text()
    assert "DEBUG" in log  # the check below looked at a talkative log
    assert FAKE_KEY not in log and FAKE_KEY[3:] not in log


def _stdio(params: StdioServerParameters, errlog):  # type: ignore[no-untyped-def]
    from mcp.client.stdio import stdio_client

    return stdio_client(params, errlog=errlog)
