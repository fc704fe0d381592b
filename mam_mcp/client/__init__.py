"""Thin async client of the MyAgentMail /v1 contract (hosted API or the embedded local backend).

    client = MamClient(base_url="https://myagentmail.com", api_key="tk_...")
    inbox = await client.inboxes.create(username="scout")
    await client.messages.send(inbox.id, to=["you@example.com"], subject="hi", plain_body="hello")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

import httpx2

from mam_mcp.client.errors import MamError
from mam_mcp.client.http import DEFAULT_TIMEOUT, HttpCore, RawResponse

if TYPE_CHECKING:
    from mam_mcp.client.email import (
        Attachments,
        Domains,
        Drafts,
        Inboxes,
        Lists,
        Messages,
        MetricsApi,
        Previews,
        Threads,
        VerifyApi,
        Webhooks,
        Workspaces,
    )

__all__ = ["MamClient", "MamError", "RawResponse"]


class MamClient:
    """One HTTP client, resource namespaces on top. The transport is injectable (tests)."""

    inboxes: Inboxes
    messages: Messages
    attachments: Attachments
    threads: Threads
    drafts: Drafts
    previews: Previews
    lists: Lists
    domains: Domains
    workspaces: Workspaces
    webhooks: Webhooks
    metrics: MetricsApi
    verify: VerifyApi

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        write_retries: int = 0,
        before_send: Callable[[httpx2.Request], Awaitable[None]] | None = None,
    ) -> None:
        # write_retries: how often a create whose answer was lost is sent again with its Idempotency-Key
        # (only for a backend that honours the key on every create: the local one). before_send: see
        # HttpCore (local mode: the daemon's port is still this user's before the key goes out).
        self.http = HttpCore(
            base_url=base_url, api_key=api_key, transport=transport, timeout=timeout,
            write_retries=write_retries, before_send=before_send,
        )  # fmt: skip
        # The namespaces and the response models they validate with are imported by the first client,
        # i.e. the first tool call, never at `serve` start-up (~9 ms).
        from mam_mcp.client import email as namespaces

        self.inboxes = namespaces.Inboxes(self.http)
        self.messages = namespaces.Messages(self.http)
        self.attachments = namespaces.Attachments(self.http)
        self.threads = namespaces.Threads(self.http)
        self.drafts = namespaces.Drafts(self.http)
        self.previews = namespaces.Previews(self.http)
        self.lists = namespaces.Lists(self.http)
        self.domains = namespaces.Domains(self.http)
        self.workspaces = namespaces.Workspaces(self.http)
        self.webhooks = namespaces.Webhooks(self.http)
        self.metrics = namespaces.MetricsApi(self.http)
        self.verify = namespaces.VerifyApi(self.http)
        self._linkedin: object | None = None

    @property
    def linkedin(self):  # type: ignore[no-untyped-def]
        """LinkedIn namespaces (hosted API only); imported on first use."""
        if self._linkedin is None:
            from mam_mcp.client.linkedin import LinkedIn

            self._linkedin = LinkedIn(self.http)
        return self._linkedin

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> MamClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
