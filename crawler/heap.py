"""Freed memory handed back to the system after a burst of it (a big page's links).

The C allocator (glibc's malloc) keeps what a burst freed for later use: a 10 MB
page of 600,000 links leaves about 50 MB free but held by the process, for the
rest of the crawl. ``malloc_trim`` gives its free pages back. And glibc raises
the size from which a block gets its own mapping to that of each big block
freed: after one 10 MB body, the next 30 MB sitemap lands in the heap and its
pages are kept when it is freed. The command line fixes that size at 1 MiB
(``for_big_blocks``), so every body, sitemap and large array is handed back
when freed (the densest page with its sitemap: 273 -> 243 MB). The library
leaves its host's allocator alone. Without glibc (macOS, musl), nothing is done.
"""

from __future__ import annotations

import ctypes
import functools

# mallopt's parameter: blocks from this size get a mapping of their own.
_M_MMAP_THRESHOLD = -3
_OWN_MAPPING_BYTES = 1024 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library's among them
    except (OSError, TypeError):
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def release_freed() -> None:
    """Give the C allocator's free pages back to the system (a few ms: after big work)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def for_big_blocks() -> None:
    """Every block of 1 MiB or more gets a mapping of its own, returned when it is
    freed (the command line's, at its start: it tunes the whole process)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _OWN_MAPPING_BYTES)
