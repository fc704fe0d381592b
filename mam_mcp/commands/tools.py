"""`mam-mcp tools [--markdown]`: print the tool catalogue (the README table is generated from it)."""

from __future__ import annotations

import argparse

from mam_mcp.commands.serve import add_selection_arguments
from mam_mcp.config import Settings

__all__ = ["add_arguments", "run", "catalogue_markdown"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table of every tool")


def catalogue_markdown() -> str:
    """Every toolset and tool as a markdown table, in catalogue order."""
    from mam_mcp.tools.catalog import load_toolsets

    rows = ["| toolset | tool | what it does | hints |", "|---|---|---|---|"]
    for toolset in load_toolsets():
        label = toolset.name + (" (default)" if toolset.default else "") + (" (hosted only)" if toolset.hosted_only else "")
        for spec in toolset.specs:
            a = spec.annotations
            hints = "read-only" if a.read_only_hint else ("destructive" if a.destructive_hint else "writes")
            if not a.read_only_hint and not a.idempotent_hint:
                hints += ", not idempotent"
            rows.append(f"| {label} | `{spec.name}` | {spec.description} | {hints} |")
    return "\n".join(rows)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(catalogue_markdown())
        return 0
    import sys

    from mam_mcp.tools.catalog import SelectionError, select_tools

    try:
        specs, notes = select_tools(
            mode=settings.mode, toolsets=settings.toolsets, tools=settings.tools,
            exclude_tools=settings.exclude_tools, read_only=settings.read_only,
        )
    except SelectionError as error:
        print(f"mam-mcp: {error}", file=sys.stderr)
        return 2
    print(f"{len(specs)} tools ({settings.mode} mode):")
    for spec in specs:
        print(f"  {spec.name:32} [{spec.toolset}] {spec.title}")
    for note in notes:
        print(f"note: {note}")
    return 0
