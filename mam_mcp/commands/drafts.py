"""`mam-mcp drafts`: a person reviews the drafts an agent left, and approves or discards them.

This is how mail held for approval leaves when the host cannot ask (confirm_sends=all without
elicitation): the person reads exactly what would be sent, answers yes at a terminal (approval has
no --yes, and refuses when stdin is not a terminal), and only that message goes out (in local mode
the send is bound to the preview's hash). The outbound policy applies here too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

from mam_mcp.client import MamClient
from mam_mcp.config import Settings

__all__ = ["add_arguments", "approve_draft", "find_draft_inbox", "run"]

Confirm = Callable[[str], Awaitable[bool]]
MAX_INBOXES_SEARCHED = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="drafts_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="drafts waiting in every inbox (or one)")
    listing.add_argument("--inbox", dest="inbox_id", help="only this inbox")
    for name, help_text in (
        ("show", "print a draft exactly as it would be sent"),
        ("approve", "show a draft, ask, and send exactly that message"),
        ("discard", "delete a draft without sending it"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("draft_id", metavar="DRAFT_ID")
        action.add_argument("--inbox", dest="inbox_id", help="the draft's inbox (found by searching when omitted)")
        if name == "discard":
            action.add_argument("--yes", action="store_true", help="do not ask (for scripts)")


async def find_draft_inbox(client: MamClient, draft_id: str) -> str | None:
    """The inbox holding `draft_id`, searching the inboxes this key can see (bounded)."""
    from mam_mcp.client.errors import NotFound

    for inbox in (await client.inboxes.list()).inboxes[:MAX_INBOXES_SEARCHED]:
        try:
            await client.drafts.get(inbox.id, draft_id)
        except NotFound:
            continue
        return inbox.id
    return None


async def approve_draft(
    client: MamClient, settings: Settings, inbox_id: str, draft_id: str, *, confirm: Confirm, out: TextIO
) -> int:
    """Show the draft as it would be sent, ask, send exactly that. 0 sent, 1 declined or refused."""
    from mam_mcp.client.errors import MamError
    from mam_mcp.tools.consent import confirmation_text
    from mam_mcp.tools.outbound import SendRequest, check_policy

    request = SendRequest("draft", inbox_id, draft_id=draft_id)
    preview = await request.preview(client, settings)
    await check_policy(client, settings.outbound, request, preview)
    print(confirmation_text(preview, f"Draft {draft_id}, exactly as it would be sent:"), file=out)
    if not await confirm("Send it? [y/N] "):
        print("Not sent; the draft is unchanged.", file=out)
        return 1
    try:
        result = await request.send(
            client, verified=True, expect_hash=preview.content_hash if settings.mode == "local" else None
        )
    except MamError as error:
        print(f"Not sent: {error.to_text()}", file=out)
        return 1
    from mam_mcp.toolkit.send_status import STATUS_HINTS, send_outcome_text

    if (result.status or "sent") == "captured":
        print(f"Sent draft {draft_id} as message {result.id}: captured locally. {STATUS_HINTS['captured']}", file=out)
    else:
        print(send_outcome_text(f"Sent draft {draft_id}", result), file=out)
    return 0


async def _list(client: MamClient, inbox_id: str | None, out: TextIO) -> int:
    inboxes = [inbox_id] if inbox_id else [i.id for i in (await client.inboxes.list()).inboxes[:MAX_INBOXES_SEARCHED]]
    count = 0
    for inbox in inboxes:
        for draft in (await client.drafts.list(inbox)).drafts:
            count += 1
            to = ", ".join(draft.to) or "(reply: the thread's sender)"
            print(f"{draft.id}  inbox {inbox}  to {to}  subject: {draft.subject or '(none)'}", file=out)
    if not count:
        print("No drafts.", file=out)
    return 0


def _terminal_confirm(assume_yes: bool) -> Confirm:
    async def confirm(question: str) -> bool:
        if assume_yes:
            return True
        if not sys.stdin.isatty():
            print("mam-mcp drafts: a person must answer this in a terminal", file=sys.stderr)
            return False
        import anyio

        answer = await anyio.to_thread.run_sync(input, question)
        return answer.strip().lower() in ("y", "yes")

    return confirm


def run(args: argparse.Namespace, settings: Settings) -> int:
    from mam_mcp.commands.tail import run_with_client

    outcome = [0]

    async def work(client: MamClient) -> None:
        if args.drafts_action == "list":
            outcome[0] = await _list(client, args.inbox_id, sys.stdout)
            return
        inbox_id = args.inbox_id or await find_draft_inbox(client, args.draft_id)
        if inbox_id is None:
            print(f"mam-mcp drafts: no draft {args.draft_id[:80]} in any inbox this key can see", file=sys.stderr)
            outcome[0] = 1
            return
        if args.drafts_action == "approve":
            # No --yes: approval is a person's answer at a terminal, not something a script (or an
            # agent with a shell) can pass.
            confirm = _terminal_confirm(False)
            outcome[0] = await approve_draft(client, settings, inbox_id, args.draft_id, confirm=confirm, out=sys.stdout)
        elif args.drafts_action == "show":
            from mam_mcp.tools.consent import confirmation_text
            from mam_mcp.tools.outbound import SendRequest

            preview = await SendRequest("draft", inbox_id, draft_id=args.draft_id).preview(client, settings)
            print(confirmation_text(preview, f"Draft {args.draft_id}, exactly as it would be sent:"))
        else:
            if not await _terminal_confirm(args.yes)(f"Discard draft {args.draft_id}? [y/N] "):
                outcome[0] = 1
                return
            await client.drafts.delete(inbox_id, args.draft_id)
            print(f"Discarded draft {args.draft_id}; nothing was sent.")

    failed = run_with_client("drafts", settings, work)
    return failed or outcome[0]
