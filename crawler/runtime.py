"""How the command line's process runs its crawl: on uvloop's event loop, with the
cyclic garbage collector run seldom. The library leaves its host's loop and
collector alone: ``crawler.crawl`` runs on whatever loop awaits it.

- The loop: uvloop's (libuv, in C) where it is installed, as it is by default on
  Linux and macOS; asyncio's own elsewhere. A crawl's loop does little but move
  small requests and answers through sockets.
- The collector: CPython collects its youngest objects every 700 allocations. A
  crawl allocates a few hundred a page and frees nearly all of them by reference
  counting, yet each of those collections walked the young objects again: 5 s of a
  65 s crawl. Every 20,000 allocations, the crawl's reference cycles (an exception's
  traceback, a closed connection's callbacks) still go within a fraction of a second.

Together, on a broad crawl of 2,000 hosts (benchmarks/world.py, 96,586 pages, the
crawler on a core of its own, one run each): 67 s of CPU became 56 s.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# gc.set_threshold's: the youngest generation every 20,000 allocations (not 700),
# the middle one every 20 of those, the oldest as CPython decides (its 25% rule).
_COLLECT_EVERY = (20_000, 20, 10)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the fastest loop at hand."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def collect_seldom() -> None:
    """The collector's thresholds for a crawl (the command line's, at its start: it
    tunes the whole process)."""
    gc.set_threshold(*_COLLECT_EVERY)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
