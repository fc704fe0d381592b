"""`mam-mcp local reset`: empty the local backend (every inbox, message, draft, webhook and key).

It asks first ("Type yes"); `--yes` skips the question for scripts, and without a terminal to
ask on it refuses rather than guess. The data dir's daemon is stopped first and no other can
start while the files go (the start lock and the daemon's run lock are held); the next tool
call starts a fresh, empty daemon with a new tenant key.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import filelock

    from mam_mcp.local.config import LocalConfig

__all__ = ["REFUSED_EXIT", "reset"]

REFUSED_EXIT = 2
_LOCK_SECONDS = 20.0


def _has_data(config: LocalConfig) -> bool:
    from mam_mcp.local.daemon.data_dir import DATA_FILES

    return any((config.data_dir / name).exists() for name in DATA_FILES)


def _confirmed(config: LocalConfig, *, assume_yes: bool, stdin: TextIO, out: TextIO, err: TextIO) -> bool:
    if assume_yes:
        return True
    if not stdin.isatty():
        err.write(
            f"mam-mcp local reset: refusing to delete {config.data_dir} without confirmation: no terminal to ask "
            "on. Run it in a terminal, or pass --yes in a script.\n"
        )
        return False
    out.write(f"This deletes every inbox and message in {config.data_dir}. Type yes to go on: ")
    out.flush()
    answer = stdin.readline().strip()
    if answer != "yes":
        out.write("Nothing deleted.\n")
        return False
    return True


def reset(config: LocalConfig, *, assume_yes: bool, stdin: TextIO | None = None, out: TextIO | None = None,
          err: TextIO | None = None) -> int:  # fmt: skip
    import anyio

    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    if not _has_data(config):
        out.write(f"Nothing to reset: {config.data_dir} holds no local mail.\n")
        return 0
    if not _confirmed(config, assume_yes=assume_yes, stdin=stdin, out=out, err=err):
        return REFUSED_EXIT
    code, message = anyio.run(_reset, config)
    (out if code == 0 else err).write(message + "\n")
    return code


async def _reset(config: LocalConfig) -> tuple[int, str]:
    import filelock

    from mam_mcp.commands.local_status import stop_running
    from mam_mcp.local.daemon.data_dir import remove_data_files

    deadline = time.monotonic() + _LOCK_SECONDS
    start_lock = filelock.FileLock(config.lock_path, thread_local=False)  # no launcher starts one meanwhile
    run_lock = filelock.FileLock(config.run_lock_path, thread_local=False)  # held by a running daemon
    if not await _acquire(start_lock, deadline):
        return 1, f"mam-mcp local reset: another process is starting the daemon of {config.data_dir}; try again"
    try:
        _, stopped = await stop_running(config)
        if not await _acquire(run_lock, deadline):
            return 1, (
                f"mam-mcp local reset: the daemon of {config.data_dir} is still running ({stopped}); nothing deleted"
            )
        try:
            removed = remove_data_files(config.data_dir)
        finally:
            run_lock.release()
    finally:
        start_lock.release()
    return 0, (
        f"Reset {config.data_dir}: every inbox, message, draft, webhook and key is deleted ({len(removed)} file(s)). "
        "The next tool call starts an empty local backend with a new key."
    )


async def _acquire(lock: filelock.BaseFileLock, deadline: float) -> bool:
    import anyio
    import filelock

    while True:
        try:
            lock.acquire(blocking=False)
            return True
        except filelock.Timeout:
            if time.monotonic() >= deadline:
                return False
            await anyio.sleep(0.05)
