"""`mam-mcp local status` and `mam-mcp local stop`: the background daemon a tool call (or the demo)
started, seen and stopped from a terminal.

`status` exits 0 when this data dir's daemon runs and 3 when it does not (as service scripts do),
so scripts can test it. `stop` asks the daemon to shut down (as the launcher does to replace it)
and waits until it has closed its database and freed its ports.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mam_mcp.local.config import LocalConfig

__all__ = ["NOT_RUNNING_EXIT", "daemon_status", "show_status", "stop", "stop_running"]

NOT_RUNNING_EXIT = 3
_STOP_SECONDS = 20.0


async def daemon_status(config: LocalConfig) -> dict[str, Any]:
    """What is known about this data dir's daemon; `running` says whether it is up.

    Asked passively: looking at the daemon does not keep it alive.
    """
    import mam_mcp
    from mam_mcp.local.daemon.launcher import probe_daemon, where_running

    config = where_running(config)
    probe = await probe_daemon(config, passive=True)
    info: dict[str, Any] = {
        "running": False,
        "dataDir": str(config.data_dir),
        "httpPort": probe.port or config.http_port,
        "smtpPort": config.smtp_port,
        "log": str(config.data_dir / "daemon.log"),
    }
    if probe.kind == "none":
        return {**info, "detail": "not running (it starts on the first tool call)"}
    if probe.kind == "foreign":
        return {**info, "detail": f"not running: port {probe.port} is used by another program"}
    health = probe.health or {}
    if not probe.owned:
        return {**info, "detail": f"not running: port {probe.port} is served by the mam-mcp daemon of another "
                f"data dir (pid {health.get('pid', '?')})"}
    info.update(running=True, pid=health.get("pid"), version=health.get("version"),
                current=health.get("version") == mam_mcp.__version__)
    if isinstance(health.get("smtpPort"), int):
        info["smtpPort"] = health["smtpPort"]
    for key in ("uptimeSeconds", "idleSeconds", "idleTimeoutSeconds"):  # absent from a daemon too old to say
        if key in health:
            info[key] = health[key]
    return info


def show_status(config: LocalConfig, *, as_json: bool, out: TextIO) -> int:
    import anyio

    info = anyio.run(daemon_status, config)
    out.write(json.dumps(info, indent=2) + "\n" if as_json else _status_text(info, config.host))
    out.flush()
    return 0 if info["running"] else NOT_RUNNING_EXIT


def _status_text(info: dict[str, Any], host: str) -> str:
    if not info["running"]:
        return (f"mam-mcp local daemon: {info['detail']}\n  data: {info['dataDir']}\n"
                "  (`mam-mcp local` runs one in the foreground)\n")
    version = info.get("version") or "?"
    if not info.get("current"):
        version += " (another version than this mam-mcp: replaced on the next tool call)"
    lines = [
        f"mam-mcp local daemon: running (pid {info.get('pid', '?')}, version {version})",
        f"  data:      {info['dataDir']}",
        f"  REST API:  http://{host}:{info['httpPort']}/v1",
        f"  SMTP:      {host}:{info['smtpPort']}",
    ]
    if "uptimeSeconds" in info:
        lines.append(f"  up:        {_duration(info['uptimeSeconds'])}; {_idle_text(info)}")
    lines += [f"  log:       {info['log']}", "Stop it with `mam-mcp local stop`."]
    return "\n".join(lines) + "\n"


def _idle_text(info: dict[str, Any]) -> str:
    timeout = info.get("idleTimeoutSeconds") or 0
    idle = info.get("idleSeconds")
    if idle is None:
        activity = "a client is connected"
    else:
        activity = f"idle for {_duration(idle)}"
    if timeout <= 0:
        return f"{activity}; it does not stop by itself"
    if idle is None:
        return f"{activity}; it stops after {_duration(timeout)} without one"
    return f"{activity}; it stops by itself in {_duration(max(0.0, timeout - idle))}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def stop(config: LocalConfig, *, out: TextIO) -> int:
    import anyio

    code, message = anyio.run(stop_running, config)
    out.write(message + "\n")
    out.flush()
    return code


async def stop_running(config: LocalConfig) -> tuple[int, str]:
    """Stop this data dir's daemon if it runs: (exit code, what happened)."""
    from mam_mcp.local.daemon.launcher import (
        DaemonStartError,
        probe_daemon,
        stop_daemon,
        wait_for_exit,
        where_running,
    )

    config = where_running(config)
    probe = await probe_daemon(config)
    if probe.kind == "none":
        return 0, f"no mam-mcp daemon is running for {config.data_dir}; nothing to stop"
    if probe.kind == "foreign" or not probe.owned:
        holder = "another program" if probe.kind == "foreign" else "the mam-mcp daemon of another data dir"
        return 1, (f"port {probe.port} is used by {holder}, not by the daemon of {config.data_dir}; nothing "
                   "stopped (for another data dir: `mam-mcp local stop --data-dir DIR`)")
    health = probe.health or {}
    pid, smtp_port = health.get("pid", "?"), health.get("smtpPort", config.smtp_port)
    deadline = time.monotonic() + _STOP_SECONDS
    try:
        await stop_daemon(config, probe, deadline=deadline)
        exited = await wait_for_exit(config, deadline=deadline)
    except DaemonStartError:
        exited = False
    if not exited:
        return 1, (f"the mam-mcp daemon (pid {pid}) did not stop within {_STOP_SECONDS:g} s; its log is "
                   f"{config.data_dir / 'daemon.log'} (`kill {pid}` ends it)")
    return 0, (f"stopped the mam-mcp daemon (pid {pid}) of {config.data_dir}: HTTP port {probe.port} and "
               f"SMTP port {smtp_port} are free, its database is closed")
