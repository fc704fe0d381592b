"""The catalogue of our tools: which toolsets exist, where they live, and the selection among them.

Selection (`--toolsets`, `all`, `--tools`, `--exclude-tools`, `--read-only`) happens here,
identically for every transport. Toolset modules are imported only when the server is built, and
local mode never imports the hosted-only ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence

from mam_mcp.toolkit.toolsets import Toolset, ToolSpec

__all__ = [
    "HOSTED_ONLY_TOOLSETS",
    "TOOLSET_MODULES",
    "SelectionError",
    "describe_unknown",
    "load_toolsets",
    "select_tools",
]

# Toolset name -> modules; imported only when the server is built. The first module defines
# `toolset`; later ones add tools to it (e.g. wait_for_email lives in its own module).
TOOLSET_MODULES: dict[str, tuple[str, ...]] = {
    "email": ("mam_mcp.tools.email", "mam_mcp.tools.wait"),
    "drafts": ("mam_mcp.tools.drafts",),
    "inbox_admin": ("mam_mcp.tools.inbox_admin",),
    "lists": ("mam_mcp.tools.lists",),
    "domains": ("mam_mcp.tools.domains",),
    "workspaces": ("mam_mcp.tools.workspaces",),
    "webhooks": ("mam_mcp.tools.webhooks",),
    "testing": ("mam_mcp.tools.testing",),
    "linkedin": ("mam_mcp.tools.linkedin.intent",),
    "linkedin_signals": ("mam_mcp.tools.linkedin.signals",),
    "linkedin_posts": ("mam_mcp.tools.linkedin.posts",),
    "linkedin_sessions": ("mam_mcp.tools.linkedin.sessions",),
}
# Toolsets that need the hosted API. Known here so local mode (the default) need not import them:
# their models cost ~50 ms of cold start. tests/tools/test_catalog.py checks this matches `hosted_only`.
HOSTED_ONLY_TOOLSETS = frozenset({"linkedin", "linkedin_signals", "linkedin_posts", "linkedin_sessions"})
_ECHO_CHARS = 60  # longer names are cut when echoed back in an error
_HOSTED_ONLY_NOTE = (
    "need the hosted MyAgentMail API, and this server runs on the local backend: not registered. "
    "To use them, set MYAGENTMAIL_API_KEY or run `mam-mcp login`"
)


class SelectionError(ValueError):
    """An unknown toolset or tool name in the selection."""


def load_toolsets(names: Iterable[str] | None = None) -> list[Toolset]:
    """Import toolset modules (all, or the named ones) and return their Toolset objects."""
    wanted = list(TOOLSET_MODULES) if names is None else list(names)
    result = []
    for name in wanted:
        first, *more = TOOLSET_MODULES[name]
        module = importlib.import_module(first)
        for extra in more:
            importlib.import_module(extra)
        result.append(module.toolset)
    return result


def describe_unknown(name: str, known: Sequence[str]) -> str:
    """A name nobody knows, shortened for echoing back, with the closest known names."""
    shown = repr(name if len(name) <= _ECHO_CHARS else name[:_ECHO_CHARS] + "...")
    import difflib  # for a name that is not a tool's: never on a normal start

    close = difflib.get_close_matches(name[:_ECHO_CHARS], known, n=3, cutoff=0.6)
    return shown + (f" (did you mean {' or '.join(close)}?)" if close else "")


def select_tools(
    *,
    mode: str,
    toolsets: Sequence[str] | None = None,
    tools: Sequence[str] | None = None,
    exclude_tools: Sequence[str] = (),
    read_only: bool = False,
) -> tuple[list[ToolSpec], list[str]]:
    """Pick the tools to register. Returns (specs, notes) — notes say what was left out and why."""
    notes: list[str] = []
    unknown_sets = [n for n in (toolsets or ()) if n != "all" and n not in TOOLSET_MODULES]
    if unknown_sets:  # before any import: the names are known without loading a toolset
        raise SelectionError(
            "unknown toolset(s): " + ", ".join(describe_unknown(n, list(TOOLSET_MODULES)) for n in unknown_sets[:5])
            + f"; known: all, {', '.join(TOOLSET_MODULES)}"
        )
    local_names = [n for n in TOOLSET_MODULES if n not in HOSTED_ONLY_TOOLSETS]
    all_sets = load_toolsets(local_names if mode != "hosted" else None)
    known_tools = {spec.name for ts in all_sets for spec in ts.specs}
    if mode != "hosted" and any(n not in known_tools for n in [*(tools or ()), *exclude_tools]):
        all_sets = load_toolsets()  # a hosted-only tool was named: load it to validate it and say why it is off
    by_set = {ts.name: ts for ts in all_sets}
    by_tool = {spec.name: spec for ts in all_sets for spec in ts.specs}

    unknown_tools = [n for n in [*(tools or ()), *exclude_tools] if n not in by_tool]
    if unknown_tools:
        everything = [spec.name for ts in load_toolsets() for spec in ts.specs]
        raise SelectionError(
            "unknown tool(s): " + "; ".join(describe_unknown(n, everything) for n in unknown_tools[:5])
            + ". Run `mam-mcp tools` for the list"
        )

    if tools:
        chosen = [by_tool[n] for n in dict.fromkeys(tools)]
    else:
        servable = [n for n in by_set if mode == "hosted" or n not in HOSTED_ONLY_TOOLSETS]
        if not toolsets:
            names = [n for n in servable if by_set[n].default]  # local mode: the local defaults, no warning
        elif "all" in toolsets:
            names = servable
        else:
            names = list(dict.fromkeys(toolsets))
        if mode != "hosted":
            asked = [n for n in names if n in HOSTED_ONLY_TOOLSETS]  # named on purpose by a person
            if asked:
                notes.append(f"toolset(s) {', '.join(asked)} {_HOSTED_ONLY_NOTE}")
            names = [n for n in names if n in by_set]
        chosen = [spec for n in names for spec in by_set[n].specs]

    excluded = set(exclude_tools)
    chosen = [s for s in chosen if s.name not in excluded]
    if mode != "hosted" and any(s.hosted_only for s in chosen):  # named with --tools
        dropped = [s.name for s in chosen if s.hosted_only]
        notes.append(f"tool(s) {', '.join(dropped)} {_HOSTED_ONLY_NOTE}")
        chosen = [s for s in chosen if not s.hosted_only]
    if read_only:
        chosen = [s for s in chosen if s.read_only]
    return chosen, notes
