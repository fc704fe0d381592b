"""The local backend daemon: REST + WebSocket (uvicorn) and SMTP ingress on one event loop.

One daemon per data dir. `run_daemon(config)` wires the parts together (store, backend,
event hub, webhook dispatcher, SMTP ingress), writes `daemon.json` once both listeners
listen, and stops on SIGTERM/SIGINT, on `POST /_mam/shutdown` with the tenant key (the
launcher replaces a stale daemon this way, Windows included), or after
`idle_timeout_seconds` with no HTTP request, no open WebSocket and no SMTP delivery.
Importing this module has no side effects.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import filelock
import uvicorn
from starlette.routing import BaseRoute, Mount

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.activity import ActivityTracker, ASGIApp, watch_idle
from mam_mcp.local.daemon.control import shutdown_route, status_route
from mam_mcp.local.daemon.data_dir import (
    PRIVATE_FILE_MODE,
    load_or_mint_key,
    prepare_data_dir,
    remove_state_file,
    write_state_file,
)
from mam_mcp.local.daemon.expiry import ExpirySweeper

__all__ = ["DaemonError", "first_daemon_error", "run_daemon"]

logger = logging.getLogger("mam_mcp.local.daemon")

HTTP_PORT_ENV = "MAM_LOCAL_HTTP_PORT"
SMTP_PORT_ENV = "MAM_LOCAL_SMTP_PORT"
RUNNING_LOCK_WAIT_SECONDS = 10.0  # a replaced daemon may still be closing its store
_GRACEFUL_SHUTDOWN_SECONDS = 3


class DaemonError(RuntimeError):
    """The daemon cannot start; the message says why and what to change.

    For a busy port, `problem` is the sentence without the fix and `port_setting` names the
    setting that chose the port ("smtp_port"), so a command given `--smtp-port` can name its flag.
    """

    def __init__(self, problem: str, fix: str = "", *, port_setting: str | None = None) -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.port_setting = port_setting


def first_daemon_error(exc: BaseException) -> DaemonError | None:
    """The DaemonError in `exc`, which a task group may have wrapped in an exception group."""
    if isinstance(exc, DaemonError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := first_daemon_error(inner)) is not None:
                return found
    return None


def _bind_http_socket(config: LocalConfig) -> socket.socket:
    from mam_mcp.http_limits import address_in_use, bind_listener

    try:
        # IPPROTO_TCP (bind_listener): without it asyncio leaves TCP_NODELAY off and every kept-alive
        # response waited ~40 ms for the client's delayed ACK (Nagle).
        sock = bind_listener(config.host, config.http_port, backlog=511)
    except OSError as exc:
        if address_in_use(exc):
            raise DaemonError(
                f"HTTP port {config.http_port} on {config.host} is in use by another program; "
                f"set {HTTP_PORT_ENV} to a free port"
            ) from None
        raise
    sock.setblocking(False)
    return sock


async def _acquire_running_lock(config: LocalConfig, wait_seconds: float) -> filelock.BaseFileLock:
    """Hold `daemon.run.lock` for the daemon's life: a second daemon on this data dir refuses to run."""
    lock = filelock.FileLock(config.run_lock_path, mode=PRIVATE_FILE_MODE, thread_local=False)
    with anyio.move_on_after(wait_seconds):
        while True:
            try:
                lock.acquire(blocking=False)
                return lock
            except filelock.Timeout:
                await anyio.sleep(0.05)
    raise DaemonError(f"another mam-mcp daemon is running for the data dir {config.data_dir}")


class _HttpServer(uvicorn.Server):
    """uvicorn on our loop: we own signal handling and want to know when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # run_daemon installs its own handlers; uvicorn's would re-raise the signal at exit

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


@contextlib.contextmanager
def _signal_handlers(request_shutdown: Callable[[], None]) -> Iterator[None]:
    """SIGTERM/SIGINT request a clean shutdown (asyncio's loop handlers on POSIX)."""
    import asyncio

    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, request_shutdown)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows or not the main thread: Ctrl-C / TerminateProcess still end us
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _smtp_port_error(config: LocalConfig, exc: OSError) -> DaemonError | None:
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        return DaemonError(
            f"SMTP port {config.smtp_port} on {config.host} is in use by another program",
            f"set {SMTP_PORT_ENV} to a free port",
            port_setting="smtp_port",
        )
    return None


