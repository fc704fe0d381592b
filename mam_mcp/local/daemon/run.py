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
import hmac
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import filelock
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

import mam_mcp
from mam_mcp.local.config import LocalConfig

__all__ = [
    "ActivityTracker",
    "DaemonError",
    "first_daemon_error",
    "load_or_mint_key",
    "run_daemon",
    "status_route",
    "write_secret_file",
]

logger = logging.getLogger("mam_mcp.local.daemon")

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

HTTP_PORT_ENV = "MAM_LOCAL_HTTP_PORT"
SMTP_PORT_ENV = "MAM_LOCAL_SMTP_PORT"
# Asking how the daemon is (`mam-mcp local status`) must not keep it alive.
PASSIVE_PATHS = frozenset({"/_mam/status"})
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


class ActivityTracker:
    """Knows when the daemon last had a client (for the idle shutdown).

    An open WebSocket, a long request or an SMTP delivery counts for as long as it lasts.
    """

    def __init__(self) -> None:
        self._open = 0
        self._last = time.monotonic()
        self.changed = anyio.Event()

    @property
    def idle_since(self) -> float | None:
        """monotonic time since which nothing is open, or None while a client is connected."""
        return None if self._open else self._last

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        # Only the last one out wakes the watcher: it waits for that while anything is open, and
        # re-reads the clock when its idle deadline passes. (Two Events per SMTP message were
        # 2-3% of the daemon's time under load.)
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            self._last = time.monotonic()
            if self._open == 0:
                self._notify()

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` with every HTTP request and WebSocket counted as activity while it lasts."""

        async def tracked(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] not in ("http", "websocket") or scope.get("path") in PASSIVE_PATHS:
                await app(scope, receive, send)
                return
            with self.busy():
                await app(scope, receive, send)

        return tracked


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


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _prepare_data_dir(config: LocalConfig) -> None:
    existed = config.data_dir.exists()
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not existed and sys.platform != "win32":
        os.chmod(config.data_dir, 0o700)  # mkdir's mode is masked by the umask


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
    lock = filelock.FileLock(config.run_lock_path, thread_local=False)
    with anyio.move_on_after(wait_seconds):
        while True:
            try:
                lock.acquire(blocking=False)
                return lock
            except filelock.Timeout:
                await anyio.sleep(0.05)
    raise DaemonError(f"another mam-mcp daemon is running for the data dir {config.data_dir}")


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


def _presented_key(request: Request) -> str:
    key = request.headers.get("x-api-key", "")
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return key


def shutdown_route(tenant_key: str, request_shutdown: Callable[[], None]) -> Route:
    """`POST /_mam/shutdown`: stop the daemon (the launcher's way to replace a stale one)."""

    async def shutdown(request: Request) -> JSONResponse:
        presented = _presented_key(request)
        if not presented or not hmac.compare_digest(presented.encode(), tenant_key.encode()):
            return JSONResponse(
                {"error": "a valid tenant key is required", "code": "AUTH_INVALID"}, status_code=401
            )
        request_shutdown()
        return JSONResponse({"ok": True}, status_code=202)

    return Route("/_mam/shutdown", shutdown, methods=["POST"])


def status_route(config: LocalConfig, tracker: ActivityTracker, started: float) -> Route:
    """`GET /_mam/status`: uptime and idle time for `mam-mcp local status` (not counted as activity)."""

    async def status(request: Request) -> JSONResponse:
        now = time.monotonic()
        idle_since = tracker.idle_since
        return JSONResponse(
            {
                "service": "mam-mcp-local",
                "version": mam_mcp.__version__,
                "pid": os.getpid(),
                "httpPort": config.http_port,
                "smtpPort": config.smtp_port,
                "uptimeSeconds": round(now - started, 1),
                "idleSeconds": None if idle_since is None else round(now - idle_since, 1),  # None: a client is on
                "idleTimeoutSeconds": config.idle_timeout_seconds,
            }
        )

    return Route("/_mam/status", status, methods=["GET"])


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


async def _watch_idle(
    tracker: ActivityTracker, idle_timeout: float, request_shutdown: Callable[[], None]
) -> None:
    """Request shutdown once nothing has been open for `idle_timeout` seconds."""
    while True:
        changed = tracker.changed
        since = tracker.idle_since
        if since is None:
            await changed.wait()
            continue
        remaining = since + idle_timeout - time.monotonic()
        if remaining <= 0:
            logger.info("no client for %.0f s: stopping", idle_timeout)
            request_shutdown()
            return
        with anyio.move_on_after(remaining):
            await changed.wait()


def _write_state_file(config: LocalConfig) -> None:
    state = {
        "pid": os.getpid(),
        "version": mam_mcp.__version__,
        "httpPort": config.http_port,
        "smtpPort": config.smtp_port,
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json_atomically(config.state_path, state)


def _remove_state_file(config: LocalConfig) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(config.state_path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            config.state_path.unlink()


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
) -> None:
    """Run the daemon until shutdown is requested; `ready` is set once both listeners listen.

    `lock_wait_seconds`: how long to wait for a predecessor on this data dir to finish stopping.
    """
    _prepare_data_dir(config)
    running_lock = await _acquire_running_lock(config, lock_wait_seconds)
    try:
        await _serve(config, ready)
    finally:
        running_lock.release()


async def _serve(config: LocalConfig, ready: anyio.Event | None) -> None:
    # Imported here so `import mam_mcp.local.daemon.run` stays cheap and free of side effects.
    from mam_mcp.local.api.app import create_app
    from mam_mcp.local.service.backend import LocalBackend
    from mam_mcp.local.console import CONSOLE_PATH, Console
    from mam_mcp.local.events.hub import EventHub, websocket_routes
    from mam_mcp.local.relay.smtp_relay import SmtpRelay
    from mam_mcp.local.relay.retries import SendRetryWorker
    from mam_mcp.local.smtp.ingress import SmtpIngress
    from mam_mcp.local.store.email_store import EmailStore
    from mam_mcp.local.webhooks.dispatcher import WebhookDispatcher
    from mam_mcp.loopback import LoopbackRequestGuard

    stop = anyio.Event()
    started = time.monotonic()
    tracker = ActivityTracker()
    backend_ref: list[LocalBackend] = []

    async def ingest(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> object:
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

        tenant_key = await _tenant_key(bound, backend)
        hub = EventHub()
        backend.add_event_sink(hub.publish)
        stack.callback(hub.close)
        dispatcher = WebhookDispatcher(
            bound, targets=backend.webhook_targets, current_url=backend.webhook_current_url
        )
        await dispatcher.start()
        stack.push_async_callback(dispatcher.stop)
        backend.add_event_sink(dispatcher.enqueue)

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
            await _serve_http(bound, http_sock, app, tracker, stop, ready)
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
                with anyio.fail_after(30):
                    await _wait_first(server.listening, stop)
                if stop.is_set():
                    return
                _write_state_file(config)
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
                        watchers.start_soon(_watch_idle, tracker, config.idle_timeout_seconds, stop.set)
                    await stop.wait()
                    watchers.cancel_scope.cancel()
            finally:
                server.should_exit = True
    finally:
        # Removed only once the HTTP port is closed: until then a launcher must see this daemon as ours.
        _remove_state_file(config)


async def _wait_first(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tasks:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tasks.cancel_scope.cancel()

        for event in events:
            tasks.start_soon(wait, event)
