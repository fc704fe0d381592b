"""Logging to stderr (stdout belongs to the stdio transport), with secrets redacted.

httpx2 logs full request URLs at INFO; its loggers are kept at WARNING and every record that
reaches our handler passes a redacting filter as well.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO

__all__ = ["configure_logging", "redact", "RedactingFilter"]

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # API keys by prefix: tenant, workspace, inbox, legacy inbox.
    (re.compile(r"\b(tk|wk|ak|mam)_[A-Za-z0-9_\-]{6,}"), r"\1_[REDACTED]"),
    # key=value in query strings or text: api_key, token, secret, password.
    (re.compile(r"(?i)\b(api[_-]?key|apikey|token|secret|password|passwd|pwd)=([^&\s\"']+)"), r"\1=[REDACTED]"),
    # Header-style "X-API-Key: value" / "Authorization: Bearer value".
    (re.compile(r"(?i)\b(x-api-key|authorization)([\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',}]+"), r"\1\2\3[REDACTED]"),
    # Credentials in URLs: scheme://user:pass@host (up to the netloc's last @: a password may hold a raw @).
    (re.compile(r"([a-z][a-z0-9+.\-]*://[^:/@\s]+):[^\s/]+@"), r"\1:[REDACTED]@"),
    # Webhook signing secrets as commonly formatted (token_urlsafe: '-' and '_' included).
    (re.compile(r"\b(whsec|sigsec)_[A-Za-z0-9_\-]{6,}"), r"\1_[REDACTED]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_HANDLER_NAME = "mam-mcp-stderr"


def configure_logging(level: str = "WARNING", *, stream: IO[str] | None = None) -> logging.Handler:
    """Install (once) our stderr handler with the redacting filter on the root logger."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    elif stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.WARNING)
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
