"""`mam-mcp linkedin connect|sessions`: the human connects a LinkedIn account in the terminal.

Passwords and cookies are read with getpass (never echoed), sent once to the MyAgentMail API
and never printed, logged or passed through MCP. LinkedIn may answer a login with a challenge:
a PIN (sent by email/SMS) or an approval in the LinkedIn mobile app; one challenge accepts
either, so a PIN prompt left empty falls back to waiting for the app.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Protocol

from mam_mcp.config import Settings

if TYPE_CHECKING:
    from mam_mcp.client import MamClient
    from mam_mcp.client.errors import MamError
    from mam_mcp.client.linkedin_models import LoginResult

__all__ = ["ConsoleTerminal", "Terminal", "add_arguments", "connect_account", "list_sessions", "run"]

POLL_INTERVAL = 3.0
MAX_APPROVAL_WAIT = 300.0


class Terminal(Protocol):
    def ask(self, prompt: str) -> str: ...
    def secret(self, prompt: str) -> str: ...
    def say(self, text: str) -> None: ...


class ConsoleTerminal:
    def ask(self, prompt: str) -> str:
        return input(prompt).strip()

    def secret(self, prompt: str) -> str:
        return getpass.getpass(prompt)  # unstripped: a password may begin or end with a space

    def say(self, text: str) -> None:
        print(text, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="linkedin_action", metavar="ACTION")
    connect = actions.add_parser(
        "connect", help="connect a LinkedIn account (email + password, or --cookies)"
    )
    connect.add_argument("--label", help="a name for the account, e.g. 'Founder account'")
    connect.add_argument("--email", help="LinkedIn login email (asked if omitted)")
    connect.add_argument(
        "--cookies",
        action="store_true",
        help="import the li_at and JSESSIONID cookies of a logged-in browser instead",
    )
    actions.add_parser("sessions", help="list the connected LinkedIn accounts")


def _problem(error: MamError) -> str:
    # A login refusal comes back as a 400; its generic "fix the field" hint would mislead here.
    return f"{error.code}: {error.message}" if error.code == "VALIDATION_ERROR" else error.to_text()


def _connected(terminal: Terminal, result: LoginResult) -> int:
    terminal.say(
        f"Connected LinkedIn session {result.session_id}"
        + (f" ({result.label})" if result.label else "")
        + ". The LinkedIn tools now use it; they auto-distribute across all connected accounts."
    )
    return 0


async def _wait_for_app(
    client: MamClient,
    terminal: Terminal,
    challenge_id: str,
    label: str | None,
    *,
    poll_interval: float,
    max_wait: float,
) -> int:
    import anyio

    terminal.say('Approve the sign-in in the LinkedIn mobile app ("Yes, it\'s me"). Waiting...')
    for _ in range(max(1, int(max_wait / max(poll_interval, 0.001)))):  # bounded: at most max_wait
        result = await client.linkedin.sessions.poll(challenge_id=challenge_id, label=label)
        if result.ok:
            return _connected(terminal, result)
        if not result.pending:
            terminal.say(f"LinkedIn did not approve the sign-in: {result.error or 'rejected'}.")
            return 1
        await anyio.sleep(poll_interval)
    terminal.say("No approval arrived in time; run `mam-mcp linkedin connect` again.")
    return 1


async def connect_account(
    client: MamClient,
    terminal: Terminal,
    *,
    label: str | None = None,
    email: str | None = None,
    use_cookies: bool = False,
    poll_interval: float = POLL_INTERVAL,
    max_wait: float = MAX_APPROVAL_WAIT,
) -> int:
    """Run the connect dialogue; returns the exit status. Secrets stay in local variables only."""
    from mam_mcp.client.errors import MamError

    try:
        if use_cookies:
            terminal.say(
                "Paste the cookies of a browser logged in to linkedin.com (DevTools > Application > Cookies)."
            )
            li_at = terminal.secret("li_at: ").strip()
            jsession = terminal.secret("JSESSIONID: ").strip().strip('"')
            if not li_at or not jsession:
                terminal.say("Both cookies are needed.")
                return 2
            result = await client.linkedin.sessions.import_cookies(
                li_at=li_at, jsession_id=jsession, label=label
            )
        else:
            email = email or terminal.ask("LinkedIn email: ")
            password = terminal.secret("LinkedIn password (not shown; sent only to MyAgentMail): ")
            if not email or not password:
                terminal.say("An email and a password are needed (or use --cookies).")
                return 2
            result = await client.linkedin.sessions.login(email=email, password=password, label=label)
        if result.ok:
            return _connected(terminal, result)
        if not (result.challenge and result.challenge_id):
            terminal.say(f"LinkedIn refused: {result.error or 'unknown reason'}.")
            return 1
        if result.challenge_type == "pin":
            pin = terminal.ask(
                "LinkedIn sent a verification PIN (email or SMS). Enter it, or press Enter to "
                "approve in the LinkedIn app instead: "
            )
            if pin:
                verified = await client.linkedin.sessions.verify(
                    challenge_id=result.challenge_id, pin=pin, label=label
                )
                if verified.ok:
                    return _connected(terminal, verified)
                terminal.say(f"The PIN was not accepted: {verified.error or 'rejected'}.")
                return 1
        return await _wait_for_app(
            client, terminal, result.challenge_id, label, poll_interval=poll_interval, max_wait=max_wait
        )
    except MamError as error:
        terminal.say(_problem(error))
        return 1


async def list_sessions(client: MamClient, terminal: Terminal) -> int:
    from mam_mcp.client.errors import MamError

    try:
        sessions = await client.linkedin.sessions.list()
    except MamError as error:
        terminal.say(error.to_text())
        return 1
    if not sessions:
        terminal.say("No LinkedIn account is connected. Run `mam-mcp linkedin connect`.")
    for s in sessions:
        terminal.say(f"{s.id}  {s.label or '(no label)'}  {s.status or 'unknown'}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    action = getattr(args, "linkedin_action", None)
    if action is None:
        print("usage: mam-mcp linkedin {connect,sessions}", file=sys.stderr)
        return 2
    if settings.mode != "hosted" or settings.api_key is None:
        print(
            "mam-mcp: LinkedIn needs the hosted MyAgentMail API: run `mam-mcp login` or set MYAGENTMAIL_API_KEY "
            "(the local backend has no LinkedIn).",
            file=sys.stderr,
        )
        return 2
    import anyio

    from mam_mcp.client import MamClient

    api_key = settings.api_key.get_secret_value()

    async def main() -> int:
        async with MamClient(base_url=settings.base_url, api_key=api_key) as client:
            if action == "sessions":
                return await list_sessions(client, ConsoleTerminal())
            return await connect_account(
                client, ConsoleTerminal(), label=args.label, email=args.email, use_cookies=args.cookies
            )

    return anyio.run(main)
