"""Freed memory handed back to the system after a burst of it (a big page's links).

The C allocator (glibc's malloc) keeps what a burst freed for later use: a 10 MB
page of 600,000 links leaves about 50 MB free but held by the process, for the
rest of the crawl. ``malloc_trim`` gives its free pages back. Without glibc
(macOS, musl), nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_freed() -> None:
    """Give the C allocator's free pages back to the system (a few ms: after big work)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
