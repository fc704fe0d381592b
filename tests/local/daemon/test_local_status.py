"""`mam-mcp local status` / `stop` / `run` against a real daemon subprocess, and what they say when
nothing runs; the wording of a busy port for `mam-mcp local`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import filelock
import pytest

import mam_mcp
from mam_mcp.local.daemon.activity import PASSIVE_PATHS, ActivityTracker
from tests.local.daemon_process import REPO_ROOT, child_env, daemon_config, daemon_process


async def _cli(data_dir: Path, *args: str, http_port: str = "0") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    # Port 0: the daemon's real port is read from its state file, as for any ephemeral daemon.
    env.update({"MAM_LOCAL_DATA_DIR": str(data_dir), "MAM_LOCAL_HTTP_PORT": http_port, "MAM_LOCAL_SMTP_PORT": "0"})
    result = await anyio.run_process(
        [sys.executable, "-m", "mam_mcp.cli", *args], env=env, cwd=REPO_ROOT, check=False
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def _port_is_free(port: int) -> bool:
    """Free for a new daemon, which binds with SO_REUSEADDR: connections the old one closed may sit in
    TIME_WAIT for a minute, and that must not read as "still in use"."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_status_shows_the_running_daemon_and_stop_stops_it_cleanly(tmp_path: Path) -> None:
    """One daemon, every way of looking at it and stopping it."""
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as running:
        status = await _cli(config.data_dir, "local", "status")
        assert status.returncode == 0, status.stderr
        text = status.stdout
        assert f"running (pid {running.pid}, version {mam_mcp.__version__})" in text
        assert f"http://127.0.0.1:{running.state['httpPort']}/v1" in text and f":{running.smtp_port}" in text
        assert str(config.data_dir) in text and "idle for" in text and "`mam-mcp local stop`" in text
        assert running.api_key not in text

        as_json = await _cli(config.data_dir, "local", "status", "--json")
        info: dict[str, Any] = json.loads(as_json.stdout)
        assert info["running"] is True and info["pid"] == running.pid and info["current"] is True
        assert info["smtpPort"] == running.smtp_port and info["idleTimeoutSeconds"] == 300
        assert isinstance(info["uptimeSeconds"], float) and isinstance(info["idleSeconds"], float)

        # Found by its data dir whatever port is configured now: its state file says where it listens.
        elsewhere = await _cli(config.data_dir, "local", "status", "--json", http_port="1")
        assert elsewhere.returncode == 0 and json.loads(elsewhere.stdout)["pid"] == running.pid
        foreground = await _cli(config.data_dir, "local", http_port="1")
        assert foreground.returncode == 1 and f"(pid {running.pid}) already serves" in foreground.stdout
        assert "`mam-mcp local stop`" in foreground.stdout

        # Another data dir pointed at its port sees it is not its own, and stops nothing.
        port = str(running.state["httpPort"])
        theirs = await _cli(tmp_path / "other", "local", "status", http_port=port)
        assert theirs.returncode == 3 and "another data dir" in theirs.stdout
        refused = await _cli(tmp_path / "other", "local", "stop", http_port=port)
        assert refused.returncode == 1 and "nothing stopped" in refused.stdout and running.process.returncode is None

        stop = await _cli(config.data_dir, "local", "stop", http_port="1")
        assert stop.returncode == 0, stop.stderr
        assert f"stopped the mam-mcp daemon (pid {running.pid})" in stop.stdout
        assert await running.wait_exit() == 0  # a clean shutdown, not a kill
        assert not config.state_path.exists()
        filelock.FileLock(config.run_lock_path).acquire(timeout=0)  # its database and listeners are closed
        assert _port_is_free(running.smtp_port) and _port_is_free(int(running.state["httpPort"]))

    after = await _cli(config.data_dir, "local", "status")
    assert after.returncode == 3 and "not running" in after.stdout  # scriptable: non-zero when down
    again = await _cli(config.data_dir, "local", "stop")
    assert again.returncode == 0 and "nothing to stop" in again.stdout


async def test_local_run_is_the_foreground_daemon_and_stop_ends_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in child_env().items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    process = await anyio.open_process(
        [sys.executable, "-m", "mam_mcp.cli", "--data-dir", str(data_dir), "local", "run",
         "--http-port", "0", "--smtp-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        from anyio.streams.buffered import BufferedByteReceiveStream

        with anyio.fail_after(20):
            banner = await BufferedByteReceiveStream(process.stdout).receive_until(b"Press Ctrl-C", 8192)
        assert b"Idle stop: never" in banner
        stop = await _cli(data_dir, "local", "stop")
        assert stop.returncode == 0 and "stopped the mam-mcp daemon" in stop.stdout
        with anyio.fail_after(15):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


async def test_a_status_request_does_not_count_as_a_client() -> None:
    tracker = ActivityTracker()
    idle_since = tracker.idle_since
    seen: list[float | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(tracker.idle_since)

    wrapped = tracker.wrap(app)
    for path in PASSIVE_PATHS:
        await wrapped({"type": "http", "path": path}, None, None)
    assert seen == [idle_since] and tracker.idle_since == idle_since  # the idle clock kept running
    await wrapped({"type": "http", "path": "/v1/inboxes"}, None, None)
    assert seen[-1] is None  # a real request is a client while it lasts


@pytest.mark.parametrize("from_flag", [True, False])
async def test_a_busy_smtp_port_names_the_setting_that_chose_it(tmp_path: Path, from_flag: bool) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in child_env().items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
        env["MAM_LOCAL_HTTP_PORT"] = "0"
        args = ["local", "--data-dir", str(tmp_path / "data")]
        if from_flag:
            args += ["--smtp-port", str(port)]
        else:
            env["MAM_LOCAL_SMTP_PORT"] = str(port)
        result = await anyio.run_process(
            [sys.executable, "-m", "mam_mcp.cli", *args], env=env, cwd=REPO_ROOT, check=False
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert stderr.count(f"SMTP port {port} on 127.0.0.1 is in use") == 1 and "Traceback" not in stderr
    if from_flag:
        assert "choose a free port with --smtp-port" in stderr and "MAM_LOCAL_SMTP_PORT" not in stderr
    else:
        assert "set MAM_LOCAL_SMTP_PORT" in stderr

