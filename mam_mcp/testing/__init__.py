"""Test an app's email with pytest: a real local mail backend per test session, a fresh inbox per test.

The pytest plugin (`plugin.py`, loaded through the `pytest11` entry point) provides two fixtures:
`mam_mail_server` (session: one local backend daemon in a temp dir on free loopback ports) and
`mam_inbox` (function: a fresh inbox on it). Point the app under test at `mam_inbox.smtp_host` /
`mam_inbox.smtp_port` and send to `mam_inbox.address`; then `mam_inbox.wait_for_email(...)`,
`mam_inbox.expect_no_email(...)`, `mam_inbox.last_code()`; in async tests the same under
`await mam_inbox.aio.<name>(...)`.

server.py starts and stops the daemon; inbox.py is the `Inbox` handle and its sync and async
methods; email.py the `Email` a wait returns and the filters. Outside pytest, `MailServer.start(dir)`
is a context manager. Names are imported on first use: loading the plugin costs pytest nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mam_mcp.testing.email import Email, NoEmailError, UnexpectedEmailError
    from mam_mcp.testing.inbox import AsyncInbox, Inbox, MailServerError
    from mam_mcp.testing.server import MailServer

__all__ = [
    "AsyncInbox",
    "Email",
    "Inbox",
    "MailServer",
    "MailServerError",
    "NoEmailError",
    "UnexpectedEmailError",
]

_HOMES = {
    "Email": "mam_mcp.testing.email",
    "NoEmailError": "mam_mcp.testing.email",
    "UnexpectedEmailError": "mam_mcp.testing.email",
    "AsyncInbox": "mam_mcp.testing.inbox",
    "Inbox": "mam_mcp.testing.inbox",
    "MailServer": "mam_mcp.testing.server",
    "MailServerError": "mam_mcp.testing.inbox",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
