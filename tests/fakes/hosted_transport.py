"""An in-process httpx2 transport for the fake that serves HTTP and WebSockets and is fixture-safe.

It honours the client's read timeout (ASGITransport ignores timeouts), so a scripted `delay`
times a client out in-process as it would over TCP. httpx2's ASGIWebSocketTransport opens one task group for the client's lifetime, so a client
entered in an async fixture fails at teardown (pytest-asyncio runs setup and teardown in
different tasks). Here each WebSocket gets its own task group, opened by the handshake and
closed with the handshake response, both in the task that uses the socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import anyio
from httpx2 import AsyncByteStream, ReadTimeout, Request, Response
from httpx2._transports.asgi import ASGITransport
from httpx2.websockets import ASGIWebSocketTransport
from httpx2.websockets._transport import ASGIWebSocketAsyncNetworkStream

__all__ = ["FakeTransport"]


class _ClosesSocket(AsyncByteStream):
    """The (empty) body of the 101 response; closing it ends the socket's task group."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack

    async def __aiter__(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover

    async def aclose(self) -> None:
        await self._stack.aclose()


class FakeTransport(ASGIWebSocketTransport):
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> None:
        await ASGITransport.__aexit__(self, exc_type, exc_val, exc_tb)

    async def handle_async_request(self, request: Request) -> Response:
        upgrade = request.url.scheme in ("ws", "wss") or request.headers.get("upgrade") == "websocket"
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if upgrade or read_timeout is None:
            return await super().handle_async_request(request)
        with anyio.move_on_after(read_timeout):
            return await super().handle_async_request(request)
        raise ReadTimeout(f"no answer from the fake within {read_timeout} s", request=request)

    async def _handle_ws_request(self, request: Any, scope: dict[str, Any]) -> Response:
        stack = contextlib.AsyncExitStack()
        try:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            app: Any = self.app
            stream = ASGIWebSocketAsyncNetworkStream(app, scope, task_group, self._initial_receive_timeout)
            _, accept = await stack.enter_async_context(stream)
        except BaseException:
            await stack.aclose()
            raise
        lines = accept.decode("utf-8").splitlines()
        headers = [
            (name, value) for name, _, value in (line.partition(": ") for line in lines[1:] if line.strip())
        ]
        return Response(
            101, headers=headers, stream=_ClosesSocket(stack), extensions={"network_stream": stream}
        )
