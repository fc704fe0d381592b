"""The daemon's files in its data dir: the tenant key (0600, never overwritten), the state file, modes.

Everything the daemon writes outside the database goes through here. The data dir holds every
mail and every webhook secret: it is 0700 and every file in it 0600 (POSIX), whether the dir
existed before or not. `prepare_data_dir` tightens an existing dir or file that others could
read, with a warning; new files are created 0600 whatever the umask (`os.open` with a mode, and
the daemon runs with umask 077). SQLite creates the WAL and shared-memory files with the
database file's mode, which the store creates 0600 (store/engine.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mam_mcp
from mam_mcp.local.config import LocalConfig

__all__ = [
    "DATA_FILES",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "PRIVATE_UMASK",
    "load_or_mint_key",
    "make_private_dir",
    "open_private",
    "prepare_data_dir",
    "remove_data_files",
    "remove_state_file",
    "write_secret_file",
    "write_state_file",
]

logger = logging.getLogger("mam_mcp.local.daemon")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077  # the daemon's: whatever a library creates is for this user only
_POSIX = sys.platform != "win32"


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) 0700; an existing dir others can enter or read is tightened, with a warning."""
    existed = path.is_dir()
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if not _POSIX:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask, and exist_ok keeps an old dir's
        if existed:
            logger.warning(
                "the data dir %s was open to other users (mode %03o): tightened to %03o", path, mode, PRIVATE_DIR_MODE
            )


# What a reset deletes: the mail database (with SQLite's side files; webhook deliveries are in it),
# an older release's webhook log, imported or not, and the tenant key, which a fresh database would
# not know. Logs and locks stay.
DATA_FILES = (
    *(f"{db}{suffix}" for db in ("mail.db", "webhooks.db") for suffix in ("", "-wal", "-shm", "-journal")),
    "webhooks.db.imported",
    "api_key",
)


def prepare_data_dir(config: LocalConfig) -> None:
    """The data dir 0700 and every file directly in it 0600 (tightened with a warning when looser)."""
    make_private_dir(config.data_dir)
    if not _POSIX:
        return
    loose: list[str] = []
    for entry in os.scandir(config.data_dir):
        if not entry.is_file(follow_symlinks=False):
            continue
        mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
        if mode & 0o077:
            with contextlib.suppress(OSError):  # another user's file here: left alone, still reported
                os.chmod(entry.path, PRIVATE_FILE_MODE)
            loose.append(f"{entry.name} ({mode:03o})")
    if loose:
        logger.warning(
            "files in the data dir %s were readable by other users: tightened to %03o: %s",
            config.data_dir, PRIVATE_FILE_MODE, ", ".join(sorted(loose)),
        )  # fmt: skip


def open_private(path: Path, flags: int) -> int:
    """`os.open` creating `path` 0600 whatever the umask (an existing file is made 0600 too)."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_BINARY", 0), PRIVATE_FILE_MODE)
    if _POSIX:
        with contextlib.suppress(OSError):
            os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


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
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as out:
        out.write(json.dumps(data))
    os.replace(tmp, path)
