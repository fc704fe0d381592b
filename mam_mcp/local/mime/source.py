"""The raw source of a received message: bytes in memory, or a file for a large one.

SMTP ingress writes DATA past a size threshold into an unnamed temporary file (`SpooledMessage`)
instead of one growing buffer; parsing feeds it to the parser in chunks and the store copies it
into its blob in chunks, so a 24 MB message is never held whole in memory (issue 14, item 5).
Small mail stays plain `bytes`: every reader here takes both (`RawMessage`).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK_BYTES", "RawMessage", "SpooledMessage", "raw_chunks"]

CHUNK_BYTES = 256 * 1024  # what is read, parsed or written at a time


class SpooledMessage:
    """A message's bytes in an unnamed temporary file (gone with the process, even on a crash).

    Written once (`write`, then `seal`), then read any number of times; `close()` frees the file.
    `len()` is its size in bytes.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self._size = 0
        self._sealed = False
        self._lock = threading.Lock()  # a read is seek + read: one at a time (no os.pread on Windows)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._sealed:
            raise ValueError("the message is sealed")
        with self._lock:
            self._file.seek(self._size)
            self._file.write(data)
        self._size += len(data)

    def seal(self) -> SpooledMessage:
        """No more writes; flushed so that other threads (parse, store) read it whole."""
        self._file.flush()
        self._sealed = True
        return self

    def __len__(self) -> int:
        return self._size

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes in order, `size` at a time (each read positioned: readers may interleave)."""
        offset = 0
        while offset < self._size:
            piece = self._read_at(offset, min(size, self._size - offset))
            offset += len(piece)
            yield piece

    def head(self, size: int) -> bytes:
        """Up to the first `size` bytes."""
        return self._read_at(0, min(size, self._size)) if self._size else b""

    def _read_at(self, offset: int, size: int) -> bytes:
        with self._lock:
            self._file.seek(offset)
            piece = self._file.read(size)
        if len(piece) != size:
            raise OSError("spooled message truncated")
        return piece

    def read_all(self) -> bytes:
        """The whole message in memory: for tests and small readers only."""
        return b"".join(self.chunks())

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"SpooledMessage({self._size} bytes)"


RawMessage = bytes | SpooledMessage


def raw_chunks(raw: RawMessage, size: int = CHUNK_BYTES) -> Iterator[bytes | memoryview]:
    """A message's bytes `size` at a time, without copying an in-memory one."""
    if isinstance(raw, SpooledMessage):
        yield from raw.chunks(size)
        return
    view = memoryview(raw)
    for start in range(0, len(raw), size):
        yield view[start : start + size]

