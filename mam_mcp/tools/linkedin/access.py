"""How the LinkedIn tools reach the API: the client's LinkedIn namespaces, the account to act as (the
given session, else the only connected one, else an error listing them), and progress notifications
while a synchronous search runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
from mcp.server.mcpserver import Context

from mam_mcp.client.errors import MamError, NoSessionAvailable, ValidationFailed
from mam_mcp.client.http import LONG_TIMEOUT
from mam_mcp.toolkit.runtime import Runtime

if TYPE_CHECKING:  # imported with the first LinkedIn request (MamClient.linkedin): its models cost start-up time
    from mam_mcp.client.linkedin import LinkedIn

__all__ = ["PROGRESS_INTERVAL", "linkedin_api", "resolve_session", "with_progress"]

T = TypeVar("T")
logger = logging.getLogger("mam_mcp.tools.linkedin")
PROGRESS_INTERVAL = 3.0
_DEAD_SESSION_STATUSES = {"revoked", "expired", "invalid", "disconnected", "logged_out", "error", "failed"}


async def linkedin_api(rt: Runtime) -> LinkedIn:
    """The LinkedIn namespaces of the runtime's client (typed: `MamClient.linkedin` is imported lazily)."""
    client = await rt.client()
    api: LinkedIn = client.linkedin
    return api


async def resolve_session(api: LinkedIn, session_id: str | None) -> str:
    """The session to act as: the given one, else the only connected one, else an error listing them."""
    if session_id:
        return session_id
    sessions = await api.sessions.list()
    live = [s for s in sessions if (s.status or "").lower() not in _DEAD_SESSION_STATUSES]
    if len(live) == 1:
        return str(live[0].id)
    listed = [{"id": s.id, "label": s.label, "status": s.status} for s in sessions[:20]]
    listing = "; ".join(
        f"{s['id']} ({s['label'] or 'no label'}, {s['status'] or 'status unknown'})" for s in listed
    )
    if not live:
        raise NoSessionAvailable(
            "no connected LinkedIn account" + (f" is usable: {listing}" if sessions else ""),
            hint="Ask the user to connect one in a terminal with `mam-mcp linkedin connect` "
            "(passwords never go through this chat).",
            details=listed or None,
        )
    raise ValidationFailed(
        f"session_id: {len(live)} LinkedIn accounts are connected, pass the one to act as: {listing}",
        hint="Ask the user which account should act if they have not said.",
        details=listed,
    )


async def with_progress(ctx: Context | None, label: str, work: Callable[[], Awaitable[T]]) -> T:
    """Await `work` while sending progress notifications every few seconds (a search takes 10-15 s)."""
    if ctx is None:
        return await work()
    result: list[T] = []
    failure: list[MamError] = []

    async def tick() -> None:
        started = anyio.current_time()
        for _ in range(int(LONG_TIMEOUT / PROGRESS_INTERVAL) + 2):  # bounded by the request's own timeout
            elapsed = anyio.current_time() - started
            try:
                await ctx.report_progress(
                    round(elapsed, 1), LONG_TIMEOUT, f"{label}: {elapsed:.0f}s (typically 10-15 s)"
                )
            except Exception:  # progress is best effort: a gone client must not fail the search
                logger.debug("progress notification failed", exc_info=True)
                return
            await anyio.sleep(PROGRESS_INTERVAL)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        try:
            result.append(await work())
        except MamError as error:  # re-raised below, outside the task group (no ExceptionGroup)
            failure.append(error)
        finally:
            tasks.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return result[0]
