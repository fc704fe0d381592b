"""Toolsets and tool specs: what a tool module declares, and the annotation presets it picks from.

A toolset module declares `toolset = Toolset(...)` and decorates its tool functions with
`@toolset.tool(...)`. Tool functions take the `Runtime` first (bound at server build time),
then their typed arguments, and return a `CallToolResult` built with `toolkit.results`.
Which toolsets exist, and the selection among them, is `mam_mcp.tools.catalog`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_types import ToolAnnotations

__all__ = ["READ", "WRITE", "UPDATE", "DELETE", "SEND", "Toolset", "ToolSpec", "published_annotations"]

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
