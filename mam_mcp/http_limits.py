"""How our two HTTP servers (the local daemon, `serve --transport http|sse`) run uvicorn.

- `bind_listener`: a TCP listening socket created as IPPROTO_TCP, so asyncio turns TCP_NODELAY on
  for every accepted connection (with protocol 0 it does not, and every kept-alive response
  then waits ~40 ms for the client's delayed ACK: uvicorn writes headers and body separately).
- `ReadDeadlineProtocol`: uvicorn's h11 protocol with a deadline for reading each request, from
  the connection's first byte (or its opening) to the end of the request body. A client that
  opens a connection and sends nothing, or trickles its headers or body, is disconnected when
  the deadline passes; uvicorn alone waits forever. Answering is not limited: a long tool call
  or an event stream runs as long as it needs.
- `uvicorn_config`: the two together with the idle keep-alive timeout (a connection waiting
  for its next request is closed after it).

Importing this module imports uvicorn: only servers do.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ReadDeadlineProtocol", "bind_listener", "uvicorn_config", "address_in_use"]

logger = logging.getLogger("mam_mcp.http")

_READ_TIMEOUT_ATTRIBUTE = "mam_read_timeout_seconds"  # set on the uvicorn.Config (pickled to workers with it)
_READING = (h11.IDLE, h11.SEND_BODY)  # the client's states while its request is still arriving


def bind_listener(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A bound, listening TCP socket whose accepted connections get TCP_NODELAY from asyncio."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if sys.platform != "win32":
            # Lets a restarted server bind while the old one's connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def address_in_use(error: OSError) -> bool:
    return error.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))


class ReadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol; each request must have arrived whole within the read timeout."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._read_timeout: float = getattr(config, _READ_TIMEOUT_ATTRIBUTE, 30.0)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in _READING or self.transport.get_protocol() is not self:
            self._disarm()  # the request is in (or the connection became a WebSocket): answer as long as needed

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self.conn.their_state not in _READING:
            return
        logger.info("closed a connection that did not send its request within %.0f s", self._read_timeout)
        self.transport.close()


def uvicorn_config(
    app: Any, *, read_timeout_seconds: float, idle_timeout_seconds: float, **options: Any
) -> uvicorn.Config:
    """A uvicorn.Config serving `app` with the read deadline and the idle keep-alive timeout."""
    config = uvicorn.Config(app, http=ReadDeadlineProtocol, timeout_keep_alive=idle_timeout_seconds, **options)  # type: ignore[arg-type]
    setattr(config, _READ_TIMEOUT_ATTRIBUTE, read_timeout_seconds)
    return config
