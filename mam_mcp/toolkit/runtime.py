"""Per-server runtime the tools share: settings, the lazily created API client, process state.

The client is created on the first tool call, not at start-up, by the factory the server was
given (by default `mam_mcp.backends.connect_backend`): in local mode that is when the backend
daemon is started if it is not running (DESIGN §5: not before the handshake).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anyio

from mam_mcp.client import MamClient
from mam_mcp.config import Settings

__all__ = ["BoundedAskTimes", "BoundedIdSet", "ClientFactory", "Runtime", "write_secret_file"]

logger = logging.getLogger("mam_mcp.runtime")

BACKGROUND_GRACE_SECONDS = 3.0  # closing the runtime waits this long for handed-off work, then cancels it

# Makes the API client for these settings; tests pass one that talks to a fake or an in-process backend.
ClientFactory = Callable[[Settings], Awaitable[MamClient]]


def write_secret_file(directory: Path, label: str, value: str) -> Path:
    """Write a once-returned secret to a new file with mode 0600 and return its path.

    Secrets never go into tool output (under stdio there is no terminal, and the
    transcript is logged); the tool result gives the path instead.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in label)[:80] or "secret"
    path = directory / f"{safe}-{secrets.token_hex(3)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return path


class BoundedIdSet:
    """A set of ids that forgets the oldest beyond `limit` (a long-lived server must not grow forever)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class BoundedAskTimes(OrderedDict[str, float]):
    """Key -> monotonic time, forgetting the oldest beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self._limit:
            self.popitem(last=False)


class Runtime:
    def __init__(self, settings: Settings, client_factory: ClientFactory) -> None:
        self.settings = settings
        self._factory = client_factory
        self._client: MamClient | None = None
        self._lock = anyio.Lock()
        # wait_for_email: messages already returned by this process are not returned again
        # (bounded: the cursor is what guarantees it across calls; this is the in-process backstop).
        self.returned_message_ids: BoundedIdSet = BoundedIdSet(10_000)
        # Send confirmations asked on the 2026-07-28 protocol (answered in a later request): when each
        # was first asked, so an answer past the timeout sends nothing. Bounded like the id set.
        self.consent_asked: BoundedAskTimes = BoundedAskTimes(1_000)
        # check_message's DKIM key lookups (dkimpy's dnsfunc contract); None means DNS. Tests set it.
        self.dkim_txt_lookup: Callable[..., bytes | str | None] | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._background: set[asyncio.Task[None]] = set()

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the runtime closes (before the client), e.g. to stop following inboxes."""
        self._closers.append(closer)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task the runtime owns, so that a tool call can answer before it ends (e.g.
        the close handshake of an event stream's socket). Closing the runtime waits for such work,
        bounded, then cancels what is left and waits once more: work inside a shielded scope (a
        socket's close, at most a few seconds by its own timeouts) may still finish after that.
        An error in it is logged, never raised into a call."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.warning("background work failed: %s", type(error).__name__)

    async def client(self) -> MamClient:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._factory(self.settings)
        return self._client

    async def reconnect(self) -> None:
        """Drop the client so the next call makes a new one (in local mode: restarts a stopped daemon)."""
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def save_secret(self, label: str, value: str) -> Path:
        return write_secret_file(self.settings.secrets_dir, label, value)

    async def aclose(self) -> None:
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=BACKGROUND_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=BACKGROUND_GRACE_SECONDS)
        closers, self._closers = self._closers, []
        for closer in closers:
            await closer()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
