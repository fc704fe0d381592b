"""Settings: built once (CLI flags > environment > credentials file > local default) and passed down.

No other module reads the environment.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from mam_mcp.local.defaults import (
    DEFAULT_DOMAIN,
    DEFAULT_HTTP_PORT,
    DEFAULT_LARGE_INGEST_CONCURRENCY,
    DEFAULT_LARGE_MESSAGE_BYTES,
    DEFAULT_SMTP_PORT,
)
from mam_mcp.send_policy import CONFIRM_MODES, SETTING_NAMES, ConfirmSends, OutboundPolicy

if TYPE_CHECKING:  # imported by local_config(): hosted mode never needs the model
    from mam_mcp.local.config import LocalConfig

__all__ = [
    "Settings",
    "DEFAULT_BASE_URL",
    "CONFIG_FILE_NAME",
    "config_dir",
    "credentials_path",
    "default_data_dir",
    "read_credentials",
    "read_config_file",
]

CONFIG_FILE_NAME = "mam-mcp.toml"  # in the config dir; --config or MAM_MCP_CONFIG name another
DEFAULT_CONFIRM_TIMEOUT = 300.0  # seconds a person has to answer a send confirmation

DEFAULT_BASE_URL = "https://myagentmail.com"
Mode = Literal["hosted", "local"]


def _platform_dir(
    env: Mapping[str, str] | None,
    platform: str | None,
    name: str,
    *,
    windows: tuple[str, tuple[str, ...]],
    xdg: tuple[str, tuple[str, ...]],
) -> Path:
    """`name` under the platform's folder: Windows env var (or a home-relative fallback),
    macOS Application Support, else the XDG env var (or its home-relative default)."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Application Support" / name
    var, fallback = windows if platform == "win32" else xdg
    return Path(env.get(var) or home.joinpath(*fallback)) / name


