"""`mam-mcp console`: open the local web console (what the agent's inboxes hold and send, live; drafts
to approve) in the person's browser.

Starts the local daemon if needed, asks it for a one-time sign-in link with the data dir's tenant
key (the key stays in this process: the browser gets a link that works once, for five minutes, and
trades it for a session cookie), and opens the link, or prints it with `--no-browser`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from mam_mcp.config import Settings

__all__ = ["add_arguments", "console_link", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="print the one-time sign-in link instead of opening a browser",
    )


async def console_link(settings: Settings) -> tuple[str, str]:
    """(console URL, one-time sign-in link) of this data dir's daemon, started if it is not running."""
    import httpx2

    from mam_mcp.local.console import CONSOLE_PATH
    from mam_mcp.local.daemon.launcher import ensure_daemon

    handle = await ensure_daemon(settings.local_config())
    async with httpx2.AsyncClient(base_url=handle.base_url, timeout=10, trust_env=False) as http:
        response = await http.post(f"{CONSOLE_PATH}/api/login-token", headers={"X-API-Key": handle.api_key})
    if response.status_code != 201:
        raise RuntimeError(f"the local backend refused a sign-in link (HTTP {response.status_code})")
    return f"{handle.base_url}{CONSOLE_PATH}/", handle.base_url + str(response.json()["path"])


def run(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    import anyio

    out = out or sys.stdout
    if settings.mode != "local":
        print("note: the console shows the embedded local backend; your API key is not used.", file=sys.stderr)
    try:
        url, link = anyio.run(console_link, settings)
    except Exception as error:  # noqa: BLE001 - a sentence, not a traceback
        print(f"mam-mcp console: {error}", file=sys.stderr)
        print("Run `mam-mcp doctor` for a diagnosis; the backend log is daemon.log in the data dir.", file=sys.stderr)
        return 1
    if not args.no_browser:
        import webbrowser

        if webbrowser.open(link):
            print(f"Opened the console in your browser: {url}", file=out)
            print("(Run `mam-mcp console` again for a new session; each sign-in link works once.)", file=out)
            return 0
        print("No browser could be opened here.", file=out)
    print(f"Console: {url}", file=out)
    print(f"Sign in with this link (it works once, within 5 minutes):\n{link}", file=out)
    return 0
