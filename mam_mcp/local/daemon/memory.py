"""The daemon process's memory allocator: freed large blocks go back to the system at once.

glibc serves blocks over its mmap threshold with their own mappings, unmapped on free; but it
raises that threshold to the size of each such block freed (up to 32 MB), after which large
blocks come from the heap and stay in the process after use. Receiving and parsing one 24 MB
mail frees blocks of a few MB and the next ones then stay: the daemon's peak grew from 2x to 3x
the message (bench/README.md, "Large mail"). A fixed threshold keeps the first behaviour.
Ordinary mail allocates nothing that large, so it costs nothing there.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["MMAP_THRESHOLD_BYTES", "return_large_blocks_on_free"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def return_large_blocks_on_free() -> bool:
    """Fix glibc's mmap threshold (Linux with glibc only); True when it was set."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # only here: not on any start-up path but the daemon's

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt in this libc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))  # musl's stub answers 0
    logger.debug("malloc mmap threshold %s", "fixed at 1 MiB" if done else "left as it was")
    return done
