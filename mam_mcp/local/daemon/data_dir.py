"""The daemon's files in its data dir: the tenant key (0600, never overwritten), the state file.

Everything the daemon writes outside the database goes through here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mam_mcp
from mam_mcp.local.config import LocalConfig

__all__ = [
    "DATA_FILES",
    "load_or_mint_key",
    "prepare_data_dir",
    "remove_data_files",
    "remove_state_file",
    "write_secret_file",
    "write_state_file",
]

# What a reset deletes: the mail database, the webhook delivery log (each with SQLite's side
# files) and the tenant key, which a fresh database would not know. Logs and locks stay.
DATA_FILES = tuple(
    f"{db}{suffix}" for db in ("mail.db", "webhooks.db") for suffix in ("", "-wal", "-shm", "-journal")
) + ("api_key",)


def prepare_data_dir(config: LocalConfig) -> None:
    existed = config.data_dir.exists()
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not existed and sys.platform != "win32":
        os.chmod(config.data_dir, 0o700)  # mkdir's mode is masked by the umask


def remove_data_files(data_dir: Path) -> list[Path]:
    """Delete the backend's data in `data_dir` (never a daemon's running files: stop it first);
    returns what was deleted."""
    removed = []
    for name in DATA_FILES:
        path = data_dir / name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def write_secret_file(path: Path, content: str) -> None:
    """Create `path` with mode 0600 holding `content`; never overwrite, never expose it half-written.

    The bytes go to a fresh temp file (O_CREAT|O_EXCL, 0600) first, which is then linked into
    place: `os.link` fails if the target exists, so an existing key is never replaced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            if path.exists():  # a file system without hard links: rename, never over an existing key
                raise FileExistsError(errno.EEXIST, "key file exists", str(path)) from None
            os.rename(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


async def load_or_mint_key(config: LocalConfig, mint: Callable[[], Awaitable[str] | str]) -> str:
    """The tenant key of this data dir: read from `key_path`, minted (`mint`) on first start."""
    try:
        key = config.key_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    else:
        if os.name == "posix" and config.key_path.stat().st_mode & 0o077:
            config.key_path.chmod(0o600)  # someone loosened it: the tenant key is for this user only
        return key
    minted = mint()
    key = await minted if not isinstance(minted, str) else minted
    write_secret_file(config.key_path, key + "\n")
    return key


def write_state_file(config: LocalConfig) -> None:
    state = {
        "pid": os.getpid(),
        "version": mam_mcp.__version__,
        "httpPort": config.http_port,
        "smtpPort": config.smtp_port,
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json_atomically(config.state_path, state)


def remove_state_file(config: LocalConfig) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(config.state_path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            config.state_path.unlink()


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