async def run_daemon(
    config: LocalConfig,
    *,
    ready: anyio.Event | None = None,
    lock_wait_seconds: float = RUNNING_LOCK_WAIT_SECONDS,
    stop_requested: anyio.Event | None = None,
) -> None:
    """Run the daemon until shutdown is requested; `ready` is set once both listeners listen.

    `lock_wait_seconds`: how long to wait for a predecessor on this data dir to finish stopping.
    `stop_requested`: set by the caller to stop it cleanly, like SIGTERM (`--stop-with-parent`).
    """
    try:
        prepare_data_dir(config)
    except OSError as exc:  # a file where the directory should be, no permission: a sentence, not a traceback
        raise DaemonError(
            f"cannot use the data dir {config.data_dir}: {exc.strerror or exc}; "
            "choose another one (MAM_LOCAL_DATA_DIR) or fix its permissions"
        ) from None
    running_lock = await _acquire_running_lock(config, lock_wait_seconds)
    try:
        await _serve(config, ready, stop_requested)
    finally:
        running_lock.release()


async def _serve(config: LocalConfig, ready: anyio.Event | None, stop_requested: anyio.Event | None) -> None:
    # Imported here so `import mam_mcp.local.daemon.run` stays cheap and free of side effects.
    from mam_mcp.local.api.app import create_app
    from mam_mcp.local.api.websocket import websocket_routes
    from mam_mcp.local.console import CONSOLE_PATH, Console
    from mam_mcp.local.events.hub import EventHub
    from mam_mcp.local.mime.source import RawMessage
    from mam_mcp.local.relay.retries import SendRetryWorker
    from mam_mcp.local.relay.smtp_relay import SmtpRelay
    from mam_mcp.local.service.backend import LocalBackend
    from mam_mcp.local.smtp.ingress import SmtpIngress
    from mam_mcp.local.store.email_store import EmailStore
    from mam_mcp.local.webhooks.deliveries import import_legacy_log
    from mam_mcp.local.webhooks.dispatcher import WebhookDispatcher
    from mam_mcp.loopback import LoopbackRequestGuard

    stop = anyio.Event()
    started = time.monotonic()
    tracker = ActivityTracker()
    backend_ref: list[LocalBackend] = []

    async def ingest(raw: RawMessage, mail_from: str, rcpt_tos: list[str]) -> object:
        with tracker.busy():  # mail arriving keeps the daemon alive like a client does
            return await backend_ref[0].ingest(raw, mail_from, rcpt_tos)

    def is_local_recipient(address: str) -> bool:
        return backend_ref[0].is_local_recipient(address)

    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(
            _signal_handlers(stop.set)
        )  # from the start: a SIGTERM mid-start stops cleanly too
        http_sock = _bind_http_socket(config)
        stack.callback(http_sock.close)
        store = EmailStore(config)
        await store.open()
        stack.push_async_callback(store.close)

        smtp = SmtpIngress(
            ingest=ingest,
            is_local_recipient=is_local_recipient,
            host=config.host,
            port=config.smtp_port,
            max_message_bytes=config.max_message_bytes,
            large_message_bytes=config.large_message_bytes,
            large_ingest_concurrency=config.large_ingest_concurrency,
            spool_dir=config.data_dir,  # beside the database, not a RAM-backed /tmp
        )
        # The backend is set below before the loop runs again: no SMTP session can see it unset.
        try:
            await smtp.start()
        except OSError as exc:
            raise _smtp_port_error(config, exc) or exc from None
        stack.push_async_callback(smtp.stop)
        bound = config.model_copy(update={"http_port": http_sock.getsockname()[1], "smtp_port": smtp.port})
        backend = LocalBackend(bound, store, relay=SmtpRelay(config.relay_url) if config.relay_url else None)
        backend_ref.append(backend)
        await _recover_sends(backend)
        retries = SendRetryWorker(backend, busy=tracker.busy)
        await retries.start()
        stack.push_async_callback(retries.stop)
        sweeper = ExpirySweeper(backend, config.expiry_sweep_seconds, config.housekeeping_seconds)
        sweeper.start()
        stack.push_async_callback(sweeper.stop)

        tenant_key = await _tenant_key(bound, backend)
        hub = EventHub()
        backend.add_event_sink(hub.publish)
        stack.callback(hub.close)
        await import_legacy_log(config.data_dir, store.outbox)  # an older install's webhooks.db, once
        dispatcher = WebhookDispatcher(bound, store.outbox, destination=backend.webhook_destination)
        backend.add_outbox_listener(dispatcher.wake)
        await dispatcher.start()
        stack.push_async_callback(dispatcher.stop)

        console = Console(backend, hub)
        stack.callback(console.close)
        routes: list[BaseRoute] = [
            Mount(CONSOLE_PATH, app=console.app),
            *websocket_routes(
                hub,
                authenticate=backend.authenticate,
                inbox_owner=backend.inbox_owner,
                ping_interval=config.ws_ping_interval_seconds,
            ),
            shutdown_route(tenant_key, stop.set),
            status_route(bound, tracker, started),
        ]
        # Only this machine's own clients: a web page rebinding its name to 127.0.0.1 is refused.
        app = tracker.wrap(LoopbackRequestGuard(create_app(backend, extra_routes=routes)))
        try:
            await _serve_http(bound, http_sock, app, tracker, stop, ready, stop_requested)
        finally:
            # No new mail once HTTP is down, before the dispatcher and store close (the stack unwinds next).
            await smtp.stop()
    logger.info("stopped")


