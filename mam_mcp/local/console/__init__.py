"""The local web console: what the agent's inboxes hold and send, live, and drafts for a person to
approve. Served by the daemon under CONSOLE_PATH; opened with `mam-mcp console`."""

from mam_mcp.local.console.app import CONSOLE_PATH, Console

__all__ = ["CONSOLE_PATH", "Console"]
