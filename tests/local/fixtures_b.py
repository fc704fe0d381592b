"""Test helpers of the local backend's SMTP / events / webhooks tests (part B).

`serve_receiver()` runs a real HTTP webhook receiver: a small Starlette app under uvicorn on an
ephemeral 127.0.0.1 port, which can fail (or hang on) its first N requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        with anyio.fail_after(10):
            while not server.started:  # bounded by the fail_after above
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        state.url = f"http://127.0.0.1:{port}/hooks/mam?token=query-token"
        yield state
    finally:
        state.release.set()
        server.should_exit = True
        await serving
