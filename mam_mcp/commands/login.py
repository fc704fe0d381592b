"""`mam-mcp login [--api-key KEY | --paste]` and `mam-mcp logout`: the key in the shared credentials file.

The file (`~/.config/myagentmail/credentials`, JSON, mode 0600) is shared with the vendor's
CLI: we merge `apiKey` into it and remove only that on logout, keeping every other field.
A key is saved only after the API accepted it (GET /v1/inboxes). The key is never printed:
only its scope and first characters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mam_mcp.config import DEFAULT_BASE_URL, Settings

__all__ = [
    "CredentialsError",
    "KeyInfo",
    "add_arguments",
    "describe_key",
    "load_credentials_for_update",
    "login",
    "logout",
    "run",
    "write_credentials",
]

# Key prefixes of the reference, each narrower than the last.
_SCOPES = {"tk_": "tenant", "wk_": "workspace", "ak_": "inbox", "mam_": "inbox (legacy)"}


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: its scope and first characters, never the rest."""

    prefix: str  # e.g. "tk_3f9a…"
    scope: str  # tenant | workspace | inbox | inbox (legacy) | unknown


def describe_key(key: str) -> KeyInfo:
    for head, scope in _SCOPES.items():
        if key.startswith(head):
            return KeyInfo(prefix=f"{head}{key[len(head):len(head) + 4]}…", scope=scope)
    return KeyInfo(prefix=f"{key[:2]}…", scope="unknown")


class CredentialsError(Exception):
    """The credentials file exists but is not something we may rewrite."""


def load_credentials_for_update(path: Path) -> dict[str, Any]:
    """The file's JSON object, {} if missing. Raises instead of overwriting a file we cannot read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CredentialsError(f"cannot read {path}: {error.strerror}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise CredentialsError(f"{path} is not valid JSON; fix or remove it, then log in again") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} is not a JSON object; fix or remove it, then log in again")
    return data


def write_credentials(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically; the new file is created 0600 (its directory 0700) before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".credentials.", suffix=".tmp")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--api-key", dest="login_api_key", metavar="KEY",
                        help="the key (it lands in your shell history: prefer --paste)")
    source.add_argument("--paste", action="store_true", help="read the key from a hidden prompt or stdin (default)")


def _read_key(stdin: TextIO) -> str:
    if stdin.isatty():
        import getpass

        return getpass.getpass("MyAgentMail API key (input hidden): ")
    return stdin.readline()


async def _check_key(base_url: str, key: str, transport: Any = None) -> int:
    """GET /v1/inboxes with the key; returns how many inboxes it sees. Raises MamError."""
    from mam_mcp.client import MamClient

    async with MamClient(base_url=base_url, api_key=key, transport=transport) as client:
        listed = await client.inboxes.list()
    return len(listed.inboxes)


def login(
    settings: Settings, key: str, *, out: TextIO, err: TextIO, transport: Any = None
) -> int:
    """Check `key` against the API and merge it into the credentials file. Returns the exit code."""
    import anyio

    from mam_mcp.client.errors import AuthError, MamError

    key = key.strip()
    if not key or any(ch.isspace() for ch in key):
        print("mam-mcp: that does not look like an API key (empty or contains spaces)", file=err)
        return 2
    info = describe_key(key)
    path = settings.credentials_path
    try:
        data = load_credentials_for_update(path)
    except CredentialsError as error:
        print(f"mam-mcp: {error}", file=err)
        return 1
    try:
        count = anyio.run(_check_key, settings.base_url, key, transport)
    except AuthError as error:
        print(f"mam-mcp: the API refused key {info.prefix} ({error.code}); nothing saved. "
              "Copy the key again from the dashboard.", file=err)
        return 1
    except MamError as error:
        print(f"mam-mcp: could not check key {info.prefix} against {settings.base_url}: {error.to_text()} "
              "Nothing saved.", file=err)
        return 1
    data["apiKey"] = key
    data.pop("api_key", None)  # one spelling, the vendor CLI's
    if settings.base_url.rstrip("/") != DEFAULT_BASE_URL:
        data["baseUrl"] = settings.base_url
    write_credentials(path, data)
    print(f"Logged in with {info.scope} key {info.prefix} ({count} inbox{'es' if count != 1 else ''} visible). "
          f"Saved to {path} (mode 0600).", file=out)
    return 0


def logout(settings: Settings, *, out: TextIO, err: TextIO) -> int:
    path = settings.credentials_path
    try:
        data = load_credentials_for_update(path)
    except CredentialsError as error:
        print(f"mam-mcp: {error}", file=err)
        return 1
    had_key = any(name in data for name in ("apiKey", "api_key"))
    for name in ("apiKey", "api_key"):
        data.pop(name, None)
    if had_key:
        if data:
            write_credentials(path, data)  # other fields belong to the vendor's CLI
        else:
            path.unlink(missing_ok=True)
        print(f"Logged out: removed the API key from {path}.", file=out)
    else:
        print(f"No API key in {path}; nothing to do.", file=out)
    if settings.api_key is not None and "credentials file" not in settings.mode_reason:
        source = settings.mode_reason.removeprefix("API key from ")
        print(f"Note: a key is still set by {source}; unset it to stop using it.", file=out)
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    key = args.login_api_key if args.login_api_key else _read_key(sys.stdin)
    return login(settings, key, out=sys.stdout, err=sys.stderr)
