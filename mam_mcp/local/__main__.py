"""`python -m mam_mcp.local`: run the local backend daemon (what the launcher spawns).

The launcher passes the whole config as JSON on stdin (`--config-stdin`): the relay URL
carries a password and a command line is visible to every user of the machine.

`--stop-with-parent` (the pytest fixture's daemon): the config is the first line of stdin and the
parent keeps the pipe open; when it closes (the parent stopped, or was killed by any signal, even
SIGKILL: the kernel closes its end) the daemon stops cleanly, as on SIGTERM. Nothing is left
running after a killed test run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mam_mcp.local.config import DEFAULT_HTTP_PORT, DEFAULT_SMTP_PORT, LocalConfig

if TYPE_CHECKING:
    import anyio


def parse_config(argv: list[str] | None = None) -> tuple[LocalConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m mam_mcp.local", description="Run the mam-mcp local mail daemon."
    )
    parser.add_argument("--config-stdin", action="store_true", help="read the LocalConfig as JSON from stdin")
    parser.add_argument("--data-dir", type=Path, help="where the database, key and logs live")
    parser.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="REST/WebSocket port (0 = any)"
    )
    parser.add_argument("--smtp-port", type=int, default=DEFAULT_SMTP_PORT, help="SMTP port (0 = any)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="seconds without a client before stopping (0 = never)",
    )
    parser.add_argument(
        "--ready-line",
        action="store_true",
        help="print the state JSON (pid, ports) as one stdout line when ready",
    )
    parser.add_argument(
        "--stop-with-parent",
        action="store_true",
        help="with --config-stdin: the config is stdin's first line; stop when stdin closes",
    )
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=10.0,
        help="seconds to wait for a stopping predecessor on this data dir",
    )
    args = parser.parse_args(argv)
    if args.stop_with_parent and not args.config_stdin:
        parser.error("--stop-with-parent needs --config-stdin")
    if args.config_stdin:
        text = sys.stdin.buffer.readline() if args.stop_with_parent else sys.stdin.buffer.read()
        return LocalConfig.model_validate_json(text), args
    if args.data_dir is None:
        parser.error("--data-dir is required without --config-stdin")
    values: dict[str, object] = {
        "data_dir": args.data_dir,
        "http_port": args.http_port,
        "smtp_port": args.smtp_port,
    }
    if args.idle_timeout is not None:
        values["idle_timeout_seconds"] = args.idle_timeout
    return LocalConfig.model_validate(values), args


async def _run(config: LocalConfig, ready_line: bool, lock_wait: float, stop_with_parent: bool) -> None:
    import anyio

    from mam_mcp.local.daemon.run import run_daemon

    ready = anyio.Event()
    parent_gone = _stop_when_stdin_closes() if stop_with_parent else None
    async with anyio.create_task_group() as tasks:

        async def announce() -> None:
            await ready.wait()
            # One line, so a parent (tests, tooling) can wait for readiness without polling.
            try:
                print(config.state_path.read_text(encoding="utf-8").strip(), flush=True)
            except (BrokenPipeError, ValueError):
                pass  # the parent is gone (its end of stdout closed): --stop-with-parent stops us

        if ready_line:
            tasks.start_soon(announce)
        await run_daemon(config, ready=ready, lock_wait_seconds=lock_wait, stop_requested=parent_gone)
        tasks.cancel_scope.cancel()


def _stop_when_stdin_closes() -> anyio.Event:
    """An event set when stdin ends (the parent is gone), watched by a daemon thread: the daemon
    then stops as on SIGTERM, on every platform (Windows has no SIGTERM handler to take)."""
    import asyncio
    import threading

    import anyio

    gone = anyio.Event()
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()  # raw reads: a thread blocked in the buffered reader aborts interpreter exit

    def watch() -> None:
        try:
            while os.read(fd, 4096):
                pass  # the parent writes nothing more; anything it does write is ignored
        except OSError:
            pass
        try:
            loop.call_soon_threadsafe(gone.set)
        except RuntimeError:
            pass  # the loop is closed: the daemon has stopped already

    threading.Thread(target=watch, name="mam-parent-watch", daemon=True).start()
    return gone


def main(argv: list[str] | None = None) -> int:
    config, args = parse_config(argv)
    from mam_mcp.logs import configure_logging

    # Redacting stderr handler; httpx2's URL-logging loggers kept at WARNING.
    configure_logging("INFO")

    import anyio

    from mam_mcp.local.daemon.data_dir import PRIVATE_UMASK
    from mam_mcp.local.daemon.memory import return_large_blocks_on_free
    from mam_mcp.local.daemon.run import DaemonError, first_daemon_error

    if hasattr(os, "umask"):
        os.umask(PRIVATE_UMASK)  # whatever this process creates (SQLite, locks, libraries) is for this user only
    return_large_blocks_on_free()  # large mail: the peak stays near 2x the message (daemon/memory.py)
    try:
        anyio.run(_run, config, args.ready_line, args.lock_wait, args.stop_with_parent)
    except (DaemonError, BaseExceptionGroup) as exc:
        error = first_daemon_error(exc)
        if error is None:
            raise
        print(f"mam-mcp local daemon: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
