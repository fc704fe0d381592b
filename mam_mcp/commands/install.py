"""`mam-mcp install`: add or update the `myagentmail` server in MCP hosts' config files.

    mam-mcp install                          # every host found on this machine (user scope)
    mam-mcp install --host cursor --scope project --dry-run

A user-scope entry is `{"command": <absolute path of this mam-mcp>, "args": ["serve"]}`: hosts
do not inherit a virtualenv's PATH. A project-scope file is shared with the team, so its entry
names `mam-mcp` as found on PATH (or `uvx`/`pipx run` with --launcher), never a path of this
machine. No key goes into a host config (the server reads the credentials file written by
`mam-mcp login`). The rest of the file stays equivalent as JSON, a timestamped backup is kept
next to it, and a re-run that changes nothing writes nothing. With `--host all`, a host counts
as installed when its own files exist or its command is on PATH.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mam_mcp.config import Settings

__all__ = [
    "HOSTS",
    "LAUNCHERS",
    "SERVER_NAME",
    "InstallError",
    "InstallPlan",
    "add_arguments",
    "apply_plan",
    "config_path",
    "host_config_paths",
    "host_evidence",
    "installed_command",
    "launch_entry",
    "plan_install",
    "read_entry",
    "run",
    "server_entry",
]

SERVER_NAME = "myagentmail"
HOSTS = ("claude-desktop", "claude-code", "cursor", "windsurf")
Scope = Literal["user", "project"]
# Hosts with a per-project config file (relative to the project directory).
_PROJECT_FILES = {"claude-code": Path(".mcp.json"), "cursor": Path(".cursor") / "mcp.json"}


class InstallError(Exception):
    """A host config we must not touch (unreadable, not JSON, wrong shape)."""


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())


def config_path(
    host: str, scope: Scope, *, env: Mapping[str, str], platform: str, project_dir: Path | None = None
) -> Path | None:
    """Where `host` keeps its MCP servers for `scope` on `platform`; None if the host has no such scope."""
    if scope == "project":
        relative = _PROJECT_FILES.get(host)
        return None if relative is None else (project_dir or Path.cwd()) / relative
    home = _home(env)
    if host == "claude-desktop":
        if platform == "darwin":
            return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
        if platform == "win32":
            return Path(env.get("APPDATA") or home / "AppData" / "Roaming") / "Claude" / "claude_desktop_config.json"
        return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "Claude" / "claude_desktop_config.json"
    if host == "claude-code":
        return home / ".claude.json"
    if host == "cursor":
        return home / ".cursor" / "mcp.json"
    if host == "windsurf":
        return home / ".codeium" / "windsurf" / "mcp_config.json"
    raise ValueError(f"unknown host {host!r}; known: {', '.join(HOSTS)}")


def host_config_paths(
    *, env: Mapping[str, str], platform: str, project_dir: Path | None = None
) -> list[tuple[str, Scope, Path]]:
    """Every (host, scope, path) we know of, user scope first."""
    found: list[tuple[str, Scope, Path]] = []
    for scope in ("user", "project"):
        for host in HOSTS:
            path = config_path(host, scope, env=env, platform=platform, project_dir=project_dir)
            if path is not None:
                found.append((host, scope, path))
    return found


def installed_command(argv0: str | None = None, executable: str | None = None) -> str:
    """The absolute path of the `mam-mcp` that is running (kept as a link: pipx upgrades swap its target)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0 and Path(argv0).stem == "mam-mcp" and Path(argv0).exists():
        return str(Path(argv0).absolute())
    bin_dir = Path(executable or sys.executable).parent
    for name in ("mam-mcp", "mam-mcp.exe"):
        if (bin_dir / name).exists():
            return str((bin_dir / name).absolute())
    found = shutil.which("mam-mcp")
    if found:
        return str(Path(found).absolute())
    raise InstallError("cannot find the installed `mam-mcp` command: install the package (pipx install mam-mcp)")


def server_entry(command: str) -> dict[str, Any]:
    return {"command": command, "args": ["serve"]}


Launcher = Literal["absolute", "path", "uvx", "pipx"]
LAUNCHERS: tuple[Launcher, ...] = ("absolute", "path", "uvx", "pipx")


def launch_entry(launcher: Launcher, command: str | None = None) -> dict[str, Any]:
    """The entry for a launcher: this install's absolute path, `mam-mcp` on PATH, or uvx / pipx run
    (these two fetch the published package from PyPI)."""
    if launcher == "path":
        return server_entry("mam-mcp")
    if launcher == "uvx":
        return {"command": "uvx", "args": ["mam-mcp", "serve"]}
    if launcher == "pipx":
        return {"command": "pipx", "args": ["run", "mam-mcp", "serve"]}
    return server_entry(command or installed_command())


