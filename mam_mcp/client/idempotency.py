"""Idempotency keys of the client: one per logical request, the same across its retries.

Inside a tool call (`tool_call()`, opened by the server around each call) the key of the n-th
write is derived from the call's own random id, n, and the request itself (method, path, body):
when the server runs the call again (the local daemon had stopped and was restarted), the same
writes carry the same keys, so the backend answers them from its record instead of creating
again; a write that differs the second time gets a key of its own, never another request's
answer. Outside a tool call (CLI commands) each request gets a random key, which HttpCore
reuses for its own retry of that request.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCall", "request_key", "tool_call"]


@dataclass(slots=True)
class ToolCall:
    """One tool call: its random id and how many writes it has made so far in this run."""

    call_id: str
    writes: int = 0

    def restart(self) -> None:
        """The call runs again from the start: its writes get the keys of the first run."""
        self.writes = 0


_CURRENT: ContextVar[ToolCall | None] = ContextVar("mam_mcp_tool_call", default=None)


@contextmanager
def tool_call() -> Iterator[ToolCall]:
    """Scope one tool call; the writes made inside share its idempotency keys (see module doc)."""
    call = ToolCall(uuid.uuid4().hex)
    token = _CURRENT.set(call)
    try:
        yield call
    finally:
        _CURRENT.reset(token)


def request_key(method: str, path: str, body: Any) -> str:
    """The Idempotency-Key of one write request (see module doc)."""
    call = _CURRENT.get()
    if call is None:
        return uuid.uuid4().hex
    index = call.writes
    call.writes += 1
    digest = hashlib.sha256()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    for part in (call.call_id, str(index), method.upper(), path, canonical):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:40]
