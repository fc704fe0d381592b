"""Configuration of the embedded local backend.

Built once by `mam_mcp.config.Settings.local_config()` (or directly in tests) and passed
down; nothing in `mam_mcp.local` reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mam_mcp.local.defaults import (
    DEFAULT_DOMAIN,
    DEFAULT_HTTP_PORT,
    DEFAULT_LARGE_INGEST_CONCURRENCY,
    DEFAULT_LARGE_MESSAGE_BYTES,
    DEFAULT_SMTP_PORT,
)

__all__ = [
    "LocalConfig",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_SMTP_PORT",
    "DEFAULT_DOMAIN",
    "DEFAULT_LARGE_INGEST_CONCURRENCY",
    "DEFAULT_LARGE_MESSAGE_BYTES",
]



class LocalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use: `mam-mcp serve` imports this

    data_dir: Path
    host: str = "127.0.0.1"
    http_port: int = Field(DEFAULT_HTTP_PORT, ge=0, le=65535)  # 0 = ephemeral (tests)
    smtp_port: int = Field(DEFAULT_SMTP_PORT, ge=0, le=65535)
    domain: str = DEFAULT_DOMAIN  # addresses of local inboxes: <username>@<domain>
    # Mail to an unknown local part on `domain` goes to this inbox (a username or its address);
    # None (the default): such mail is refused with 550.
    catch_all_inbox: str | None = None
    relay_url: str | None = Field(default=None, repr=False)  # smtp+starttls://user:pass@host:587; has a password
    max_message_bytes: int = 25 * 1024 * 1024
    # Messages over large_message_bytes: at most large_ingest_concurrency received and stored at once;
    # one more is answered 451 4.3.2 (try again later) instead of growing the daemon's memory.
    large_message_bytes: int = Field(DEFAULT_LARGE_MESSAGE_BYTES, ge=1)
    large_ingest_concurrency: int = Field(DEFAULT_LARGE_INGEST_CONCURRENCY, ge=1)
    idle_timeout_seconds: float = 1800.0  # the daemon stops after this long with no client
    ws_ping_interval_seconds: float = 30.0
    http_read_timeout_seconds: float = Field(30.0, gt=0)  # a request must arrive whole within this
    http_idle_timeout_seconds: float = Field(15.0, gt=0)  # a kept-alive connection with no request is closed
    webhook_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 10.0  # backoff: base * 3**attempt, capped
    webhook_max_attempts: int = 8
    # Sends the relay answered 4xx or could not be reached for: tried again after base * 3**n
    # (30 s, 1.5 min, 4.5 min, 13.5 min with the defaults), then `failed`.
    send_retry_base_seconds: float = Field(30.0, gt=0)
    send_max_attempts: int = Field(5, ge=1, le=20)
    # Ephemeral inboxes: how often the daemon deletes the ones whose time to live ran out (also at start).
    expiry_sweep_seconds: float = Field(30.0, gt=0)
    # Webhook deliveries that ended (delivered or given up) are kept this long for the delivery log,
    # then deleted by the daemon's housekeeping (hourly and at start); pending ones are never deleted.
    delivery_log_days: float = Field(30.0, gt=0)
    housekeeping_seconds: float = Field(3600.0, gt=0)
    # Test only: the daemon stops at this named point of a send (recording, recorded, relaying,
    # relayed), writes `paused-at-<point>` in the data dir and waits to be killed. None: no effect.
    test_pause_at: str | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mail.db"

    @property
    def key_path(self) -> Path:
        """The tenant (tk_) key minted on first start, mode 0600."""
        return self.data_dir / "api_key"

    @property
    def state_path(self) -> Path:
        """JSON written by a running daemon: pid, version, ports."""
        return self.data_dir / "daemon.json"

    @property
    def lock_path(self) -> Path:
        """Held while a daemon is being started (serialises starters)."""
        return self.data_dir / "daemon.lock"

    @property
    def run_lock_path(self) -> Path:
        """Held by a daemon for its whole life, released once its store and listeners are closed."""
        return self.data_dir / "daemon.run.lock"

    @property
    def http_base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"
