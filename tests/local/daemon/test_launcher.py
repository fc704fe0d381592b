"""The launcher: lazy start, reuse, stale-version replacement, one daemon under a start race."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import mam_mcp
from mam_mcp.local.daemon.launcher import DaemonHandle, DaemonStartError, ensure_daemon, probe_daemon
from tests.local.daemon_process import (
    REPO_ROOT,
    STALE_DAEMON_PRELUDE,
    STALE_VERSION,
    child_env,
    daemon_config,
    daemon_process,
    kill_pid,
)


async def _serve_http_reply(reply: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def launched(tmp_path: Path) -> AsyncIterator[list[Path]]:
    """Data dirs whose launcher-started daemon is killed at the end, whatever happens."""
    data_dirs: list[Path] = []
    yield data_dirs
    for data_dir in data_dirs:
        pid = _state_pid(data_dir)
        if pid is not None:
            kill_pid(pid)


def _state_pid(data_dir: Path) -> int | None:
    try:
        return int(json.loads((data_dir / "daemon.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


async def _health(handle: DaemonHandle) -> dict[str, object]:
    async with httpx2.AsyncClient(timeout=5) as http:
        return (await http.get(f"{handle.base_url}/_mam/health")).json()


async def test_first_call_starts_the_daemon_and_later_calls_reuse_it(
    tmp_path: Path, launched: list[Path]
) -> None:
    config = daemon_config(tmp_path / "data")
    launched.append(config.data_dir)
    config.data_dir.mkdir()
    (config.data_dir / "daemon.log").write_bytes(b"old line\n" * 1_200_000)  # over 10 MB: rotated at start
    first = await ensure_daemon(config)
    assert first.started is True
    assert (config.data_dir / "daemon.log.1").read_bytes().startswith(b"old line\n")
    assert b"old line" not in (config.data_dir / "daemon.log").read_bytes()
    assert first.api_key == config.key_path.read_text().strip() and first.api_key not in repr(first)
    health = await _health(first)
    assert health["version"] == mam_mcp.__version__ and health["smtpPort"] == first.smtp_port
    again = await ensure_daemon(config)
    assert again == DaemonHandle(first.base_url, first.api_key, first.smtp_port, started=False)
    assert (await _health(again))["pid"] == health["pid"]
    async with httpx2.AsyncClient(base_url=again.base_url, headers={"X-API-Key": again.api_key}) as http:
        assert (await http.get("/v1/inboxes")).status_code == 200
    assert "listening:" in (config.data_dir / "daemon.log").read_text()


async def test_a_daemon_started_by_hand_is_reused(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as by_hand:  # as `mam-mcp local` would run it
        handle = await ensure_daemon(config)
        assert not handle.started and handle.base_url == by_hand.base_url
        assert handle.api_key == by_hand.api_key and handle.smtp_port == by_hand.smtp_port


async def test_a_fixed_port_is_used_as_configured(tmp_path: Path, launched: list[Path]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = daemon_config(tmp_path / "data", http_port=port)
    launched.append(config.data_dir)
    handle = await ensure_daemon(config)
    assert handle.base_url == f"http://127.0.0.1:{port}" and handle.started


async def test_the_daemon_of_another_data_dir_on_the_port_is_not_used(
    tmp_path: Path, launched: list[Path]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    theirs = daemon_config(tmp_path / "theirs", http_port=port)
    launched.append(theirs.data_dir)
    await ensure_daemon(theirs)
    with pytest.raises(DaemonStartError) as caught:
        await ensure_daemon(daemon_config(tmp_path / "ours", http_port=port), timeout=10)
    message = str(caught.value)
    assert "another data dir" in message and f"port {port}" in message and "MAM_LOCAL_HTTP_PORT" in message
    assert not (tmp_path / "ours" / "api_key").exists()  # never given the other tenant's key


async def test_a_daemon_of_another_version_is_stopped_and_replaced(
    tmp_path: Path, launched: list[Path]
) -> None:
    config = daemon_config(tmp_path / "data")
    launched.append(config.data_dir)
    async with daemon_process(config, prelude=STALE_DAEMON_PRELUDE) as stale:
        probe = await probe_daemon(config)
        assert probe.kind == "ours" and probe.health and probe.health["version"] == STALE_VERSION
        handle = await ensure_daemon(config)
        assert await stale.wait_exit() == 0  # asked to stop with its key, not killed
    assert handle.started
    health = await _health(handle)
    assert health["version"] == mam_mcp.__version__ and health["pid"] != stale.pid


async def test_a_daemon_that_dies_during_start_is_reported_with_its_log(
    tmp_path: Path, launched: list[Path]
) -> None:
    import socket

    config_dir = tmp_path / "data"
    launched.append(config_dir)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DaemonStartError) as caught:
            await ensure_daemon(daemon_config(config_dir, smtp_port=port), timeout=20)
        message = str(caught.value)
        assert f"SMTP port {port}" in message and "MAM_LOCAL_SMTP_PORT" in message
        assert str(config_dir / "daemon.log") in message
        with pytest.raises(DaemonStartError) as again:  # the log now holds both starts' lines
            await ensure_daemon(daemon_config(config_dir, smtp_port=port), timeout=20)
    assert str(again.value).count(f"SMTP port {port}") == 1  # only this start's lines, not the same sentence twice
    assert (config_dir / "daemon.log").read_text().count(f"SMTP port {port}") == 2


async def test_concurrent_calls_in_four_threads_start_one_daemon(
    tmp_path: Path, launched: list[Path]
) -> None:
    config = daemon_config(tmp_path / "data")
    launched.append(config.data_dir)
    handles: list[DaemonHandle] = []

    def call_in_own_loop() -> None:  # each thread its own event loop, as separate hosts would have
        handles.append(anyio.run(functools.partial(ensure_daemon, config, timeout=30)))

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(functools.partial(anyio.to_thread.run_sync, call_in_own_loop))
    assert sorted(h.started for h in handles) == [False, False, False, True]
    assert len({h.base_url for h in handles}) == 1


RACE_CHILD = """
import json, sys, anyio
from functools import partial
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.launcher import ensure_daemon
config = LocalConfig.model_validate_json(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # the parent releases all racers at once
handle = anyio.run(partial(ensure_daemon, config, timeout=60))
print(json.dumps({"base_url": handle.base_url, "started": handle.started}), flush=True)
"""


async def test_four_processes_racing_start_exactly_one_daemon(tmp_path: Path, launched: list[Path]) -> None:
    config = daemon_config(tmp_path / "data")
    launched.append(config.data_dir)
    racers = [
        await anyio.open_process(
            [sys.executable, "-c", RACE_CHILD, config.model_dump_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            cwd=REPO_ROOT,
        )
        for _ in range(4)
    ]
    try:
        readers = [BufferedByteReceiveStream(r.stdout) for r in racers if r.stdout is not None]
        with anyio.fail_after(30):
            for reader in readers:
                assert await reader.receive_until(b"\n", 1024) == b"ready"
            for racer in racers:
                assert racer.stdin is not None
                await racer.stdin.send(b"go\n")
            results = [json.loads(await reader.receive_until(b"\n", 4096)) for reader in readers]
            for racer in racers:
                assert await racer.wait() == 0
    finally:
        for racer in racers:
            if racer.returncode is None:
                racer.kill()
                await racer.wait()
    assert sorted(r["started"] for r in results) == [False, False, False, True]
    assert len({r["base_url"] for r in results}) == 1
    log = (config.data_dir / "daemon.log").read_text()
    assert log.count("listening:") == 1 and "another mam-mcp daemon" not in log


async def test_a_foreign_program_on_the_http_port_is_a_clear_error(tmp_path: Path) -> None:
    body = b'{"service": "something-else"}'
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    server, port = await _serve_http_reply(reply)
    try:
        config = daemon_config(tmp_path / "data", http_port=port)
        with pytest.raises(DaemonStartError) as caught:
            await ensure_daemon(config, timeout=10)
    finally:
        server.close()
    message = str(caught.value)
    assert f"port {port}" in message and "MAM_LOCAL_HTTP_PORT" in message
    assert not config.state_path.exists()  # nothing was started


async def test_a_non_http_listener_on_the_port_is_reported_as_foreign(tmp_path: Path) -> None:
    server, port = await _serve_http_reply(b"220 not http at all\r\n")
    try:
        probe = await probe_daemon(daemon_config(tmp_path, http_port=port))
    finally:
        server.close()
    assert probe.kind == "foreign" and probe.port == port


async def test_a_crashed_ephemeral_daemons_port_now_used_by_another_program_is_ignored(
    tmp_path: Path, launched: list[Path]
) -> None:
    server, port = await _serve_http_reply(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    config = daemon_config(tmp_path / "data")  # http_port 0: the port comes from the state file
    launched.append(config.data_dir)
    config.data_dir.mkdir()
    config.state_path.write_text(json.dumps({"pid": 2**22 + 1, "httpPort": port, "smtpPort": 1}))
    try:
        handle = await ensure_daemon(config)
    finally:
        server.close()
    assert handle.started and handle.base_url != f"http://127.0.0.1:{port}"
    assert (await _health(handle))["pid"] == _state_pid(config.data_dir)


IMPOSTOR = r"""
import json, os, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, pid, version, address = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Impostor(BaseHTTPRequestHandler):
    def _answer(self):
        print(json.dumps({"line": self.requestline, "headers": dict(self.headers)}), flush=True)
        body = json.dumps({"service": "mam-mcp-local", "version": version, "pid": pid,
                           "httpPort": port, "smtpPort": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def server_bind(self):
        if self.address_family == socket.AF_INET6:  # dual-stack unless it is the IPv6-only case
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(address == "::"))
        super().server_bind()


server = Server((address, port), Impostor)
print("ready", flush=True)
server.serve_forever()
"""


# The impostor runs as another user: the system's Python (ours may live in a home only root reads).
SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
AS_ANOTHER_USER = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or not Path("/proc/net/tcp").exists() or not SYSTEM_PYTHON,
    reason="needs root (to run a program as another user), Linux's /proc/net/tcp and a system python3",
)


def _free_port() -> int:
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        return int(probe_port.getsockname()[1])


@contextlib.contextmanager
def another_users_server(port: int, pid: int, version: str, address: str) -> Iterator[list[bytes]]:
    """IMPOSTOR running as `nobody` on `address`:`port`; yields the list that gets what it heard
    (one JSON line per request) once it has stopped."""
    heard: list[bytes] = []
    server = subprocess.Popen(
        [str(SYSTEM_PYTHON), "-I", "-c", IMPOSTOR, str(port), str(pid), version, address],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
        user=65534, group=65534, extra_groups=[],  # nobody
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        yield heard
    finally:
        server.terminate()
        heard.append(server.communicate(timeout=10)[0])


@AS_ANOTHER_USER
@pytest.mark.parametrize("address", ["127.0.0.1", "::ffff:127.0.0.1", "0.0.0.0"])
async def test_another_users_program_claiming_to_be_our_daemon_is_never_sent_the_key(
    tmp_path: Path, address: str
) -> None:
    """Our daemon died without cleaning up (its state file stays); another user's program takes the
    port and answers health with the pid from the state file (visible in `ps` while it ran). Nothing
    in that answer is secret: only who owns the listening socket tells them apart. The tenant key
    must never be sent to it."""
    config = daemon_config(tmp_path / "data")
    config.data_dir.mkdir(mode=0o700)
    port, stale_pid = _free_port(), 2**22 + 7
    config.state_path.write_text(json.dumps({"pid": stale_pid, "httpPort": port, "smtpPort": 1}))
    config.key_path.write_text("tk_" + "s" * 40 + "\n")
    os.chmod(config.key_path, 0o600)
    config = config.model_copy(update={"http_port": port})
    with another_users_server(port, stale_pid, mam_mcp.__version__, address) as heard:
        probe = await probe_daemon(config)
        assert probe.kind == "foreign"  # it says it is ours, names our pid: its socket is not ours
        with pytest.raises(DaemonStartError, match=f"port {port}"):
            await ensure_daemon(config, timeout=10)
    assert b"tk_" not in heard[0], heard  # it was asked who it is, never sent the key
    assert heard[0].count(b'"line"') >= 1


@AS_ANOTHER_USER
async def test_our_daemon_is_ours_beside_another_users_ipv6_only_listener_on_its_port(tmp_path: Path) -> None:
    """Another user's IPv6-only wildcard listener on the same port number cannot take our IPv4
    connections: the socket on our exact address decides, and the daemon is used."""
    port = _free_port()
    with another_users_server(port, 1, "0", "::"):
        async with daemon_process(daemon_config(tmp_path / "data", http_port=port)) as running:
            probe = await probe_daemon(running.config)
            assert probe.kind == "ours" and probe.owned, probe


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux's /proc/net/tcp says who owns a socket")
def test_the_owner_of_a_listening_socket_is_read_from_the_system() -> None:
    from mam_mcp.local.daemon.launcher import listening_uids

    with socket.socket() as listener, socket.socket() as bound_only:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        bound_only.bind(("127.0.0.1", 0))  # not listening: not counted
        assert listening_uids("127.0.0.1", listener.getsockname()[1]) == {os.getuid()}
        assert listening_uids("127.0.0.1", bound_only.getsockname()[1]) == set()
    assert listening_uids("not an address", 1) is None


@AS_ANOTHER_USER
async def test_a_client_stops_sending_its_key_when_another_user_takes_the_daemons_port() -> None:
    """The daemon stops when idle; a client made while it ran would send its next request (key and
    all) to whatever took the port. The client's guard checks the port's owner before a request
    leaves and stops it unsent."""
    from mam_mcp.client import MamClient
    from mam_mcp.client.errors import ConnectionFailed
    from mam_mcp.local.daemon.launcher import daemon_port_guard

    port = _free_port()
    with another_users_server(port, 1, mam_mcp.__version__, "127.0.0.1") as heard:
        client = MamClient(
            base_url=f"http://127.0.0.1:{port}", api_key="tk_" + "k" * 40,
            before_send=daemon_port_guard("127.0.0.1", port),
        )  # fmt: skip
        async with client:
            with pytest.raises(ConnectionFailed, match="could not connect"):
                await client.inboxes.list()
    assert heard == [b""], heard  # not a single request reached it


async def test_the_port_guard_lets_requests_to_our_own_listener_through_and_checks_at_most_every_10_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mam_mcp.local.daemon import launcher

    calls: list[tuple[str, int]] = []
    real = launcher.listener_is_another_users

    def counting(host: str, port: int) -> bool:
        calls.append((host, port))
        return real(host, port)

    monkeypatch.setattr(launcher, "listener_is_another_users", counting)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        guard = launcher.daemon_port_guard("127.0.0.1", port)
        request = httpx2.Request("GET", f"http://127.0.0.1:{port}/v1/inboxes")
        for _ in range(5):
            await guard(request)  # ours: nothing raised
    assert calls == [("127.0.0.1", port)]  # one look for five requests within the interval


async def test_requests_arriving_during_the_ports_owner_check_wait_for_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parallel tool calls after a quiet spell: none may leave while the look is still running, and
    a look that found another user's program counts for none of them."""
    from mam_mcp.local.daemon import launcher

    looks: list[float] = []

    def slow_and_foreign(host: str, port: int) -> bool:
        looks.append(time.monotonic())
        time.sleep(0.05)
        return True

    monkeypatch.setattr(launcher, "listener_is_another_users", slow_and_foreign)
    guard = launcher.daemon_port_guard("127.0.0.1", 9)
    request = httpx2.Request("GET", "http://127.0.0.1:9/v1/inboxes")
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await guard(request)
            outcomes.append("sent")
        except httpx2.ConnectError:
            outcomes.append("stopped")

    async with anyio.create_task_group() as tasks:
        for _ in range(3):
            tasks.start_soon(one)
    assert outcomes == ["stopped"] * 3 and len(looks) == 3
