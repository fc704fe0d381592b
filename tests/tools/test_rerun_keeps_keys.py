"""A local tool call run again by the server (the daemon had stopped) creates nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2

from mam_mcp.client import MamClient
from mam_mcp.client.errors import ConnectionFailed
from mam_mcp.config import Settings
from mam_mcp.server import build_tool
from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import WRITE, ToolSpec
from tests.conftest import make_settings
from tests.local.conftest import LocalBackendFixture, local_backend, local_config  # noqa: F401  (fixtures)


async def test_a_local_call_run_again_after_the_daemon_stopped_does_not_create_twice(
    tmp_path: Path, local_backend: LocalBackendFixture  # noqa: F811
) -> None:
    """`_bind` runs a local call again when a connection never opened; writes the first run made are
    sent again with the same Idempotency-Keys and answered from the record, not done twice."""
    backend, app, key = local_backend
    inbox = (await backend.accounts.create_inbox(
        tenant_id=backend.keys.authenticate(key).tenant_id, workspace_id=None, username="rerun",  # type: ignore[union-attr]
        domain=backend.config.domain, display_name=None, metadata=None,
    ))[0]  # fmt: skip
    runs: list[str] = []

    async def two_writes(rt: Runtime) -> Any:
        client = await rt.client()
        draft = await client.drafts.create(inbox["id"], subject="first write")
        runs.append(draft.id)
        if len(runs) == 1:  # the daemon stopped between this call's two requests
            raise ConnectionFailed("could not connect (test)")
        return ok("done", {"draft": draft.id})

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://backend.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"})
    rt = Runtime(settings, factory)
    tool = build_tool(ToolSpec("two_writes", "Two writes", "test", "drafts", two_writes, WRITE), rt)
    result = await tool.fn()
    await rt.aclose()
    assert not result.is_error and len(runs) == 2
    assert runs[0] == runs[1], "the second run got the first run's draft back"
    drafts = await backend.mailbox.drafts(inbox["id"], limit=10, offset=0)
    assert [d["subject"] for d in drafts] == ["first write"]
