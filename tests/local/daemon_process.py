"""Run a real local daemon in a subprocess for tests (daemon, launcher, durability).

`daemon_process(config)` starts `python -m mam_mcp.local --config-stdin --ready-line`, waits
for its ready line (no polling), yields a `RunningDaemon`, and kills it in `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

import mam_mcp
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.crash import CRASH_AT_ENV

REPO_ROOT = str(Path(mam_mcp.__file__).resolve().parent.parent)
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0

# Runs the daemon while reporting another version: a stale daemon for the launcher to replace.
STALE_VERSION = "0.0.0-stale"
STALE_DAEMON_PRELUDE = (
    f"import sys, mam_mcp; mam_mcp.__version__ = {STALE_VERSION!r}\n"
    "from mam_mcp.local.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def child_env(crash_at: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(CRASH_AT_ENV, None)
    if crash_at is not None:
        env[CRASH_AT_ENV] = crash_at
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def daemon_config(data_dir: Path, **overrides: Any) -> LocalConfig:
    """Ephemeral ports, fast webhook retries."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "http_port": 0,
        "smtp_port": 0,
        "idle_timeout_seconds": 300,  # a daemon a crashed test failed to kill still stops by itself
        "webhook_retry_base_seconds": 0.05,
        "webhook_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return LocalConfig(**values)


@dataclass
class RunningDaemon:
    process: Process
    config: LocalConfig
    state: dict[str, Any]
    log_path: Path
    api_key: str = field(repr=False)

    @property
    def pid(self) -> int:
        return int(self.state["pid"])

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.state['httpPort']}"

    @property
    def smtp_port(self) -> int:
        return int(self.state["smtpPort"])

    def client(self, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.base_url, headers={"X-API-Key": self.api_key}, **kwargs)

    async def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        with anyio.fail_after(timeout):
            return await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.asynccontextmanager
async def daemon_process(
    config: LocalConfig, *, prelude: str | None = None, lock_wait: float = 10.0, crash_at: str | None = None
) -> AsyncIterator[RunningDaemon]:
    """`crash_at`: a crash point (mam_mcp/local/crash.py) at which the daemon SIGKILLs itself."""
    # Beside the data dir, not in it: the daemon itself must create the data dir (mode 0700).
    config.data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = config.data_dir.with_name(f"{config.data_dir.name}-daemon-{os.urandom(4).hex()}.log")
    program = ["-c", prelude] if prelude else ["-m", "mam_mcp.local"]
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file for the child's stderr, opened at once
        process = await anyio.open_process(
            [sys.executable, *program, "--config-stdin", "--ready-line", "--lock-wait", str(lock_wait)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_env(crash_at),
        )
    try:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(config.model_dump_json().encode())
        await process.stdin.aclose()
        try:
            with anyio.fail_after(START_TIMEOUT):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 65536)
        except (anyio.EndOfStream, anyio.IncompleteRead, TimeoutError) as exc:
            raise AssertionError(f"daemon did not start: {log_path.read_text(errors='replace')}") from exc
        state = json.loads(line)
        key = config.key_path.read_text(encoding="utf-8").strip()
        yield RunningDaemon(process, config, state, log_path, key)
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.fail_after(EXIT_TIMEOUT):
                await process.wait()
        await process.aclose()


def kill_pid(pid: int) -> None:
    """Kill a daemon that a launcher started (it is not our child)."""
    import signal

    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