def config_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where the credentials file lives (shared with the vendor's CLI)."""
    return _platform_dir(env, platform, "myagentmail",
                         windows=("APPDATA", ("AppData", "Roaming")), xdg=("XDG_CONFIG_HOME", (".config",)))


def credentials_path(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    return config_dir(env, platform) / "credentials"


def default_data_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where the local backend keeps its SQLite database, key and logs."""
    return _platform_dir(env, platform, "mam-mcp",
                         windows=("LOCALAPPDATA", ("AppData", "Local")), xdg=("XDG_DATA_HOME", (".local", "share")))


def read_credentials(path: Path) -> dict[str, Any]:
    """The credentials JSON, or {} when missing or unreadable (never raises)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_FILE_KEYS = {"confirm_sends", "confirm_timeout_seconds", "outbound"}


def read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """The TOML config file as a dict ({} when absent and not required). A typo must not silently
    weaken a safety setting, so unknown keys and bad syntax are errors that name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ValueError(f"config file {path} does not exist") from None
        return {}
    except OSError as error:
        raise ValueError(f"config file {path} cannot be read: {error.strerror}") from None
    import tomllib  # only when there is a file: most starts have none

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path}: {error}") from None
    unknown = sorted(set(data) - _FILE_KEYS)
    outbound = data.get("outbound", {})
    if not isinstance(outbound, dict):
        raise ValueError(f"config file {path}: [outbound] must be a table")
    unknown += [f"outbound.{k}" for k in sorted(set(outbound) - set(SETTING_NAMES))]
    if unknown:
        raise ValueError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: confirm_sends, "
            f"confirm_timeout_seconds, {', '.join(f'outbound.{k}' for k in SETTING_NAMES)}"
        )
    return data


def _send_settings(
    flags: Mapping[str, Any], env: Mapping[str, str], file: Mapping[str, Any], file_label: str
) -> tuple[ConfirmSends, float, OutboundPolicy, dict[str, str]]:
    """confirm_sends, its timeout and the outbound policy, each from the first source that sets it
    (flag > environment > config file), with where each came from (for `doctor`)."""
    sources: dict[str, str] = {}

    def pick(name: str, flag: str, env_name: str, file_value: Any) -> Any:
        for label, value in ((f"--{flag}", flags.get(name)), (env_name, env.get(env_name)), (file_label, file_value)):
            if value is not None and value != "":
                sources[name] = label
                return value
        return None

    confirm = pick("confirm_sends", "confirm-sends", "MAM_MCP_CONFIRM_SENDS", file.get("confirm_sends"))
    confirm = str(confirm).strip().lower() if confirm is not None else "new-recipients"
    if confirm not in CONFIRM_MODES:
        raise ValueError(f"confirm_sends must be one of {', '.join(CONFIRM_MODES)}, not {confirm[:40]!r}")
    timeout_value = pick("confirm_timeout", "confirm-timeout", "MAM_MCP_CONFIRM_TIMEOUT", file.get("confirm_timeout_seconds"))
    try:
        timeout = float(timeout_value) if timeout_value is not None else DEFAULT_CONFIRM_TIMEOUT
    except (TypeError, ValueError):
        timeout = -1.0
    if not 1 <= timeout <= 3600:
        raise ValueError(f"confirm timeout must be 1-3600 seconds, not {str(timeout_value)[:40]!r}")

    outbound_file = file.get("outbound", {})
    values: dict[str, Any] = {}
    for name, (_, env_name, flag) in SETTING_NAMES.items():
        value = pick(name, flag.removeprefix("--"), env_name, outbound_file.get(name))
        if value is None:
            continue
        if name == "reply_only" and isinstance(value, str):
            value = _truthy(value)
        values[name] = value
    try:
        policy = OutboundPolicy.model_validate(values)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        field = str(problem["loc"][0]) if problem["loc"] else "outbound"
        raise ValueError(
            f"outbound policy {field} (from {sources.get(field, 'settings')}): {problem['msg'].removeprefix('Value error, ')}"
        ) from None
    return confirm, timeout, policy, sources  # type: ignore[return-value]


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    return items or None


def _port(name: str, value: object) -> int:
    """A port from a flag or the environment; the error names the setting instead of int()'s message."""
    if value is None or value == "":
        return DEFAULT_HTTP_PORT if name == "MAM_LOCAL_HTTP_PORT" else DEFAULT_SMTP_PORT
    try:
        port = int(str(value).strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{name} must be a port number (0-65535), not {str(value)[:40]!r}")
    return port


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive(name: str, value: object, default: float) -> float:
    """A positive number of seconds (or of sessions) from a flag or the environment; the error names the setting."""
    if value is None or value == "":
        return default
    try:
        number = float(str(value).strip())
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise ValueError(f"{name} must be a positive number, not {str(value)[:40]!r}")
    return number


def _whole(name: str, value: str | None, default: int) -> int:
    """A positive whole number from the environment; the error names the setting."""
    number = _positive(name, value, default)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number, not {str(value)[:40]!r}")
    return int(number)


# HTTP servers (`serve --transport http|sse` and the local daemon): see mam_mcp/http_limits.py.
DEFAULT_HTTP_READ_TIMEOUT = 30.0  # a request (headers and body) must arrive whole within this
DEFAULT_HTTP_IDLE_TIMEOUT = 15.0  # a kept-alive connection waiting for its next request is closed after this
DEFAULT_SESSION_IDLE_TIMEOUT = 1800.0  # a streamable HTTP session with no request for this long ends
DEFAULT_MAX_SESSIONS = 1000  # open streamable HTTP sessions (~75 KB each); one more is refused with 503


class Settings(BaseModel):
    """Everything mam-mcp needs to know, resolved once."""

    model_config = ConfigDict(frozen=True)

    mode: Mode
    mode_reason: str = ""  # why this mode was chosen (shown by doctor and the server log)
    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    toolsets: tuple[str, ...] | None = None  # None = the default toolsets
    tools: tuple[str, ...] | None = None  # exact tool names; overrides toolsets
    exclude_tools: tuple[str, ...] = ()
    read_only: bool = False
    config_dir: Path
    data_dir: Path
    local_http_port: int = DEFAULT_HTTP_PORT
    local_smtp_port: int = DEFAULT_SMTP_PORT
    local_domain: str = DEFAULT_DOMAIN
    local_large_message_bytes: int = DEFAULT_LARGE_MESSAGE_BYTES
    local_large_ingest_concurrency: int = DEFAULT_LARGE_INGEST_CONCURRENCY
    local_catch_all: str | None = None  # inbox for unknown local parts on the local domain (off)
    relay_url: SecretStr | None = None
    log_level: str = "WARNING"
    auth_token: SecretStr | None = None  # bearer token for the HTTP transports
    # Consent and outbound policy (send_policy.py): set by the person running mam-mcp, never by a tool.
    confirm_sends: ConfirmSends = "new-recipients"
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT
    outbound: OutboundPolicy = OutboundPolicy()
    config_file: Path | None = None  # the config file that was read, if any
    setting_sources: dict[str, str] = {}  # consent/policy setting -> the flag, variable or file that set it
    http_read_timeout_seconds: float = DEFAULT_HTTP_READ_TIMEOUT
    http_idle_timeout_seconds: float = DEFAULT_HTTP_IDLE_TIMEOUT
    session_idle_timeout_seconds: float = DEFAULT_SESSION_IDLE_TIMEOUT
    max_sessions: int = DEFAULT_MAX_SESSIONS

    @property
    def credentials_path(self) -> Path:
        return self.config_dir / "credentials"

    @property
    def secrets_dir(self) -> Path:
        """Where secrets the API returns once are written (mode 0600), never into tool output."""
        return self.config_dir / "secrets"

    def local_config(self, **overrides: Any) -> LocalConfig:
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "http_port": self.local_http_port,
            "smtp_port": self.local_smtp_port,
            "domain": self.local_domain,
            "large_message_bytes": self.local_large_message_bytes,
            "large_ingest_concurrency": self.local_large_ingest_concurrency,
            "catch_all_inbox": self.local_catch_all,
            "relay_url": self.relay_url.get_secret_value() if self.relay_url else None,
            "http_read_timeout_seconds": self.http_read_timeout_seconds,
            "http_idle_timeout_seconds": self.http_idle_timeout_seconds,
        }
        values.update(overrides)
        from mam_mcp.local.config import LocalConfig

        return LocalConfig(**values)

    @classmethod
    def load(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        platform: str | None = None,
    ) -> Settings:
        """Resolve settings. `overrides` are CLI flags (None values are ignored)."""
        env = dict(os.environ if env is None else env)
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}
        cfg_dir = Path(flags.get("config_dir") or env.get("MAM_MCP_CONFIG_DIR") or config_dir(env, platform))
        creds = read_credentials(cfg_dir / "credentials")

        key, key_source = None, ""
        for source, value in (
            ("--api-key", flags.get("api_key")),
            ("MYAGENTMAIL_API_KEY", env.get("MYAGENTMAIL_API_KEY")),
            ("MYAGENTMAIL_KEY", env.get("MYAGENTMAIL_KEY")),
            ("credentials file", creds.get("apiKey") or creds.get("api_key")),
        ):
            if value:
                key, key_source = str(value).strip(), source
                break
        base_url = (
            flags.get("base_url") or env.get("MYAGENTMAIL_BASE_URL") or creds.get("baseUrl") or DEFAULT_BASE_URL
        )

        requested = flags.get("mode") or env.get("MAM_MCP_MODE")
        if requested and requested not in ("hosted", "local"):
            raise ValueError(f"mode must be 'hosted' or 'local', not {requested!r}")
        if requested:
            mode, reason = requested, f"mode {requested} requested"
        elif key:
            mode, reason = "hosted", f"API key from {key_source}"
        else:
            mode, reason = "local", "no API key configured: using the embedded local backend"
        if mode == "hosted" and not key:
            raise ValueError("hosted mode needs an API key: run `mam-mcp login` or set MYAGENTMAIL_API_KEY")

        toolsets = flags.get("toolsets")
        toolsets = _split(toolsets) if isinstance(toolsets, str) else toolsets
        if toolsets is None:
            toolsets = _split(env.get("MAM_MCP_TOOLSETS"))
        tools = flags.get("tools")
        tools = _split(tools) if isinstance(tools, str) else tools
        if tools is None:
            tools = _split(env.get("MAM_MCP_TOOLS"))
        exclude = flags.get("exclude_tools")
        exclude = _split(exclude) if isinstance(exclude, str) else exclude
        if exclude is None:
            exclude = _split(env.get("MAM_MCP_EXCLUDE_TOOLS"))
        read_only = bool(flags.get("read_only")) or _truthy(env.get("MAM_MCP_READ_ONLY"))

        relay = flags.get("relay_url") or env.get("MAM_SMTP_RELAY_URL")
        named_file = flags.get("config") or env.get("MAM_MCP_CONFIG")
        file_path = Path(named_file).expanduser() if named_file else cfg_dir / CONFIG_FILE_NAME
        file_data = read_config_file(file_path, required=bool(named_file))
        confirm, confirm_timeout, outbound, sources = _send_settings(flags, env, file_data, str(file_path))
        return cls(
            mode="hosted" if mode == "hosted" else "local",
            mode_reason=reason,
            api_key=SecretStr(key) if key else None,
            base_url=str(base_url),
            toolsets=tuple(toolsets) if toolsets else None,
            tools=tuple(tools) if tools else None,
            exclude_tools=tuple(exclude or ()),
            read_only=read_only,
            config_dir=cfg_dir,
            data_dir=Path(flags.get("data_dir") or env.get("MAM_LOCAL_DATA_DIR") or default_data_dir(env, platform)),
            local_http_port=_port("MAM_LOCAL_HTTP_PORT", flags.get("http_port") or env.get("MAM_LOCAL_HTTP_PORT")),
            local_smtp_port=_port("MAM_LOCAL_SMTP_PORT", flags.get("smtp_port") or env.get("MAM_LOCAL_SMTP_PORT")),
            local_domain=str(flags.get("domain") or env.get("MAM_LOCAL_DOMAIN") or DEFAULT_DOMAIN),
            local_large_message_bytes=_whole(
                "MAM_LOCAL_LARGE_MESSAGE_BYTES", env.get("MAM_LOCAL_LARGE_MESSAGE_BYTES"), DEFAULT_LARGE_MESSAGE_BYTES
            ),
            local_large_ingest_concurrency=_whole(
                "MAM_LOCAL_LARGE_INGEST_CONCURRENCY",
                env.get("MAM_LOCAL_LARGE_INGEST_CONCURRENCY"),
                DEFAULT_LARGE_INGEST_CONCURRENCY,
            ),
            local_catch_all=str(flags.get("catch_all") or env.get("MAM_LOCAL_CATCH_ALL") or "").strip() or None,
            relay_url=SecretStr(relay) if relay else None,
            log_level=str(flags.get("log_level") or env.get("MAM_MCP_LOG_LEVEL") or "WARNING").upper(),
            auth_token=SecretStr(token) if (token := flags.get("auth_token") or env.get("MAM_MCP_AUTH_TOKEN")) else None,
            confirm_sends=confirm,
            confirm_timeout=confirm_timeout,
            outbound=outbound,
            config_file=file_path if file_data else None,
            setting_sources=sources,
            **_http_limits(flags, env),
        )


def _http_limits(flags: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The HTTP servers' timeouts and session cap: flag, else environment, else default."""

    def pick(flag: str, var: str, default: float) -> float:
        name = f"--{flag.replace('_', '-')} / {var}"
        return _positive(name, flags.get(flag) if flags.get(flag) is not None else env.get(var), default)

    max_sessions = pick("max_sessions", "MAM_MCP_MAX_SESSIONS", DEFAULT_MAX_SESSIONS)
    if max_sessions != int(max_sessions):
        raise ValueError(f"--max-sessions / MAM_MCP_MAX_SESSIONS must be a whole number, not {max_sessions:g}")
    return {
        "http_read_timeout_seconds": pick("http_read_timeout", "MAM_MCP_HTTP_READ_TIMEOUT", DEFAULT_HTTP_READ_TIMEOUT),
        "http_idle_timeout_seconds": pick("http_idle_timeout", "MAM_MCP_HTTP_IDLE_TIMEOUT", DEFAULT_HTTP_IDLE_TIMEOUT),
        "session_idle_timeout_seconds": pick(
            "session_idle_timeout", "MAM_MCP_SESSION_IDLE_TIMEOUT", DEFAULT_SESSION_IDLE_TIMEOUT
        ),
        "max_sessions": int(max_sessions),
    }
