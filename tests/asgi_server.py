"""Run an ASGI app under real uvicorn on an ephemeral 127.0.0.1 port, for tests that need real TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn

__all__ = ["serve_asgi"]


@asynccontextmanager
async def serve_asgi(app: Any, *, make_config: Any = uvicorn.Config, **options: Any) -> AsyncIterator[str]:
    """Yields `http://127.0.0.1:PORT` once uvicorn listens; `options` go to `make_config` (uvicorn.Config).

    The server runs as a plain asyncio task, not in a task group, so this also works inside
    pytest-asyncio async-generator fixtures (set-up and tear-down run in different tasks).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = make_config(app, **{"log_level": "warning", "log_config": None, "timeout_graceful_shutdown": 1, **options})
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve([sock]))
    try:
        with anyio.fail_after(10):
            while not server.started:  # uvicorn has no start-up event; bounded by fail_after
                if serving.done():
                    serving.result()  # it failed to start: raise why
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        sock.close()
