"""The daemon: a real subprocess on ephemeral ports (health, REST with the minted key, state file,
idle shutdown, shutdown endpoint, signals), plus its small parts in process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import anyio
import pytest

import mam_mcp
from mam_mcp.local.daemon.activity import ActivityTracker, watch_idle
from mam_mcp.local.daemon.data_dir import write_secret_file
from tests.local.daemon_process import daemon_config, daemon_process


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
                tasks.start_soon(watch_idle, tracker, 0.05, requested.set)
                with anyio.move_on_after(0.2):
                    await requested.wait()
                assert not requested.is_set()
                released_at = time.monotonic()
            await requested.wait()
    assert time.monotonic() - released_at >= 0.05


async def test_short_activity_while_idle_restarts_the_idle_clock() -> None:
    tracker = ActivityTracker()
    requested = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_idle, tracker, 0.3, requested.set)
            await anyio.sleep(0.2)
            with tracker.busy():  # one SMTP delivery, over at once
                pass
            last_activity = time.monotonic()
            await requested.wait()
    assert time.monotonic() - last_activity >= 0.3


async def test_daemon_serves_health_and_rest_with_its_minted_key_and_writes_state(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon:
        if sys.platform != "win32":
            assert stat.S_IMODE(config.key_path.stat().st_mode) == 0o600
            assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700
        assert daemon.api_key.startswith("tk_")
        state = json.loads(config.state_path.read_text())
        assert state["pid"] == daemon.process.pid
        assert state["version"] == mam_mcp.__version__
        assert state["httpPort"] > 0 and state["smtpPort"] > 0 and state["startedAt"].endswith("Z")
        async with daemon.client() as http:
            health = (await http.get("/_mam/health")).json()
            assert health == {
                "ok": True,
                "service": "mam-mcp-local",
                "version": mam_mcp.__version__,
                "pid": daemon.pid,
                "smtpPort": daemon.smtp_port,
            }
            created = await http.post("/v1/inboxes", json={"username": "signup"})
            assert created.status_code == 201, created.text
            listed = (await http.get("/v1/inboxes")).json()
            assert [inbox["email"] for inbox in listed["inboxes"]] == [f"signup@{config.domain}"]
            assert (await http.get("/v1/inboxes", headers={"X-API-Key": "tk_wrong"})).status_code == 401
        assert daemon.api_key not in daemon.log()

        # Shutdown needs the tenant key; with it the daemon exits cleanly and removes its state file.
        async with daemon.client() as http:
            refused = await http.post("/_mam/shutdown", headers={"X-API-Key": "tk_not-the-key"})
            assert refused.status_code == 401
            accepted = await http.post("/_mam/shutdown")
            assert accepted.status_code == 202
        assert await daemon.wait_exit() == 0
        assert not config.state_path.exists()


async def test_restart_reuses_the_key_and_the_data(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as first:
        first_key = first.api_key
        async with first.client() as http:
            assert (await http.post("/v1/inboxes", json={"username": "kept"})).status_code == 201
            await http.post("/_mam/shutdown")
        await first.wait_exit()
    async with daemon_process(config) as second:
        assert second.api_key == first_key
        async with second.client() as http:
            emails = [i["email"] for i in (await http.get("/v1/inboxes")).json()["inboxes"]]
        assert emails == [f"kept@{config.domain}"]


async def test_a_key_file_unknown_to_a_reset_database_is_replaced(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    config.data_dir.mkdir(parents=True)
    write_secret_file(config.key_path, "tk_from-a-database-that-was-deleted\n")
    async with daemon_process(config) as daemon:
        assert daemon.api_key.startswith("tk_") and daemon.api_key != "tk_from-a-database-that-was-deleted"
        async with daemon.client() as http:
            assert (await http.get("/v1/inboxes")).status_code == 200


async def test_idle_daemon_stops_by_itself_and_removes_its_state_file(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data", idle_timeout_seconds=0.5)
    async with daemon_process(config) as daemon:
        assert await daemon.wait_exit() == 0
        assert not config.state_path.exists()
        assert "no client for" in daemon.log()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_the_daemon_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon:
        daemon.process.send_signal(signum)
        assert await daemon.wait_exit() == 0
        assert not config.state_path.exists()


async def test_second_daemon_on_the_same_data_dir_refuses_to_run(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config):
        with pytest.raises(AssertionError, match="another mam-mcp daemon is running"):
            async with daemon_process(config, lock_wait=0.2):
                pass


async def test_smtp_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = daemon_config(tmp_path / "data", smtp_port=port)
        with pytest.raises(AssertionError) as caught:
            async with daemon_process(config):
                pass
    assert f"SMTP port {port}" in str(caught.value) and "MAM_LOCAL_SMTP_PORT" in str(caught.value)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_mam_mcp_local_runs_in_the_foreground_and_never_prints_the_key(tmp_path: Path) -> None:
    import subprocess

    from anyio.streams.buffered import BufferedByteReceiveStream

    from tests.local.daemon_process import REPO_ROOT, child_env

    data_dir = tmp_path / "data"
    env = child_env()
    env.pop("MYAGENTMAIL_API_KEY", None)
    env.pop("MYAGENTMAIL_KEY", None)
    process = await anyio.open_process(
        [sys.executable, "-m", "mam_mcp.cli", "--mode", "local", "--data-dir", str(data_dir), "local",
         "--http-port", "0", "--smtp-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            banner = (
                await BufferedByteReceiveStream(process.stdout).receive_until(b"Press Ctrl-C", 8192)
            ).decode()
        state = json.loads((data_dir / "daemon.json").read_text())
        key = (data_dir / "api_key").read_text().strip()
        assert str(data_dir) in banner and str(data_dir / "api_key") in banner
        assert f"http://127.0.0.1:{state['httpPort']}/v1" in banner
        assert f"SMTP_HOST=127.0.0.1 SMTP_PORT={state['smtpPort']}" in banner
        assert "Idle stop: never" in banner
        assert key not in banner
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(15):
            assert await process.wait() == 0
        assert process.stderr is not None
        log = b""
        with anyio.fail_after(5), contextlib.suppress(anyio.EndOfStream):
            while True:  # until EOF: the process has exited
                log += await process.stderr.receive(65536)
        assert b"listening:" in log and key.encode() not in log
        assert not (data_dir / "daemon.json").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


async def test_run_daemon_in_process_sets_ready_and_returns_after_shutdown(tmp_path: Path) -> None:
    import httpx2

    from mam_mcp.local.daemon.run import run_daemon

    config = daemon_config(tmp_path / "data")
    ready = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: run_daemon(config, ready=ready))
            await ready.wait()
            state = json.loads(config.state_path.read_text())
            key = config.key_path.read_text().strip()
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{state['httpPort']}") as http:
                assert (await http.get("/_mam/health")).json()["smtpPort"] == state["smtpPort"]
                assert (
                    await http.post("/_mam/shutdown", headers={"Authorization": f"Bearer {key}"})
                ).status_code == 202
    assert not config.state_path.exists()


def test_importing_the_daemon_and_launcher_loads_no_mcp_layer_and_starts_nothing() -> None:
    import subprocess

    from tests.local.daemon_process import REPO_ROOT, child_env

    code = (
        "import sys, threading, mam_mcp.local.daemon.run, mam_mcp.local.daemon.launcher\n"
        "bad = [m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mam_mcp.tools', 'mam_mcp.server'))]\n"
        "heavy = [m for m in ('mam_mcp.local.store', 'mam_mcp.local.api') if m in sys.modules]\n"
        "assert not bad and not heavy and threading.active_count() == 1, (bad, heavy)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env(), cwd=REPO_ROOT, timeout=60)


async def test_mam_mcp_local_refuses_when_the_data_dir_already_has_a_daemon(tmp_path: Path) -> None:

    from tests.local.daemon_process import REPO_ROOT, child_env

    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as running:
        command = [sys.executable, "-m", "mam_mcp.cli", "--mode", "local", "--data-dir", str(config.data_dir)]
        result = await anyio.run_process(
            [*command, "local", "--http-port", "0", "--smtp-port", "0"],
            env=child_env(),
            cwd=REPO_ROOT,
            check=False,
        )
        assert result.returncode == 1
        assert (
            f"pid {running.pid}" in result.stdout.decode() and running.api_key not in result.stdout.decode()
        )
        assert running.process.returncode is None  # the running daemon is untouched


def test_mam_mcp_local_help_never_suggests_a_relay_password_on_the_command_line() -> None:
    import argparse

    from mam_mcp.commands.local import add_arguments

    parser = argparse.ArgumentParser(prog="mam-mcp local")
    add_arguments(parser)
    relay_help = " ".join(parser.format_help().split())
    assert "user:pass" not in relay_help and "MAM_SMTP_RELAY_URL instead" in relay_help


async def test_a_loosened_key_file_is_tightened_back_to_0600(tmp_path: Path) -> None:
    import os
    import stat

    from mam_mcp.local.config import LocalConfig
    from mam_mcp.local.daemon.data_dir import load_or_mint_key

    config = LocalConfig(data_dir=tmp_path, http_port=0, smtp_port=0)
    config.key_path.write_text("tk_existing_key_0123456789\n")
    os.chmod(config.key_path, 0o644)

    def never_mint() -> str:
        raise AssertionError("an existing key is read, not minted again")

    assert await load_or_mint_key(config, never_mint) == "tk_existing_key_0123456789"
    assert stat.S_IMODE(config.key_path.stat().st_mode) == 0o600


def _server_side_of(client_address: tuple[str, int]) -> socket.socket:
    """This process's accepted socket whose peer is `client_address` (a dup: the daemon's own socket stays open)."""
    for name in os.listdir("/dev/fd"):
        try:
            candidate = socket.fromfd(int(name), socket.AF_INET, socket.SOCK_STREAM)
        except (OSError, ValueError):
            continue
        try:
            if candidate.getpeername() == client_address:
                return candidate
        except OSError:
            pass
        candidate.close()
    raise AssertionError(f"no accepted socket for {client_address}")


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="finds the daemon's socket through /dev/fd")
async def test_daemon_http_connections_have_tcp_nodelay(tmp_path: Path) -> None:
    # Without it, a kept-alive request waits ~40 ms for a delayed ACK (Nagle): uvicorn writes
    # headers and body separately. asyncio sets it only on sockets whose listener is IPPROTO_TCP.
    import httpx2

    from mam_mcp.local.daemon.run import run_daemon

    config = daemon_config(tmp_path / "data")
    ready = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: run_daemon(config, ready=ready))
            await ready.wait()
            state = json.loads(config.state_path.read_text())
            key = config.key_path.read_text().strip()
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{state['httpPort']}", headers={"X-API-Key": key}) as http:
                first = await http.get("/v1/inboxes")
                second = await http.get("/v1/inboxes")  # the same kept-alive connection
                assert first.status_code == second.status_code == 200
                client = second.extensions["network_stream"].get_extra_info("socket")
                assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "our client side lacks TCP_NODELAY"
                with _server_side_of(client.getsockname()) as server:
                    assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "the daemon's side lacks TCP_NODELAY"
                await http.post("/_mam/shutdown")


async def test_the_daemon_refuses_what_a_web_page_could_send_through_dns_rebinding(tmp_path: Path) -> None:
    import httpx2

    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon, daemon.client() as api:
        assert (await api.get("/v1/inboxes")).status_code == 200
        assert (await api.get("/v1/inboxes", headers={"Host": f"localhost:{daemon.state['httpPort']}"})).status_code == 200
        assert (await api.get("/v1/inboxes", headers={"Origin": f"http://127.0.0.1:{daemon.state['httpPort']}"})).status_code == 200
        for headers in ({"Host": "attacker.example"}, {"Origin": "http://attacker.example"}, {"Origin": "null"},
                        {"Host": "127.0.0.1.attacker.example"}):
            refused = await api.get("/v1/inboxes", headers=headers)
            assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN_ORIGIN", headers
        ws_url = f"{daemon.base_url}/v1/ws?api_key={daemon.api_key}"
        async with httpx2.AsyncClient() as raw:
            async with raw.websocket(ws_url, timeout=5) as ws:  # our own client: no Origin, accepted
                assert ws is not None
            with pytest.raises(Exception):  # a page's Origin: the upgrade is refused before the handshake
                async with raw.websocket(ws_url, headers={"Origin": "http://attacker.example"}, timeout=5):
                    pass
