"""A real webhook receiver for the local backend's SMTP, webhook and durability tests.

`serve_receiver()` runs a real HTTP webhook receiver: a small Starlette app under uvicorn on an
ephemeral 127.0.0.1 port, which can fail (or hang on) its first N requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.asgi_server import serve_asgi

__all__ = ["Received", "Receiver", "serve_receiver"]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers `fail_status` to the first `fail_first` POSTs (or hangs on them), then 200."""

    fail_first: int = 0
    fail_status: int = 500
    hang_on_failures: bool = False
    requests: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        async with self.changed:
            self.requests.append(Received(dict(request.headers), body))
            number = len(self.requests)
            self.changed.notify_all()
        if number <= self.fail_first:
            if self.hang_on_failures:
                await self.release.wait()  # slower than the dispatcher's timeout
            return Response(status_code=self.fail_status)
        return Response(status_code=200)

    async def wait_for(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: len(self.requests) >= count)


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = Starlette(routes=[Route("/hooks/mam", state.endpoint, methods=["POST"])])
    try:
        async with serve_asgi(app, lifespan="off") as base_url:
            state.url = f"{base_url}/hooks/mam?token=query-token"
            yield state
    finally:
        state.release.set()