# What shows a host is installed: its own files (relative to home), and its command on PATH.
_HOST_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "claude-code": ((".claude.json",), (".claude",)),
    "cursor": ((".cursor",),),
    "windsurf": ((".codeium", "windsurf"),),
}
_HOST_COMMANDS = {"claude-code": "claude", "cursor": "cursor", "windsurf": "windsurf"}


def host_evidence(host: str, *, env: Mapping[str, str], platform: str) -> tuple[str | None, str]:
    """(why we think `host` is installed, or None; what was looked for)."""
    if host == "claude-desktop":  # the app creates its config folder on first start
        user_config = config_path(host, "user", env=env, platform=platform)
        assert user_config is not None
        candidates = [user_config.parent]
    else:
        candidates = [_home(env).joinpath(*parts) for parts in _HOST_FILES[host]]
    for candidate in candidates:
        if candidate.exists():
            return f"{candidate} exists", ""
    binary = _HOST_COMMANDS.get(host)
    if binary and shutil.which(binary, path=env.get("PATH") or ""):
        return f"`{binary}` is on PATH", ""
    looked = " or ".join(str(c) for c in candidates) + (f", no `{binary}` on PATH" if binary else "")
    return None, f"no {looked}"


@dataclass(frozen=True)
class InstallPlan:
    host: str
    scope: Scope
    path: Path
    before: str | None  # the file's text, None when it does not exist
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        before = (self.before or "").splitlines(keepends=True)
        after = self.after.splitlines(keepends=True)
        label = str(self.path)
        # No context lines: the rest of a host config can hold other servers' secrets (env blocks).
        lines = difflib.unified_diff(before, after, fromfile=label if self.before is not None else "/dev/null",
                                     tofile=label, n=0)
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _load(path: Path) -> tuple[str | None, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}
    except OSError as error:
        raise InstallError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InstallError(f"{path} is not UTF-8 text; fix or move it, then run `mam-mcp install` again") from None
    if not text.strip():
        return text, {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InstallError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}); fix or move it, "
                           "then run `mam-mcp install` again") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path} is not a JSON object; fix or move it, then run `mam-mcp install` again")
    return text, data


def read_entry(path: Path) -> dict[str, Any] | None:
    """Our entry in a host config, or None (missing file, bad JSON or no entry)."""
    try:
        _, data = _load(path)
    except InstallError:
        return None
    servers = data.get("mcpServers")
    entry = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
    return entry if isinstance(entry, dict) else None


def plan_install(host: str, scope: Scope, path: Path, entry: Mapping[str, Any]) -> InstallPlan:
    """What the file would become with our `entry` (see launch_entry); nothing is written."""
    before, data = _load(path)
    servers = data.get("mcpServers")
    if servers is None:
        servers = {}
    if not isinstance(servers, dict):
        raise InstallError(f"{path}: `mcpServers` is not an object; fix it, then run `mam-mcp install` again")
    old = servers.get(SERVER_NAME)
    # Keep what the user added to our entry (e.g. env), but drop keys of another transport.
    kept = {k: v for k, v in old.items() if k not in ("command", "args", "url", "type")} if isinstance(old, dict) else {}
    entry = {**entry, **kept}
    if isinstance(old, dict) and old == entry:
        return InstallPlan(host, scope, path, before, before or "")
    new_data = {**data, "mcpServers": {**servers, SERVER_NAME: entry}}
    return InstallPlan(host, scope, path, before, _dump_like(new_data, before))


def _dump_like(data: dict[str, Any], before: str | None) -> str:
    """JSON in the existing file's style (indent, ASCII escapes, final newline), so the diff shows only our entry."""
    indent: str | int = 2
    for line in (before or "").splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and stripped != line:
            whitespace = line[: len(line) - len(stripped)]
            indent = whitespace if "\t" in whitespace else len(whitespace)
            break
    ascii_only = before is not None and "\\u" in before and before.isascii()
    newline = "\n" if before is None or before.endswith("\n") or not before.strip() else ""
    return json.dumps(data, indent=indent, ensure_ascii=ascii_only) + newline


