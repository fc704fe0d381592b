"""Serve the MCP server over stdio, and stop promptly on Ctrl-C, SIGTERM or the end of input.

The SDK reads stdin in an AnyIO worker thread, and cancellation waits for that thread: a read
blocked on a terminal (or on a host that keeps the pipe open) made Ctrl-C and SIGTERM do nothing
until the next line came. Here a daemon thread reads the raw descriptor instead, so a stop never
waits on it and the process can exit while that read is still blocked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["StdinLines", "serve_stdio"]

_READ_CHUNK = 65536
_CLOSE_SECONDS = 5.0  # for closing the API client once a stop was requested


class StdinLines:
    """The lines of a file descriptor, for `async for` (what the SDK's stdio transport iterates)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._receive: MemoryObjectReceiveStream[str] | None = None

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        if self._receive is None:
            send, self._receive = anyio.create_memory_object_stream[str](16)
            loop = asyncio.get_running_loop()
            threading.Thread(target=_pump, args=(self._fd, send, loop), name="mam-stdin", daemon=True).start()
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


def _pump(fd: int, send: MemoryObjectSendStream[str], loop: asyncio.AbstractEventLoop) -> None:
    """Read `fd` until EOF and hand each line to the loop (blocking while the consumer is behind)."""

    def deliver(line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        asyncio.run_coroutine_threadsafe(send.send(text), loop).result()

    pending = b""
    try:
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except OSError:  # e.g. EIO when the terminal goes away: treat as the end of input
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                deliver(line + b"\n")
        if pending:
            deliver(pending)
        asyncio.run_coroutine_threadsafe(send.aclose(), loop).result()
    except (RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the server stopped first (its loop is closed or it stopped reading): nothing to hand over


async def serve_stdio(server: Any) -> int:
    """Run `server` (an MCPServer) on stdin/stdout until the input ends or SIGINT/SIGTERM arrives.

    Returns 0 at the end of input, 128 + the signal number when a signal stopped it (the shell's
    convention: 130 for Ctrl-C, 143 for SIGTERM).
    """
    from mcp.server.stdio import stdio_server

    stopped_by: list[int] = []
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signal, tasks.cancel_scope, stopped_by)
            async with stdio_server(stdin=StdinLines(0)) as (read, write):  # type: ignore[arg-type]
                # MCPServer.run_stdio_async is these two lines around the SDK's own stdin reader.
                lowlevel = server._lowlevel_server
                await lowlevel.run(read, write, lowlevel.create_initialization_options())
            tasks.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
            await server.runtime.aclose()
    return 128 + stopped_by[0] if stopped_by else 0


async def _stop_on_signal(scope: anyio.CancelScope, stopped_by: list[int]) -> None:
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                stopped_by.append(int(signum))
                scope.cancel()
                return
    except NotImplementedError:  # Windows: Ctrl-C still raises KeyboardInterrupt
        return
