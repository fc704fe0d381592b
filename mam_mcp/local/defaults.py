"""The local backend's defaults, apart from `LocalConfig`: the MCP server's settings read them at
start-up, and in hosted mode need nothing else of the local backend."""

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_LARGE_INGEST_CONCURRENCY",
    "DEFAULT_LARGE_MESSAGE_BYTES",
    "DEFAULT_SMTP_PORT",
]

DEFAULT_HTTP_PORT = 8725  # 8025 is Mailpit's
DEFAULT_SMTP_PORT = 2525
DEFAULT_DOMAIN = "mam.localhost"
DEFAULT_LARGE_MESSAGE_BYTES = 8 * 1024 * 1024
DEFAULT_LARGE_INGEST_CONCURRENCY = 2
