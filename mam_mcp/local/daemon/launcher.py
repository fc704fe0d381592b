"""Find the local backend daemon of a data dir, or start it: lazily, once, race-free.

`ensure_daemon(config)` is what an MCP server in local mode calls on its first tool call.
A daemon is "ours" when `/_mam/health` names our service and version AND its pid is the
one in this data dir's state file (another data dir's daemon may hold the port) AND, where the
system says who owns the listening socket (Linux: /proc/net/tcp), it is this user: nothing in a
health answer is secret, so another user's program on the port after our daemon died could claim
to be it, and would be sent the tenant key.
Starting is serialised by a file lock in the data dir (`filelock`: Windows has no fcntl),
so N concurrent callers — threads or processes — start exactly one daemon.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import filelock
import httpx2

import mam_mcp
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.data_dir import PRIVATE_FILE_MODE, make_private_dir, open_private

__all__ = [
    "DAEMON_SERVICE_NAME",
    "DaemonHandle",
    "DaemonProbe",
    "DaemonStartError",
    "daemon_port_guard",
    "ensure_daemon",
    "listener_is_another_users",
    "listening_uids",
    "probe_daemon",
    "stop_daemon",
    "wait_for_exit",
    "where_running",
]

DAEMON_SERVICE_NAME = "mam-mcp-local"
HTTP_PORT_ENV = "MAM_LOCAL_HTTP_PORT"
_PROBE_TIMEOUT_SECONDS = 2.0
_POLL_FIRST_SECONDS = 0.02
_POLL_MAX_SECONDS = 0.25
_LOG_TAIL_LINES = 5
_SETTLE_SECONDS = 2.0
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


class DaemonStartError(RuntimeError):
    """The daemon could not be found or started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class DaemonHandle:
    """How to reach a running daemon. `api_key` is the tenant key; it never shows in repr."""

    base_url: str  # http://127.0.0.1:<port>, without /v1
    api_key: str = field(repr=False)
    smtp_port: int
    started: bool  # True when this call started the daemon


@dataclass(frozen=True, slots=True)
class DaemonProbe:
    """What answers on the daemon's HTTP port."""

    kind: Literal["none", "ours", "foreign"]
    port: int
    health: dict[str, Any] | None = None
    owned: bool = False  # the health pid is the pid in this data dir's state file

    @property
    def current(self) -> bool:
        """Our daemon, of this data dir and this version: use it."""
        return (
            self.kind == "ours"
            and self.owned
            and self.health is not None
            and (self.health.get("version") == mam_mcp.__version__)
        )


