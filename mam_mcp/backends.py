"""The backend a server or command talks to: the hosted API, or the local daemon (started if need be).

`connect_backend` is the default client factory: `build_server` hands it to the tools' Runtime,
and `mam-mcp tail`/`listen` use it directly. It lives outside `mam_mcp.tools` so that the tools
never import the local backend; the launcher is imported only when local mode makes a client.
"""

from __future__ import annotations

from mam_mcp.client import MamClient
from mam_mcp.client.errors import MamError
from mam_mcp.config import Settings

__all__ = ["LOCAL_WRITE_RETRIES", "connect_backend"]

LOCAL_WRITE_RETRIES = 1


async def connect_backend(settings: Settings) -> MamClient:
    """A client of the configured backend; in local mode the daemon is started if it is not running."""
    if settings.mode == "hosted":
        assert settings.api_key is not None  # Settings.load guarantees it
        return MamClient(base_url=settings.base_url, api_key=settings.api_key.get_secret_value())
    from mam_mcp.local.daemon.launcher import DaemonStartError, daemon_port_guard, ensure_daemon

    config = settings.local_config()
    try:
        handle = await ensure_daemon(config)
    except DaemonStartError as error:
        raise MamError(
            str(error),
            code="LOCAL_BACKEND_UNAVAILABLE",
            hint="Run `mam-mcp doctor`; or set MYAGENTMAIL_API_KEY to use the hosted API instead.",
        ) from None
    # The local backend honours Idempotency-Key on every create: a write whose answer was lost is sent once more.
    port = int(handle.base_url.rpartition(":")[2])
    return MamClient(
        base_url=handle.base_url,
        api_key=handle.api_key,
        write_retries=LOCAL_WRITE_RETRIES,
        before_send=daemon_port_guard(config.host, port),  # the key goes only to this user's daemon
    )
