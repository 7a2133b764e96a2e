"""Blocking work off the event loop (a big page's parse, a sitemap, thousands of links
to judge, a seed list), on threads that a stopping crawl can leave behind.

``asyncio.to_thread`` uses the loop's default executor, whose threads the
interpreter joins at exit (and ``asyncio.run`` waits for): one page that takes
minutes to read would hold ``--max-time`` and Ctrl-C until it was done. These
threads are daemons: a worker cancelled after the stop's grace period returns at
once, the page stays pending for ``--resume`` (nothing a thread computes is
written to the state: its result comes back to the loop, which writes), and the
process exits without waiting for the abandoned work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = min(32, (os.cpu_count() or 1) + 4)

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """``threads`` daemon threads, started on the first job, taking jobs in order."""

    def __init__(self, name: str, threads: int) -> None:
        self._name = name
        self._threads = threads
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started = 0
        self._start_lock = threading.Lock()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on one of the threads; cancelling the await abandons it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._start()
        self._jobs.put((loop, future, function, args))
        return await future

    def _start(self) -> None:
        if self._started:
            return
        with self._start_lock:
            while self._started < self._threads:
                name = f"crawler-{self._name}-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
                self._started += 1

    def _work(self) -> None:
        while True:
            loop, future, function, args = self._jobs.get()
            if future.cancelled():
                continue
            try:
                result, error = function(*args), None
            except BaseException as raised:
                result, error = None, raised
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # cancelled meanwhile
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_WORK = DaemonPool("offload", THREADS)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on one of the crawl's daemon threads for CPU work."""
    return await _WORK.run(function, *args)