def _read_state(config: LocalConfig) -> dict[str, Any] | None:
    try:
        state = json.loads(config.state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def where_running(config: LocalConfig) -> LocalConfig:
    """`config` with the HTTP port this data dir's daemon wrote to its state file, when that differs
    (a daemon started with other port settings is still this data dir's daemon)."""
    state = _read_state(config)
    port = state.get("httpPort") if state else None
    if isinstance(port, int) and port and port != config.http_port:
        return config.model_copy(update={"http_port": port})
    return config


def _http_port(config: LocalConfig) -> int:
    """The configured port, or (port 0 = ephemeral) the one the running daemon reported."""
    if config.http_port:
        return config.http_port
    state = _read_state(config)
    port = state.get("httpPort") if state else None
    return port if isinstance(port, int) else 0


async def probe_daemon(config: LocalConfig, *, passive: bool = False) -> DaemonProbe:
    """Ask `/_mam/health` on the daemon's port who is there (never raises for network errors).

    `passive`: ask `/_mam/status` instead, which does not count as a client (the idle clock keeps
    running) and adds uptime and idle time to `health`; a daemon too old for it is asked for health.
    """
    port = _http_port(config)
    if not port:
        return DaemonProbe(kind="none", port=0)
    base = f"http://{config.host}:{port}"
    try:
        async with httpx2.AsyncClient(timeout=_PROBE_TIMEOUT_SECONDS, trust_env=False) as http:
            response = await http.get(base + ("/_mam/status" if passive else "/_mam/health"))
            if passive and response.status_code == 404:
                response = await http.get(base + "/_mam/health")
    except httpx2.ConnectError:
        return DaemonProbe(kind="none", port=port)
    except httpx2.HTTPError:
        return DaemonProbe(kind="foreign", port=port)
    try:
        health = response.json()
    except ValueError:
        return DaemonProbe(kind="foreign", port=port)
    if (
        response.status_code != 200
        or not isinstance(health, dict)
        or (health.get("service") != DAEMON_SERVICE_NAME)
    ):
        return DaemonProbe(kind="foreign", port=port)
    if await anyio.to_thread.run_sync(listener_is_another_users, config.host, port):
        # It says it is a mam-mcp daemon, but another user's process listens there: never ours,
        # whatever pid it names (our key must not go to it).
        return DaemonProbe(kind="foreign", port=port)
    state = _read_state(config)
    owned = state is not None and state.get("pid") == health.get("pid")
    return DaemonProbe(kind="ours", port=port, health=health, owned=owned)


def _proc_address(ip: str) -> tuple[str, ...] | None:
    """How /proc/net/tcp{,6} write `ip` (hex of 32-bit words in this machine's byte order): an IPv4
    address both plainly (tcp) and IPv4-mapped (tcp6, `::ffff:a.b.c.d`)."""
    def hexed(packed: bytes) -> str:
        return "".join(f"{word:08X}" for word in struct.unpack(f"={len(packed) // 4}I", packed))

    try:
        v4 = socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        pass
    else:
        return hexed(v4), hexed(b"\0" * 10 + b"\xff\xff" + v4)
    try:
        return (hexed(socket.inet_pton(socket.AF_INET6, ip)),)
    except OSError:
        return None


_ANYWHERE = ("0" * 8, "0" * 32, "0" * 16 + "FFFF0000" + "0" * 8)  # 0.0.0.0, ::, ::ffff:0.0.0.0


def listening_uids(host: str, port: int) -> set[int] | None:
    """The user ids owning the TCP sockets that accept connections to `host`:`port`, from
    /proc/net/tcp and tcp6: the listeners on exactly that address (IPv4-mapped too) when there are
    any, else those on every address. None where the system does not say (no /proc: macOS, Windows).
    Reads two kernel tables (a few ms): call it off the event loop."""
    wanted = _proc_address(host)
    if wanted is None:
        return None
    exact: set[int] = set()
    anywhere: set[int] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)  # the header
                readable = True
                for row in rows:
                    fields = row.split()
                    if len(fields) < 8 or fields[3] != "0A":  # 0A: LISTEN
                        continue
                    address, _, hex_port = fields[1].partition(":")
                    if int(hex_port, 16) != port:
                        continue
                    if address in wanted:
                        exact.add(int(fields[7]))
                    elif address in _ANYWHERE:
                        anywhere.add(int(fields[7]))
        except (OSError, ValueError):
            continue
    if not readable:
        return None
    # The kernel hands a connection to the listener on its exact address before a wildcard one.
    return exact or anywhere


def listener_is_another_users(host: str, port: int) -> bool:
    """Whether the socket that would take a connection to `host`:`port` belongs to another user
    (False when the system does not say, or nothing listens)."""
    uids = listening_uids(host, port)
    getuid = getattr(os, "getuid", None)
    return bool(uids) and getuid is not None and uids != {getuid()}


OWNER_RECHECK_SECONDS = 10.0


def daemon_port_guard(host: str, port: int) -> Callable[[httpx2.Request], Awaitable[None]]:
    """A client's check before a request leaves for the daemon (`MamClient(before_send=...)`): the
    port is still this user's. The daemon stops when idle; another user's program that takes its
    port meanwhile would get the next request, key and all. At most every OWNER_RECHECK_SECONDS (a
    few ms, in a thread); another user's socket stops the request unsent as a connection failure,
    and the server's reconnect then finds the port foreign and says so."""
    checked_at = [float("-inf")]
    lock = anyio.Lock()  # requests arriving during a look wait for its answer, none goes out before it

    async def check(request: httpx2.Request) -> None:
        if time.monotonic() - checked_at[0] < OWNER_RECHECK_SECONDS:
            return
        async with lock:
            if time.monotonic() - checked_at[0] < OWNER_RECHECK_SECONDS:
                return  # looked at while this request waited
            if await anyio.to_thread.run_sync(listener_is_another_users, host, port):
                raise httpx2.ConnectError(
                    f"another user's program now listens on {host}:{port}, the local daemon's port",
                    request=request,
                )
            checked_at[0] = time.monotonic()  # only a look that found our daemon counts

    return check