def apply_plan(plan: InstallPlan, *, now: datetime | None = None) -> Path | None:
    """Write the plan (atomically, keeping the file's mode). Returns the backup's path, if one was made."""
    if not plan.changed:
        return None
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    mode = 0o600
    if plan.before is not None:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        backup = plan.path.with_name(f"{plan.path.name}.{stamp}.bak")
        shutil.copy2(plan.path, backup)
        mode = plan.path.stat().st_mode & 0o777
    fd, temp = tempfile.mkstemp(dir=plan.path.parent, prefix=f".{plan.path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(plan.after)
        os.chmod(temp, mode)
        os.replace(temp, plan.path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return backup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", dest="install_host", choices=[*HOSTS, "all"], default="all",
                        help="which host to configure (default: all found on this machine)")
    parser.add_argument("--scope", choices=["user", "project"], default="user",
                        help="user config, or the project's (.mcp.json, .cursor/mcp.json) in the current directory, "
                        "shared with the team")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the diff, change nothing")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--launcher", choices=LAUNCHERS, default=None,
                     help="how the host starts mam-mcp: absolute = this install's path (user-scope default), "
                     "path = `mam-mcp` found on PATH (project-scope default), uvx / pipx = `uvx mam-mcp serve` / "
                     "`pipx run mam-mcp serve` (for the published package)")
    how.add_argument("--command", dest="install_command", metavar="PATH",
                     help="the exact command hosts should run (default: see --launcher)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return install(
        host=args.install_host, scope=args.scope, dry_run=args.dry_run, command=args.install_command,
        env=os.environ, platform=sys.platform, project_dir=Path.cwd(), launcher=args.launcher,
    )


def install(
    *,
    host: str,
    scope: Scope,
    dry_run: bool,
    command: str | None,
    env: Mapping[str, str],
    platform: str,
    project_dir: Path,
    out: Any = None,
    err: Any = None,
    launcher: Launcher | None = None,
) -> int:
    """The command's body, with its inputs explicit (tests pass a temporary home and platform)."""
    out, err = out or sys.stdout, err or sys.stderr
    if launcher is None:
        # A project file is shared: a path of this machine would not work on a teammate's.
        launcher = "absolute" if scope == "user" or command else "path"
    try:
        entry = launch_entry(launcher, command)
    except InstallError as error:
        print(f"mam-mcp: {error}", file=err)
        return 1
    targets = list(HOSTS) if host == "all" else [host]
    failures = found_any = 0
    for name in targets:
        path = config_path(name, scope, env=env, platform=platform, project_dir=project_dir)
        if path is None:
            if host != "all":
                print(f"{name}: has no {scope}-scope config; use --scope user", file=err)
                failures += 1
            continue
        if host == "all":  # only hosts installed on this machine, known by their own files or command
            found, looked = host_evidence(name, env=env, platform=platform)
            if found is None:
                print(f"{name}: not found ({looked}), skipped", file=out)
                continue
        found_any += 1
        try:
            plan = plan_install(name, scope, path, entry)
        except InstallError as error:
            print(f"{name}: {error}", file=err)
            failures += 1
            continue
        if not plan.changed:
            print(f"{name}: {path} already up to date", file=out)
        elif dry_run:
            print(f"{name}: would update {path}", file=out)
            print(plan.diff(), end="", file=out)
        else:
            backup = apply_plan(plan)
            note = f" (backup: {backup})" if backup else ""
            print(f"{name}: updated {path}{note}; restart {name} to load it", file=out)
        if launcher != "absolute":
            print(_portable_note(launcher, scope, path, env), file=out)
    if not found_any and not failures:
        print("No MCP host found on this machine: install one, or name it to write its config anyway, "
              "e.g. `mam-mcp install --host claude-code`.", file=out)
    return 1 if failures else 0


def _portable_note(launcher: Launcher, scope: Scope, path: Path, env: Mapping[str, str]) -> str:
    """What a machine-independent entry needs on each machine that uses it."""
    shared = f"  {path.name} is shared with the team; " if scope == "project" else "  "
    if launcher == "path":
        note = (shared + "it runs `mam-mcp serve` found on PATH, so it works on every machine where mam-mcp is "
                "installed on PATH (e.g. with pipx)")
        if not shutil.which("mam-mcp", path=env.get("PATH") or ""):
            note += "\n  note: `mam-mcp` is not on PATH here, so a host started here will not find it"
        return note
    runner = "uvx mam-mcp serve" if launcher == "uvx" else "pipx run mam-mcp serve"
    return shared + f"it runs `{runner}`, which fetches the published mam-mcp package from PyPI on each machine"
