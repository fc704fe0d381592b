"""The `mam-mcp` command: argparse, one module per subcommand under mam_mcp.commands.

Each command module has `add_arguments(parser)` and `run(args, settings) -> int`, and imports
anything heavy inside `run`, so `mam-mcp serve` starts fast.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from mam_mcp import __version__

__all__ = ["main", "COMMANDS", "build_parser"]

# name -> (module, one-line help). `serve` is the default when no command is given.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("mam_mcp.commands.serve", "run the MCP server (stdio by default)"),
    "tools": ("mam_mcp.commands.tools", "print the tool catalogue"),
    "local": ("mam_mcp.commands.local", ("run the embedded local mail backend in the foreground; `local status`, "
                                         "`local stop` for the background one, `local reset` to empty it")),
    "demo": ("mam_mcp.commands.demo", "a guided round trip on the embedded backend: inbox, inbound mail, read, reply"),
    "install": ("mam_mcp.commands.install", "add mam-mcp to MCP hosts' config files (Claude, Cursor, Windsurf)"),
    "login": ("mam_mcp.commands.login", "check an API key and save it to the shared credentials file"),
    "logout": ("mam_mcp.commands.logout", "remove the API key from the credentials file"),
    "doctor": ("mam_mcp.commands.doctor", "check mode, key, API, WebSocket, local backend, LinkedIn and host configs"),
    "install-skill": ("mam_mcp.commands.install_skill", "copy the myagentmail skill into .claude/skills"),
    "linkedin": ("mam_mcp.commands.linkedin", "connect a LinkedIn account in this terminal (passwords never go through MCP)"),
    "drafts": ("mam_mcp.commands.drafts", "review drafts an agent left: list, show, approve (send) or discard"),
    "console": ("mam_mcp.commands.console", "open the local web console: inboxes and mail live, drafts to approve"),
    "tail": ("mam_mcp.commands.tail", "print inbox events as JSON lines (for jq)"),
    "listen": ("mam_mcp.commands.listen", "POST inbox events to a local URL as signed webhooks (no public URL needed)"),
}

_GLOBAL_FLAGS = ("api_key", "base_url", "mode", "data_dir", "log_level", "config")
# Commands that repair a broken configuration; they run even when settings do not resolve.
_REPAIR_COMMANDS = frozenset({"login", "logout", "doctor", "install", "install-skill", "tools"})


# Global options that take a value as the next token: that value is never the command.
_VALUE_OPTIONS = frozenset({"--mode", "--api-key", "--base-url", "--data-dir", "--config", "--log-level"})


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line; "serve" for a bare `mam-mcp`; None for help."""
    if any(token in ("-h", "--help") for token in argv):
        return None
    words: list[str] = []
    value_next = False
    for token in argv:
        if value_next:  # `--mode local serve`: "local" is the mode, not the command
            value_next = False
        elif token in _VALUE_OPTIONS:
            value_next = True
        elif not token.startswith("-"):
            words.append(token)
    named = next((word for word in words if word in COMMANDS), None)
    if named is None and words:
        return None  # a word that is no command (or an option's value): build all, argparse explains
    return named or "serve"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand (hosts start `serve` often: skip the others' imports)."""
    parser = argparse.ArgumentParser(
        prog="mam-mcp",
        description="MCP server that gives AI agents real email inboxes. With no API key it runs an embedded "
        "local mail backend; with one it uses the MyAgentMail API.",
    )
    parser.add_argument("--version", action="version", version=f"mam-mcp {__version__}")
    parser.add_argument("--mode", choices=["hosted", "local"], help="force a mode (default: hosted if an API key is set)")
    parser.add_argument("--api-key", dest="api_key", help=argparse.SUPPRESS)  # prefer env or `mam-mcp login`
    parser.add_argument("--base-url", dest="base_url", help="hosted API base URL (MYAGENTMAIL_BASE_URL)")
    parser.add_argument("--data-dir", dest="data_dir", help="local backend data dir (MAM_LOCAL_DATA_DIR)")
    parser.add_argument("--config", metavar="FILE", help="settings file (MAM_MCP_CONFIG; default: "
                        "mam-mcp.toml in the config dir): consent mode and outbound policy")
    parser.add_argument("--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="how much to log to stderr; secrets are redacted (MAM_MCP_LOG_LEVEL, default WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _requested_command(args_list)
    if command == "serve":
        # Start-up makes ~150k objects (the SDK's and our pydantic models) and frees almost none:
        # the cyclic collector's passes over them find nothing. `serve` turns it back on (and
        # freezes what start-up made) once the server is built; `finally` covers every other exit.
        gc.disable()
    try:
        return _main(args_list, command)
    finally:
        gc.enable()


def _main(args_list: list[str], command: str | None) -> int:
    from mam_mcp.config import Settings

    parser = build_parser(only=command)
    args = parser.parse_args(args_list)
    if args.command is None:  # bare `mam-mcp` is `mam-mcp serve` (what hosts run)
        args = parser.parse_args([*args_list, "serve"])
    overrides = {name: getattr(args, name, None) for name in _GLOBAL_FLAGS}
    for name in (
        "toolsets", "tools", "exclude_tools", "read_only", "auth_token", "http_port", "smtp_port", "relay_url", "catch_all",
        "confirm_sends", "confirm_timeout", "allow", "block", "max_recipients", "sends_per_hour", "reply_only",
        "http_read_timeout", "http_idle_timeout", "session_idle_timeout", "max_sessions",
    ):  # fmt: skip
        if getattr(args, name, None) not in (None, False):
            overrides[name] = getattr(args, name)
    try:
        settings = Settings.load(overrides=overrides)
    except ValueError as error:
        if args.command not in _REPAIR_COMMANDS:
            print(f"mam-mcp: {error}", file=sys.stderr)
            return 2
        # The commands that fix a broken set-up must still run: fall back to local mode and say why.
        print(f"mam-mcp: note: {error}", file=sys.stderr)
        try:
            settings = Settings.load(overrides={**overrides, "mode": "local"}).model_copy(
                update={"mode_reason": f"configuration problem: {error}"}
            )
        except ValueError as still:  # not a mode problem (e.g. a bad port): nothing to fall back to
            print(f"mam-mcp: {still}", file=sys.stderr)
            return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a sentence, never a traceback (DEBUG logs it)
        return _report_failure(args.command, error, settings.log_level)


def _report_failure(command: str, error: Exception, log_level: str) -> int:
    import logging
    import os

    from mam_mcp.commands import closed_stdout, error_leaves
    from mam_mcp.logs import configure_logging

    if closed_stdout(error):  # `mam-mcp tools | head -1`: the reader went away, which is no failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 0
    configure_logging(log_level)  # the traceback goes through the redacting filter, at DEBUG only
    logging.getLogger("mam_mcp.cli").debug("mam-mcp %s failed", command, exc_info=error)
    cause = next(error_leaves(error))
    if isinstance(cause, (OSError, ValueError)):  # the machine or an input said no: its message says why
        print(f"mam-mcp {command}: {cause}", file=sys.stderr)
    else:
        print(f"mam-mcp {command}: unexpected {type(cause).__name__}: {cause}. This is a bug in mam-mcp; "
              "`mam-mcp --log-level DEBUG ...` shows the details to report.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