def _read_key(config: LocalConfig) -> str:
    try:
        return config.key_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DaemonStartError(
            f"the daemon's key file {config.key_path} cannot be read: {exc.strerror}"
        ) from None


def _handle(config: LocalConfig, probe: DaemonProbe, *, started: bool) -> DaemonHandle:
    assert probe.health is not None
    smtp_port = probe.health.get("smtpPort")
    return DaemonHandle(
        base_url=f"http://{config.host}:{probe.port}",
        api_key=_read_key(config),
        smtp_port=smtp_port if isinstance(smtp_port, int) else config.smtp_port,
        started=started,
    )


def _port_taken_error(config: LocalConfig, probe: DaemonProbe) -> DaemonStartError:
    if probe.kind == "ours":
        return DaemonStartError(
            f"HTTP port {probe.port} on {config.host} is served by a mam-mcp daemon of another data dir "
            f"(not {config.data_dir}); set {HTTP_PORT_ENV} to a free port for this one"
        )
    return DaemonStartError(
        f"HTTP port {probe.port} on {config.host} is in use by another program; "
        f"set {HTTP_PORT_ENV} to a free port"
    )


async def ensure_daemon(config: LocalConfig, *, timeout: float = 15.0) -> DaemonHandle:
    """Return a handle to this data dir's daemon, starting or replacing it when needed."""
    deadline = time.monotonic() + timeout
    probe = await probe_daemon(config)
    if probe.current:
        return _handle(config, probe, started=False)
    make_private_dir(config.data_dir)
    lock = filelock.FileLock(config.lock_path, mode=PRIVATE_FILE_MODE, thread_local=False)
    await _acquire(lock, deadline, config)
    try:
        # Someone may have started it while we waited for the lock.
        probe = await _settled_probe(config, deadline)
        if probe.current:
            return _handle(config, probe, started=False)
        stale_ephemeral = config.http_port == 0 and not (probe.kind == "ours" and probe.owned)
        if stale_ephemeral:
            probe = DaemonProbe(kind="none", port=0)  # a dead daemon's port, reused: a new one picks its own
        if probe.kind == "foreign" or (probe.kind == "ours" and not probe.owned):
            raise _port_taken_error(config, probe)
        if probe.kind == "ours":
            await stop_daemon(config, probe, deadline=deadline)
        process, log_start = _spawn(config)
        try:
            probe = await _wait_ready(config, process, deadline, log_start)
        finally:
            # Reap it when it exits (idle shutdown) so no zombie lingers under a long-lived host.
            threading.Thread(target=process.wait, name="mam-daemon-reaper", daemon=True).start()
        return _handle(config, probe, started=True)
    finally:
        lock.release()


async def _settled_probe(config: LocalConfig, deadline: float) -> DaemonProbe:
    """Probe; a daemon of ours whose state file does not name it yet may be just starting
    (e.g. `mam-mcp local` run by hand): give it a moment to write the file before judging."""
    settle_until = min(deadline, time.monotonic() + _SETTLE_SECONDS)
    delay = _POLL_FIRST_SECONDS
    while True:
        probe = await probe_daemon(config)
        if not (probe.kind == "ours" and not probe.owned) or time.monotonic() >= settle_until:
            return probe
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_SECONDS)


async def _acquire(lock: filelock.FileLock, deadline: float, config: LocalConfig) -> None:
    """Poll the lock without blocking the event loop or a worker thread (cancellation-safe)."""
    delay = _POLL_FIRST_SECONDS
    while True:
        try:
            lock.acquire(blocking=False)
            return
        except filelock.Timeout:
            if time.monotonic() >= deadline:
                raise DaemonStartError(
                    f"timed out waiting for the start lock {config.lock_path} (another process is starting "
                    f"the daemon; its log is {_log_path(config)})"
                ) from None
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_SECONDS)


