"""`mam-mcp serve`: run the MCP server over stdio (what MCP hosts launch), streamable HTTP or SSE."""

from __future__ import annotations

import argparse

from mam_mcp.commands import bounded_number, port_number
from mam_mcp.config import Settings

__all__ = ["add_arguments", "add_safety_arguments", "add_selection_arguments", "http_options", "run"]

DEFAULT_HTTP_PORT = 8000
TERMINAL_HINT = (
    "mam-mcp: waiting for an MCP host on stdin/stdout (hosts start this command themselves). "
    "Set one up with `mam-mcp install`, try it with `mam-mcp demo`; Ctrl-C quits."
)


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Tool selection flags, shared by `serve` and `tools`."""
    parser.add_argument("--toolsets", help="comma-separated toolsets, or 'all' (default: email,drafts; "
                        "plus linkedin in hosted mode)")
    parser.add_argument("--tools", help="comma-separated exact tool names (overrides --toolsets)")
    parser.add_argument("--exclude-tools", dest="exclude_tools", help="comma-separated tool names to drop")
    parser.add_argument("--read-only", dest="read_only", action="store_true", help="only tools that change nothing")


def add_safety_arguments(parser: argparse.ArgumentParser) -> None:
    """Consent and outbound policy flags (each also settable in the config file and the environment)."""
    group = parser.add_argument_group("sending safety (README: Safety)")
    group.add_argument("--confirm-sends", dest="confirm_sends", choices=["off", "new-recipients", "all"],
                       help="ask the person before mail leaves: for new recipients (default), every send, or never "
                       "(MAM_MCP_CONFIRM_SENDS)")
    group.add_argument("--confirm-timeout", dest="confirm_timeout", type=float, metavar="SECONDS",
                       help="how long a confirmation waits for the person; no answer sends nothing (default 300)")
    group.add_argument("--allow-recipients", dest="allow", metavar="LIST",
                       help="comma-separated addresses/domains mail may go to; nothing else (MAM_OUTBOUND_ALLOW)")
    group.add_argument("--block-recipients", dest="block", metavar="LIST",
                       help="comma-separated addresses/domains mail never goes to (MAM_OUTBOUND_BLOCK)")
    group.add_argument("--max-recipients", dest="max_recipients", type=int, metavar="N",
                       help="most recipients in one message (MAM_OUTBOUND_MAX_RECIPIENTS)")
    group.add_argument("--sends-per-hour", dest="sends_per_hour", type=int, metavar="N",
                       help="most sends per inbox in any hour (MAM_OUTBOUND_SENDS_PER_HOUR)")
    group.add_argument("--reply-only", dest="reply_only", action="store_true",
                       help="the agent may only reply within existing threads (MAM_OUTBOUND_REPLY_ONLY)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    add_safety_arguments(parser)
    parser.add_argument(
        "--transport", choices=["stdio", "http", "sse"], default="stdio",
        help="MCP transport: stdio (default, what hosts launch), http (streamable HTTP at /mcp) or sse",
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1; any other "
                        "address needs a bearer token)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_HTTP_PORT,
                        help=f"HTTP port (default {DEFAULT_HTTP_PORT}; 0 picks a free one)")
    parser.add_argument("--allowed-origin", dest="allowed_origin", action="append", default=[], metavar="ORIGIN",
                        help="an Origin browsers may call from, e.g. https://app.example.com (repeatable; "
                        "'http://host:*' allows any port)")
    parser.add_argument("--allowed-host", dest="allowed_host", action="append", default=[], metavar="HOST",
                        help="a Host header to answer, e.g. mcp.example.com (repeatable; loopback names always "
                        "allowed on a loopback bind)")
    parser.add_argument("--auth-token", dest="auth_token", help="bearer token HTTP clients must send "
                        "(prefer MAM_MCP_AUTH_TOKEN: a flag shows in the process list)")
    parser.add_argument("--stateless", action="store_true",
                        help="stateless streamable HTTP: no sessions, any worker answers any request "
                        "(behind a load balancer)")
    parser.add_argument("--json-response", dest="json_response", action="store_true",
                        help="answer streamable HTTP requests with JSON instead of an SSE stream")
    parser.add_argument("--workers", type=bounded_number(1, 64, integer=True), default=1,
                        help="worker processes sharing the port (streamable HTTP with --stateless only)")
    parser.add_argument("--catch-all", dest="catch_all", metavar="INBOX",
                        help="local mode: deliver mail for unknown names on the local domain to this inbox "
                        "(a username); default: refuse it (MAM_LOCAL_CATCH_ALL)")
    limits = parser.add_argument_group("HTTP limits (--transport http|sse; the env vars also apply to the local daemon)")
    limits.add_argument("--http-read-timeout", dest="http_read_timeout", type=float, metavar="SECONDS",
                        help="close a connection whose request has not fully arrived in time "
                        "(MAM_MCP_HTTP_READ_TIMEOUT, default 30)")
    limits.add_argument("--http-idle-timeout", dest="http_idle_timeout", type=float, metavar="SECONDS",
                        help="close a kept-alive connection with no new request (MAM_MCP_HTTP_IDLE_TIMEOUT, default 15)")
    limits.add_argument("--session-idle-timeout", dest="session_idle_timeout", type=float, metavar="SECONDS",
                        help="end a streamable HTTP session with no request (MAM_MCP_SESSION_IDLE_TIMEOUT, default 1800)")
    limits.add_argument("--max-sessions", dest="max_sessions", type=int, metavar="N",
                        help="open streamable HTTP sessions; one more is refused with 503 "
                        "(MAM_MCP_MAX_SESSIONS, default 1000)")


def http_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """HttpOptions from the parsed flags."""
    from mam_mcp.http_app import HttpOptions

    return HttpOptions(
        transport=args.transport,
        host=args.host,
        port=args.port,
        allowed_origins=tuple(args.allowed_origin or ()),
        allowed_hosts=tuple(args.allowed_host or ()),
        stateless=bool(args.stateless),
        json_response=bool(args.json_response),
    )


def collect_after_start_up() -> None:
    """Turn the cyclic collector back on (the CLI turns it off for start-up) and freeze what start-up
    made: modules, models and the server live as long as the process, so later collections (during
    tool calls) need not walk them again. The few cycles start-up left behind are frozen with them
    (measured: 3,300 objects, ~0.5 MB, once) instead of a full collection (~75 ms) before the first
    request."""
    import gc

    gc.enable()
    gc.freeze()


def run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    import anyio

    from mam_mcp.server import build_server
    from mam_mcp.tools.catalog import SelectionError

    if args.transport != "stdio":
        return _run_http(args, settings)
    try:
        server = build_server(settings)
    except SelectionError as error:
        print(f"mam-mcp: {error}", file=sys.stderr)
        return 2

    from mam_mcp.stdio import serve_stdio

    collect_after_start_up()

    if sys.stdin is not None and sys.stdin.isatty():  # a person ran it, not a host: say what it waits for
        print(TERMINAL_HINT, file=sys.stderr, flush=True)
    return anyio.run(serve_stdio, server)


def _run_http(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import sys

    import anyio
    import uvicorn

    from mam_mcp.http_app import HttpStartRefused, build_http_app
    from mam_mcp.http_limits import uvicorn_config
    from mam_mcp.tools.catalog import SelectionError

    options = http_options(args)
    if args.workers > 1 and (options.transport != "http" or not options.stateless):
        print("mam-mcp: --workers needs --transport http --stateless (sessions live in one process)", file=sys.stderr)
        return 2
    try:
        app = build_http_app(settings, options)  # in the parent too: refuse bad options before any worker starts
    except (HttpStartRefused, SelectionError) as error:
        print(f"mam-mcp: {error}", file=sys.stderr)
        return 2
    collect_after_start_up()
    if args.workers > 1:
        return _run_workers(settings, options, args.workers)
    server = app.server  # type: ignore[attr-defined]
    level = settings.log_level.lower() if settings.log_level in ("DEBUG", "INFO", "WARNING", "ERROR") else "warning"
    config = uvicorn_config(
        app, read_timeout_seconds=settings.http_read_timeout_seconds,
        idle_timeout_seconds=settings.http_idle_timeout_seconds,
        host=options.host, port=options.port, log_level=level, access_log=settings.log_level == "DEBUG",
        server_header=False, proxy_headers=False, lifespan="on" if options.transport == "http" else "off",
        log_config=None,  # keep our stderr handler with the redacting filter
    )
    web = uvicorn.Server(config)
    log = logging.getLogger("mam_mcp.http")

    async def announce() -> None:
        with anyio.fail_after(30):
            while not web.started:
                await anyio.sleep(0.05)
        for listener in web.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                path = options.path if options.transport == "http" else "/sse"
                auth = "bearer token required" if settings.auth_token else "no token (loopback only)"
                # One line on stderr that scripts and tests can wait for; never the token itself.
                print(f"mam-mcp: serving {options.transport} on http://{_url_host(host)}:{port}{path} ({auth})",
                      file=sys.stderr, flush=True)
        log.info("selection headers X-MCP-Toolsets, X-MCP-Tools, X-MCP-Readonly narrow tools per request")

    async def serve() -> None:
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(announce)
                await web.serve()
                tasks.cancel_scope.cancel()
        finally:
            await server.runtime.aclose()

    anyio.run(serve)
    return 0


def _run_workers(settings: Settings, options, workers: int) -> int:  # type: ignore[no-untyped-def]
    """Several stateless worker processes on one port (uvicorn's supervisor; each builds its own app)."""
    import sys

    from uvicorn.supervisors import Multiprocess

    from mam_mcp.http_app import HttpAppFactory
    from mam_mcp.http_limits import bind_listener, uvicorn_config

    level = settings.log_level.lower() if settings.log_level in ("DEBUG", "INFO", "WARNING", "ERROR") else "warning"
    config = uvicorn_config(
        HttpAppFactory(settings, options), read_timeout_seconds=settings.http_read_timeout_seconds,
        idle_timeout_seconds=settings.http_idle_timeout_seconds, factory=True, workers=workers, host=options.host,
        port=options.port, log_level=level, access_log=settings.log_level == "DEBUG", server_header=False,
        proxy_headers=False, lifespan="on", log_config=None,
    )
    # Not uvicorn's config.bind_socket(): its socket has protocol 0, and asyncio then leaves TCP_NODELAY off.
    try:
        sock = bind_listener(options.host, options.port)
    except OSError as error:
        print(f"mam-mcp: cannot listen on {options.host}:{options.port}: {error.strerror}", file=sys.stderr)
        return 2
    sock.set_inheritable(True)  # the worker processes serve it
    host, port = sock.getsockname()[:2]
    auth = "bearer token required" if settings.auth_token else "no token (loopback only)"
    print(f"mam-mcp: serving http on http://{_url_host(host)}:{port}{options.path} ({auth}; {workers} workers)",
          file=sys.stderr, flush=True)
    Multiprocess(config, sockets=[sock]).run()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
