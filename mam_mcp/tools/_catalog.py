"""The tool catalogue: toolsets, tool specs, annotation presets, and selection.

A toolset module declares `toolset = Toolset(...)` and decorates its tool functions with
`@toolset.tool(...)`. Tool functions take the `Runtime` first (bound at server build time),
then their typed arguments, and return a `CallToolResult` built with `tools._results`.
Selection (`--toolsets`, `all`, `--tools`, `--exclude-tools`, `--read-only`) happens here,
identically for every transport.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_types import ToolAnnotations

__all__ = [
    "READ",
    "WRITE",
    "UPDATE",
    "DELETE",
    "SEND",
    "Toolset",
    "ToolSpec",
    "TOOLSET_MODULES",
    "load_toolsets",
    "published_annotations",
    "select_tools",
    "SelectionError",
    "describe_unknown",
]

# Annotation presets: every tool sets all four hints explicitly (hosts act on them).
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
# Creates something new; repeating it creates another.
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
# Changes state in place; repeating it is harmless.
UPDATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
# Sends email or spends quota: cannot be taken back; hosts ask the human first.
SEND = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)

# MCP's default for each hint. A published hint equal to its default tells a host nothing (it cost
# 12 % of tools/list), and destructive/idempotent mean nothing on a read-only tool (the spec says so):
# those are left out of tools/list. `destructiveHint: true` stays on tools that have it, although it
# is the default: a host that shows hints as given must still see it on sends and deletes.
_HINT_DEFAULTS = {"read_only_hint": False, "destructive_hint": True, "idempotent_hint": False, "open_world_hint": True}


def published_annotations(annotations: ToolAnnotations) -> ToolAnnotations:
    """The hints as they go into tools/list: only those that carry information."""
    values: dict[str, bool] = {}
    for name, default in _HINT_DEFAULTS.items():
        value = getattr(annotations, name)
        if value is None or (annotations.read_only_hint and name in ("destructive_hint", "idempotent_hint")):
            continue
        if value != default or (name == "destructive_hint" and value):
            values[name] = value
    return ToolAnnotations(**values)


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
    "linkedin": ("mam_mcp.tools.linkedin",),
    "linkedin_signals": ("mam_mcp.tools.linkedin_signals",),
    "linkedin_posts": ("mam_mcp.tools.linkedin_posts",),
    "linkedin_sessions": ("mam_mcp.tools.linkedin_sessions",),
}
# Toolsets that need the hosted API. Known here so local mode (the default) need not import them:
# their models cost ~50 ms of cold start. tests/test_catalog.py checks this matches `hosted_only`.
HOSTED_ONLY_TOOLSETS = frozenset({"linkedin", "linkedin_signals", "linkedin_posts", "linkedin_sessions"})
_ECHO_CHARS = 60  # longer names are cut when echoed back in an error
_HOSTED_ONLY_NOTE = (
    "need the hosted MyAgentMail API, and this server runs on the local backend: not registered. "
    "To use them, set MYAGENTMAIL_API_KEY or run `mam-mcp login`"
)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    title: str
    description: str
    toolset: str
    fn: Callable[..., Any]
    annotations: ToolAnnotations
    output_schema: dict[str, Any] | None = None
    hosted_only: bool = False

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)


@dataclass
class Toolset:
    name: str
    description: str
    default: bool = False
    hosted_only: bool = False  # e.g. LinkedIn: the local backend has no LinkedIn
    specs: list[ToolSpec] = field(default_factory=list)

    def tool(
        self,
        *,
        title: str,
        annotations: ToolAnnotations,
        output_schema: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a tool; its docstring is the model-facing description."""

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            doc = " ".join((fn.__doc__ or "").split())
            if not doc:
                raise ValueError(f"tool {fn.__name__} needs a docstring (its description)")
            self.specs.append(
                ToolSpec(
                    name=name or fn.__name__,
                    title=title,
                    description=doc,
                    toolset=self.name,
                    fn=fn,
                    annotations=annotations,
                    output_schema=output_schema,
                    hosted_only=self.hosted_only,
                )
            )
            return fn

        return decorator


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