async def stop_daemon(config: LocalConfig, probe: DaemonProbe, *, deadline: float) -> None:
    """Stop this data dir's daemon (e.g. of another version) and wait until its port is free.

    Asks politely with `POST /_mam/shutdown` and the tenant key (works on Windows); a daemon
    too old to have that route gets SIGTERM by the pid both its health and state file name.
    """
    stopped = False
    try:
        async with httpx2.AsyncClient(timeout=_PROBE_TIMEOUT_SECONDS, trust_env=False) as http:
            response = await http.post(
                f"http://{config.host}:{probe.port}/_mam/shutdown", headers={"X-API-Key": _read_key(config)}
            )
        stopped = response.status_code in (200, 202)
    except (httpx2.HTTPError, DaemonStartError):
        stopped = False
    pid = probe.health.get("pid") if probe.health else None
    if not stopped and probe.owned and isinstance(pid, int):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    delay = _POLL_FIRST_SECONDS
    while (await probe_daemon(config)).kind != "none":
        if time.monotonic() >= deadline:
            raise DaemonStartError(
                f"the old daemon on port {probe.port} did not stop in time; see {_log_path(config)}"
            )
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_SECONDS)


async def wait_for_exit(config: LocalConfig, *, deadline: float) -> bool:
    """Wait until this data dir's daemon has closed its store and listeners (it holds the run lock
    until then). False if it still holds it at the deadline."""
    lock = filelock.FileLock(config.run_lock_path, mode=PRIVATE_FILE_MODE, thread_local=False)
    delay = _POLL_FIRST_SECONDS
    while True:
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            if time.monotonic() >= deadline:
                return False
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_SECONDS)
        else:
            lock.release()
            return True


def _log_path(config: LocalConfig) -> Path:
    return config.data_dir / "daemon.log"


def daemon_command() -> list[str]:
    """The command line that runs a daemon; its config arrives as JSON on stdin."""
    return [sys.executable, "-m", "mam_mcp.local", "--config-stdin"]


def _spawn(config: LocalConfig) -> tuple[subprocess.Popen[bytes], int]:
    """Start the daemon detached from us: own session / process group, no console, log to a file.

    Returns the process and where its lines start in the log (earlier runs' lines come before).
    """
    options: dict[str, Any] = {}
    if sys.platform == "win32":
        options["creationflags"] = (
            subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS | subprocess.CREATE_NO_WINDOW
        )
    else:
        options["start_new_session"] = True  # a Ctrl-C in the host's terminal must not reach it
    env = dict(os.environ)
    # The daemon must run the very mam_mcp we are (a checkout, a venv): same code, same version.
    package_root = str(Path(mam_mcp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    _rotate_log(_log_path(config))
    # The log names senders and inboxes: 0600 like every file of the data dir.
    with os.fdopen(open_private(_log_path(config), os.O_WRONLY | os.O_APPEND), "ab") as log:
        log_start = log.seek(0, os.SEEK_END)
        process = subprocess.Popen(
            daemon_command(),
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            cwd=config.data_dir,
            **options,
        )
    assert process.stdin is not None
    # The config travels on stdin, not argv: the relay URL carries a password and argv is public.
    try:
        process.stdin.write(config.model_dump_json().encode("utf-8"))
        process.stdin.close()
    except OSError:  # it died at once: the readiness check reports its exit and the log tail
        pass
    return process, log_start


def _rotate_log(path: Path) -> None:
    """Keep one previous log: a daemon logs a line per accepted message, and runs for weeks."""
    try:
        if path.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    except OSError:
        pass


def _log_tail(config: LocalConfig, start: int) -> str:
    """The last lines this start wrote to the log (an earlier failed start's lines would repeat it)."""
    try:
        with open(_log_path(config), "rb") as log:
            log.seek(start)
            lines = log.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])


async def _wait_ready(
    config: LocalConfig, process: subprocess.Popen[bytes], deadline: float, log_start: int
) -> DaemonProbe:
    delay = _POLL_FIRST_SECONDS
    while True:
        probe = await probe_daemon(config)
        if probe.current:  # not pid == process.pid: a venv's python.exe on Windows is a launcher
            return probe
        if process.poll() is not None:
            tail = _log_tail(config, log_start)
            raise DaemonStartError(
                f"the local mail daemon exited during start (code {process.returncode}); "
                f"log: {_log_path(config)}" + (f"\n{tail}" if tail else "")
            )
        if time.monotonic() >= deadline:
            raise DaemonStartError(
                f"the local mail daemon did not become ready in time; log: {_log_path(config)}"
            )
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_SECONDS)
