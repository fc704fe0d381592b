"""`mam-mcp serve`: run the MCP server over stdio (what MCP hosts launch)."""

from __future__ import annotations

import argparse

from mam_mcp.config import Settings

__all__ = ["add_arguments", "run"]


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Tool selection flags, shared by `serve` and `tools`."""
    parser.add_argument("--toolsets", help="comma-separated toolsets, or 'all' (default: email,drafts,linkedin)")
    parser.add_argument("--tools", help="comma-separated exact tool names (overrides --toolsets)")
    parser.add_argument("--exclude-tools", dest="exclude_tools", help="comma-separated tool names to drop")
    parser.add_argument("--read-only", dest="read_only", action="store_true", help="only tools that change nothing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    parser.add_argument("--transport", choices=["stdio"], default="stdio", help="MCP transport (default: stdio)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    import anyio

    from mam_mcp.server import build_server
    from mam_mcp.tools._catalog import SelectionError

    try:
        server = build_server(settings)
    except SelectionError as error:
        print(f"mam-mcp: {error}", file=sys.stderr)
        return 2

    async def serve() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await server.runtime.aclose()  # type: ignore[attr-defined]

    anyio.run(serve)
    return 0
