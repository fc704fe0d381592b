"""`mam-mcp listen --forward URL [--inbox ID] [--event TYPE]`: events POSTed to a local URL as webhooks.

The "no ngrok" loop: a web app on a laptop gets the reference's webhook payload (not the
WebSocket frame), signed exactly like a webhook (`x-mam-signature`: hex HMAC-SHA256 of the raw
body), from events this command receives over the WebSocket. The signing secret is generated on the
first run, written to a new 0600 file (its path is printed) and shown once on the terminal;
later runs reuse it, so the receiving app keeps its configuration. It is never logged.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mam_mcp.loopback import is_loopback_url
from mam_mcp.commands.tail import EVENT_TYPES, add_event_arguments, run_with_client
from mam_mcp.config import Settings
from mam_mcp.signatures import SIGNATURE_HEADER, sign_body

if TYPE_CHECKING:
    import anyio

    from mam_mcp.client import MamClient
    from mam_mcp.client.event_models import InboxEvent

__all__ = ["add_arguments", "forward_events", "forwarding_secret", "run"]

FORWARD_TIMEOUT = 10.0  # as the reference's webhook delivery
LISTEN_SECRET_FILE = "listen-signing-secret"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--forward",
        required=True,
        metavar="URL",
        help="where to POST each event, e.g. http://localhost:3000/webhooks/mam",
    )
    add_event_arguments(parser)


def forwarding_secret(settings: Settings, *, status: TextIO) -> tuple[str, Path]:
    """The signing secret: the one saved by an earlier run (the receiving app keeps working), else a
    new one in a new 0600 file. The secret itself is shown only on a terminal, and only when new."""
    import os

    from mam_mcp.local.daemon.data_dir import write_secret_file

    path = settings.secrets_dir / LISTEN_SECRET_FILE
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
    if secret:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            path.chmod(0o600)  # loosened by someone: a signing secret is for this user only
        print(f"signing with the secret saved in {path} by an earlier run (delete it for a new one)", file=status)
        status.flush()
        return secret, path
    path.unlink(missing_ok=True)  # an empty leftover
    settings.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = "whsec_" + secrets.token_hex(24)
    write_secret_file(path, secret + "\n")
    print(f"signing secret saved to {path} (mode 0600); later runs reuse it", file=status)
    if status.isatty():
        print(f"signing secret (shown once): {secret}", file=status)
    else:
        print("the secret is not shown: stderr is not a terminal; read it from that file", file=status)
    status.flush()
    return secret, path


async def _payload(client: MamClient, event: InboxEvent) -> dict[str, Any]:
    """The webhook payload; frames do not say whether there are attachments, so ask (without marking read)."""
    message = event.message
    has_attachments = message.has_attachments if message is not None else None
    if has_attachments is None and message is not None and message.inbox_id and message.message_id:
        from mam_mcp.client.errors import MamError

        try:
            has_attachments = bool(await client.attachments.list(message.inbox_id, message.message_id))
        except MamError:
            has_attachments = False
    return event.webhook_payload(has_attachments=bool(has_attachments))


async def forward_events(
    client: MamClient,
    *,
    url: str,
    secret: str,
    inbox_ids: Sequence[str] = (),
    event_types: Sequence[str] = EVENT_TYPES,
    local_filters: bool = False,
    status: TextIO = sys.stderr,
    max_events: int | None = None,
    ready: anyio.Event | None = None,
) -> int:
    """POST each event to `url`, signed; a status line per delivery. Returns how many got a 2xx."""
    import httpx2

    from mam_mcp.client.event_stream import open_event_stream

    delivered = seen = 0
    async with (
        # A proxy from HTTP_PROXY cannot reach this machine's loopback: forward there directly.
        httpx2.AsyncClient(
            timeout=FORWARD_TIMEOUT, follow_redirects=False, trust_env=not is_loopback_url(url)
        ) as http,
        open_event_stream(
            client, inbox_ids=inbox_ids, event_types=event_types, local_filters=local_filters
        ) as events,
    ):
        await events.ready.wait()
        print(
            f"forwarding {', '.join(event_types)} to {url} via {events.transport} (Ctrl-C to stop)",
            file=status,
            flush=True,
        )
        if ready is not None:
            ready.set()
        async for event in events:
            body = json.dumps(await _payload(client, event), separators=(",", ":")).encode()
            headers = {"content-type": "application/json", SIGNATURE_HEADER: sign_body(secret, body)}
            try:
                response = await http.post(url, content=body, headers=headers)
                outcome = f"HTTP {response.status_code}"
                delivered += response.is_success
            except httpx2.HTTPError as error:
                outcome = f"not delivered ({type(error).__name__})"
            message_id = event.message.message_id if event.message else "-"
            print(f"{event.event_type} {message_id} -> {outcome}", file=status, flush=True)
            seen += 1
            if max_events is not None and seen >= max_events:
                break
    return delivered


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.forward.startswith(("http://", "https://")):
        print("mam-mcp listen: --forward must be an http:// or https:// URL", file=sys.stderr)
        return 2
    secret, _ = forwarding_secret(settings, status=sys.stderr)
    return run_with_client(
        "listen",
        settings,
        lambda client: forward_events(
            client,
            url=args.forward,
            secret=secret,
            inbox_ids=args.inbox_ids or (),
            event_types=tuple(args.event_types or EVENT_TYPES),
            local_filters=settings.mode == "local",
        ),
    )
