"""The daemon: a real subprocess on ephemeral ports (health, REST with the minted key, state file,
idle shutdown, shutdown endpoint, signals), plus its small parts in process."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import anyio
import pytest

import mam_mcp
from mam_mcp.local.daemon import ActivityTracker, _watch_idle, write_secret_file
from tests.local.fixtures_c import daemon_config, daemon_process


def test_secret_file_is_created_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "api_key"
    write_secret_file(path, "tk_first\n")
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_secret_file(path, "tk_second\n")
    assert path.read_text() == "tk_first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["api_key"]  # no temp file left behind


async def test_idle_watcher_waits_for_open_clients_then_requests_shutdown() -> None:
    tracker = ActivityTracker()
    requested = anyio.Event()
    released_at = 0.0
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            with tracker.busy():  # an open WebSocket: never idle while it lasts
                tasks.start_soon(_watch_idle, tracker, 0.05, requested.set)
                with anyio.move_on_after(0.2):
                    await requested.wait()
                assert not requested.is_set()
                released_at = time.monotonic()
            await requested.wait()
    assert time.monotonic() - released_at >= 0.05
