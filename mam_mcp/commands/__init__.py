"""What the command modules share: argument types that refuse bad values with a sentence, and the
unwrapping of a failure (task groups wrap errors in exception groups) into what a person reads."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

__all__ = ["bounded_number", "closed_stdout", "error_leaves", "port_number"]


def port_number(text: str) -> int:
    """argparse type: a TCP port (0 = any free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), not {text[:40]!r}")
    return port


def bounded_number(low: float, high: float, *, integer: bool = False) -> Callable[[str], float]:
    """argparse type: a number in [low, high]."""

    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # NaN fails too
            kind = "a whole number" if integer else "a number"
            span = f"of at least {low:g}" if high == float("inf") else f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"must be {kind} {span}, not {text[:40]!r}")
        return value

    return parse


def error_leaves(error: BaseException) -> Iterator[BaseException]:
    """The errors inside `error`'s exception groups (or `error` itself), depth first."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from error_leaves(inner)
    else:
        yield error


def closed_stdout(error: BaseException) -> bool:
    """True when `error` is (or wraps) the reader of stdout going away, e.g. `mam-mcp demo | head -1`."""
    return any(isinstance(leaf, BrokenPipeError) for leaf in error_leaves(error))
