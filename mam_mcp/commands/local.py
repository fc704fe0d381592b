"""`mam-mcp local [run|status|stop|reset]`: run the local mail daemon in the foreground, or look
after the one running in the background (`status`, `stop`; in local_status.py), or empty the
local backend (`reset`; in local_reset.py).

Running, it prints where the data lives, the HTTP and SMTP addresses, how to point an app at
SMTP and where the key file is — never the key itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mam_mcp.commands import bounded_number, port_number

if TYPE_CHECKING:
    from mam_mcp.config import Settings
    from mam_mcp.local.config import LocalConfig

__all__ = ["add_arguments", "describe_daemon", "run"]

HELP = "run the local mail backend (REST, WebSocket, SMTP) in the foreground"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_daemon_arguments(parser)  # `mam-mcp local` alone runs the daemon, as it always did
    actions = parser.add_subparsers(dest="local_action", metavar="ACTION")
    _add_daemon_arguments(actions.add_parser("run", help="run the daemon in the foreground (what `mam-mcp local` "
                                              "alone does)", description=HELP))
    status = actions.add_parser(
        "status", help="is this data dir's daemon running: pid, ports, version, uptime, idle time",
        description="Show this data dir's background daemon. Exit 0 when it runs, 3 when it does not.",
    )
    status.add_argument("--json", dest="as_json", action="store_true", help="print the status as JSON")
    stop = actions.add_parser(
        "stop", help="stop this data dir's daemon (frees its ports and closes its database)",
        description="Stop this data dir's background daemon cleanly and wait until it has exited.",
    )
    reset = actions.add_parser(
        "reset", help="delete every local inbox, message and key (asks first; --yes for scripts)",
        description="Empty the local backend: stop this data dir's daemon, then delete its mail database, "
        "webhook log and tenant key (logs stay). Asks you to type yes first; without a terminal it refuses "
        "unless --yes is given. The next tool call starts an empty backend with a new key.",
    )
    reset.add_argument("--yes", dest="assume_yes", action="store_true", help="do not ask (for scripts)")
    for sub in (status, stop, reset):
        _add_location_arguments(sub)


def _add_location_arguments(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an unset flag must not overwrite the global `mam-mcp --data-dir X local` value.
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where mail, the key and logs live (MAM_LOCAL_DATA_DIR)",
    )
    parser.add_argument(
        "--http-port",
        type=port_number,
        default=argparse.SUPPRESS,
        help="REST/WebSocket port on 127.0.0.1 (MAM_LOCAL_HTTP_PORT, 8725)",
    )


def _add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    _add_location_arguments(parser)
    parser.add_argument(
        "--smtp-port",
        type=port_number,
        default=argparse.SUPPRESS,
        help="SMTP port on 127.0.0.1 (MAM_LOCAL_SMTP_PORT, 2525)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=bounded_number(0, float("inf")),
        default=argparse.SUPPRESS,
        help="stop after this many seconds without a client (default 0 = never)",
    )
    parser.add_argument(
        "--relay-url",
        default=argparse.SUPPRESS,
        help="deliver outbound mail through this relay, e.g. smtp+starttls://host:587; a relay that needs a "
        "password goes in MAM_SMTP_RELAY_URL instead (a command line is visible to every user of the machine)",
    )
    add_catch_all_argument(parser, default=argparse.SUPPRESS)


def add_catch_all_argument(parser: argparse.ArgumentParser, **options: Any) -> None:
    parser.add_argument(
        "--catch-all",
        dest="catch_all",
        metavar="INBOX",
        help="deliver mail for unknown names on the local domain to this inbox (a username); default: "
        "refuse it (MAM_LOCAL_CATCH_ALL)",
        **options,
    )


def local_config_from_args(args: argparse.Namespace, settings: Settings) -> LocalConfig:
    overrides: dict[str, Any] = {"idle_timeout_seconds": getattr(args, "idle_timeout", 0.0)}  # foreground: never
    for flag, field in (
        ("data_dir", "data_dir"),
        ("http_port", "http_port"),
        ("smtp_port", "smtp_port"),
        ("relay_url", "relay_url"),
        ("catch_all", "catch_all_inbox"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    return settings.local_config(**overrides)


def describe_daemon(config: LocalConfig, state: dict[str, Any], out: TextIO) -> None:
    """What a human needs to use the running daemon; no secret in it."""
    host = config.host
    http_port, smtp_port = state.get("httpPort", config.http_port), state.get("smtpPort", config.smtp_port)
    out.write(
        f"mam-mcp local mail backend {state.get('version', '')} (pid {state.get('pid', '?')})\n"
        f"  data:      {config.data_dir}\n"
        f"  REST API:  http://{host}:{http_port}/v1   (WebSocket: ws://{host}:{http_port}/v1/ws)\n"
        f"  SMTP:      {host}:{smtp_port}   (no TLS, no auth; mail to <inbox>@{config.domain} is stored,"
        f" <inbox>+<tag>@ too, tagged)\n"
        f"  Catch-all: {f'unknown names on {config.domain} go to {config.catch_all_inbox}' if config.catch_all_inbox else 'off (unknown names are refused)'}\n"
        f"  API key:   in {config.key_path} (send it as X-API-Key)\n"
        f"  Point an app at it: SMTP_HOST={host} SMTP_PORT={smtp_port}, no TLS, no credentials.\n"
        f"  Outbound:  {'relayed through the configured relay' if config.relay_url else 'captured here, not delivered (no relay set)'}\n"
        f"  Idle stop: {'never' if config.idle_timeout_seconds <= 0 else f'after {config.idle_timeout_seconds:g} s without a client'}\n"
        "Press Ctrl-C to stop.\n"
    )
    out.flush()


async def _serve(config: LocalConfig, out: TextIO, flags: frozenset[str]) -> int:
    import anyio

    from mam_mcp.local.daemon.run import run_daemon
    from mam_mcp.local.daemon.launcher import probe_daemon, where_running

    running = await probe_daemon(where_running(config))  # this data dir's daemon, on whatever port it runs
    if running.kind == "ours" and running.owned:
        pid = running.health.get("pid") if running.health else "?"
        out.write(
            f"a mam-mcp daemon (pid {pid}) already serves {config.data_dir} on port {running.port}; "
            "stop it first (`mam-mcp local stop`) or use another --data-dir\n"
        )
        return 1
    probe = await probe_daemon(config)
    if probe.kind != "none":
        holder = "a mam-mcp daemon of another data dir" if probe.kind == "ours" else "another program"
        print(f"mam-mcp local: HTTP port {probe.port} on {config.host} is in use by {holder}; "
              f"{_port_fix('http_port', flags)}", file=sys.stderr)
        return 2
    ready = anyio.Event()
    async with anyio.create_task_group() as tasks:

        async def announce() -> None:
            await ready.wait()
            describe_daemon(config, json.loads(config.state_path.read_text(encoding="utf-8")), out)

        tasks.start_soon(announce)
        await run_daemon(config, ready=ready)
        tasks.cancel_scope.cancel()
    return 0


def _port_fix(setting: str, flags: frozenset[str]) -> str:
    """How to choose another port: the flag when the port came from it, else the environment variable."""
    flag = "--" + setting.replace("_", "-")
    if setting in flags:
        return f"choose a free port with {flag}"
    return f"set MAM_LOCAL_{setting.upper()} (or {flag}) to a free port"


def _run_foreground(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    from mam_mcp.local.daemon.run import DaemonError, first_daemon_error

    config = local_config_from_args(args, settings)
    from mam_mcp.logs import configure_logging

    # Redacting stderr handler; httpx2's URL-logging loggers kept at WARNING.
    configure_logging("INFO")
    flags = frozenset(name for name in ("http_port", "smtp_port") if name in vars(args))
    try:
        return anyio.run(_serve, config, sys.stdout, flags)
    except (DaemonError, BaseExceptionGroup) as exc:
        error = first_daemon_error(exc)
        if error is None:
            raise
        message = f"{error.problem}; {_port_fix(error.port_setting, flags)}" if error.port_setting else str(error)
        print(f"mam-mcp local: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    action = getattr(args, "local_action", None)
    if action == "status":
        from mam_mcp.commands.local_status import show_status

        return show_status(local_config_from_args(args, settings), as_json=args.as_json, out=sys.stdout)
    if action == "stop":
        from mam_mcp.commands.local_status import stop

        return stop(local_config_from_args(args, settings), out=sys.stdout)
    if action == "reset":
        from mam_mcp.commands.local_reset import reset

        return reset(local_config_from_args(args, settings), assume_yes=args.assume_yes)
    return _run_foreground(args, settings)
