"""`mam-mcp tail [--inbox ID] [--event TYPE]`: print inbox events as JSON lines (one frame a line, for jq).

Status goes to stderr; stdout carries only events, flushed line by line so `| jq` sees each at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from mam_mcp.config import Settings

if TYPE_CHECKING:
    import anyio

    from mam_mcp.client import MamClient

__all__ = ["EVENT_TYPES", "add_arguments", "add_event_arguments", "run", "run_with_client", "tail_events"]

EVENT_TYPES = ("message.received", "message.sent", "message.bounced")


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    """--inbox / --event, shared with `listen`."""
    parser.add_argument(
        "--inbox",
        dest="inbox_ids",
        action="append",
        metavar="ID",
        default=None,
        help="only events of this inbox (repeatable, up to 10; default: every inbox the key sees)",
    )
    parser.add_argument(
        "--event",
        dest="event_types",
        action="append",
        choices=EVENT_TYPES,
        default=None,
        help="only this event type (repeatable; default: all)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_event_arguments(parser)


async def tail_events(
    client: MamClient,
    *,
    inbox_ids: Sequence[str] = (),
    event_types: Sequence[str] = EVENT_TYPES,
    local_filters: bool = False,
    out: TextIO = sys.stdout,
    status: TextIO = sys.stderr,
    max_events: int | None = None,
    ready: anyio.Event | None = None,
) -> int:
    """Write each event's frame to `out` as a JSON line until cancelled or `max_events`; returns the count."""
    from mam_mcp.client.event_stream import open_event_stream

    count = 0
    async with open_event_stream(
        client, inbox_ids=inbox_ids, event_types=event_types, local_filters=local_filters
    ) as events:
        await events.ready.wait()
        print(
            f"listening for {', '.join(event_types)} via {events.transport} (Ctrl-C to stop)",
            file=status,
            flush=True,
        )
        if ready is not None:
            ready.set()
        async for event in events:
            out.write(json.dumps(event.frame(), ensure_ascii=False, separators=(",", ":")) + "\n")
            out.flush()
            count += 1
            if max_events is not None and count >= max_events:
                break
    return count


def run_with_client(command: str, settings: Settings, work: Callable[[MamClient], Awaitable[object]]) -> int:
    """Run `work` with a client of the configured backend; an API error is one line on stderr, exit 1."""
    import anyio

    from mam_mcp.backends import connect_backend
    from mam_mcp.client.errors import MamError

    async def main() -> None:
        client = await connect_backend(settings)
        async with client:
            await work(client)

    try:
        anyio.run(main)
    except MamError as error:
        print(f"mam-mcp {command}: {error.to_text()}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return run_with_client(
        "tail",
        settings,
        lambda client: tail_events(
            client,
            inbox_ids=args.inbox_ids or (),
            event_types=tuple(args.event_types or EVENT_TYPES),
            local_filters=settings.mode == "local",
        ),
    )