async def _recover_sends(backend: Any) -> None:
    """Before anything sends: what the previous run left with the relay is `unknown`, never resent."""
    unknown, requeued = await backend.recover_sends()
    if unknown:
        logger.warning(
            "%d send(s) were being handed to the relay when the daemon last stopped: marked unknown, not resent",
            unknown,
        )
    if requeued:
        logger.info("%d recorded send(s) never reached the relay: sending them now", requeued)


async def _tenant_key(config: LocalConfig, backend: Any) -> str:
    """The data dir's tk_ key; minted on first start, re-minted if the database no longer knows it."""

    async def mint() -> str:
        return str(await backend.keys.mint_tenant_key())

    key = await load_or_mint_key(config, mint)
    if backend.authenticate(key) is None:
        logger.warning(
            "the key in %s is unknown to the database (was it reset?): minting a new one", config.key_path
        )
        config.key_path.unlink()
        key = await load_or_mint_key(config, mint)
    return key


async def _serve_http(
    config: LocalConfig,
    sock: socket.socket,
    app: ASGIApp,
    tracker: ActivityTracker,
    stop: anyio.Event,
    ready: anyio.Event | None,
    stop_requested: anyio.Event | None = None,
) -> None:
    from mam_mcp.http_limits import uvicorn_config

    server = _HttpServer(
        uvicorn_config(
            app,
            read_timeout_seconds=config.http_read_timeout_seconds,
            idle_timeout_seconds=config.http_idle_timeout_seconds,
            ws="wsproto",  # websockets is not a dependency; wsproto comes with httpx2[ws]
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
        )
    )
    try:
        async with anyio.create_task_group() as tasks:

            async def serve() -> None:
                await server.serve(sockets=[sock])
                stop.set()  # uvicorn ended on its own (a startup failure): take the rest down too

            tasks.start_soon(serve)
            try:
                waits = [server.listening, stop, *([stop_requested] if stop_requested is not None else [])]
                with anyio.fail_after(30):
                    await _wait_first(*waits)
                if stop.is_set() or (stop_requested is not None and stop_requested.is_set()):
                    return  # asked to stop while starting: never announced, nothing to undo
                write_state_file(config)
                logger.info(
                    "listening: http://%s:%d smtp %s:%d",
                    config.host,
                    config.http_port,
                    config.host,
                    config.smtp_port,
                )
                if ready is not None:
                    ready.set()
                async with anyio.create_task_group() as watchers:
                    if config.idle_timeout_seconds > 0:
                        watchers.start_soon(watch_idle, tracker, config.idle_timeout_seconds, stop.set)
                    if stop_requested is not None:
                        watchers.start_soon(_relay_stop, stop_requested, stop)
                    await stop.wait()
                    watchers.cancel_scope.cancel()
            finally:
                server.should_exit = True
    finally:
        # Removed only once the HTTP port is closed: until then a launcher must see this daemon as ours.
        remove_state_file(config)


async def _relay_stop(requested: anyio.Event, stop: anyio.Event) -> None:
    await requested.wait()
    logger.info("stopping: the process that started this daemon is gone")
    stop.set()


async def _wait_first(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tasks:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tasks.cancel_scope.cancel()

        for event in events:
            tasks.start_soon(wait, event)
