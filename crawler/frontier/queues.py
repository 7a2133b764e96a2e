"""The queues of the in-memory frontier: a FIFO per host, a heap of ready hosts, and
the waiting lease's wake-up.

A host is in the heap iff its queue is non-empty, its politeness slot is
not full, and (once --max-pages is reached) its first entry is outside the
budget: past the limit only records already started are carried on, and links
are still checked.
Heap times may be stale (a slot's gap or back-off changed since); ``earliest``
re-times an item before trusting it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable

from crawler.frontier.politeness import Politeness, timer_at
from crawler.frontier.protocol import PageBudget
from crawler.records import Entry
from crawler.web.urls import host_key


class HostQueues:
    """Entries queued per host, and the hosts by when each may start a request."""

    def __init__(self, politeness: Politeness, budget: PageBudget) -> None:
        self._politeness = politeness
        self._budget = budget
        self._queues: dict[str, deque[Entry]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._scheduled: set[str] = set()
        self._order = itertools.count()
        # Entries held back on their own (a retry after a failure): (due, order, entry).
        self._delayed: list[tuple[float, int, Entry]] = []

    def push(self, entry: Entry, *, first: bool) -> None:
        host = host_key(entry.url)
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = deque()
        if first:
            queue.appendleft(entry)
        else:
            queue.append(entry)
        self.schedule(host)

    def schedule(self, host: str) -> None:
        """Put the host in the heap, if it is ready at some time and not there yet."""
        if host in self._scheduled:
            return
        ready = self._ready_time(host)
        if ready != math.inf:
            heapq.heappush(self._heap, (ready, next(self._order), host))
            self._scheduled.add(host)

    def _ready_time(self, host: str) -> float:
        queue = self._queues.get(host)
        if not queue or (self._budget.exhausted() and not queue[0].outside_budget()):
            return math.inf
        return self._politeness.slot(host).ready_at()

    def earliest(self) -> tuple[float, str] | None:
        """The heap's top after dropping and re-timing stale items."""
        heap = self._heap
        while heap:
            when, _, host = heap[0]
            if self._ready_time(host) == when:
                return when, host
            heapq.heappop(heap)
            self._scheduled.discard(host)
            self.schedule(host)
        return None

    def unschedule_top(self) -> str:
        """Take the top host out of the heap (it is scheduled again after its turn)."""
        _, _, host = heapq.heappop(self._heap)
        self._scheduled.discard(host)
        return host

    def head(self, host: str) -> Entry:
        return self._queues[host][0]

    def pop(self, host: str) -> Entry:
        queue = self._queues[host]
        entry = queue.popleft()
        if not queue:
            del self._queues[host]
        return entry

    def delay(self, entry: Entry, due: float) -> None:
        """Queue ``entry`` (first on its host) at the monotonic time ``due``."""
        heapq.heappush(self._delayed, (due, next(self._order), entry))

    def next_delayed(self) -> float:
        """When the first delayed entry is due (inf: none is)."""
        return self._delayed[0][0] if self._delayed else math.inf

    def release_delayed(self, now: float) -> float:
        """Queue the delayed entries that are due; return when the next one is."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, entry = heapq.heappop(self._delayed)
            self.push(entry, first=True)
        return self.next_delayed()


class Wakeup:
    """The lease waiting for the next due entry, and what wakes it: a change that makes
    an entry due before it would look again, or may have finished the crawl. An ack
    or an add that made nothing sooner (its host waits out its gap) leaves it asleep:
    in a politeness-bound crawl that was two wake-ups a page for nothing, 3% of the
    CPU."""

    def __init__(self, queues: HostQueues, finished: Callable[[], bool]) -> None:
        self._queues = queues
        self._finished = finished
        self._event = asyncio.Event()
        # When the waiting lease will look again (None: none waits).
        self._until: float | None = None

    def wake(self) -> None:
        self._event.set()

    def changed(self) -> None:
        until = self._until
        if until is None or self._event.is_set():
            return
        earliest = self._queues.earliest()
        if (
            (earliest is not None and earliest[0] < until)
            or self._queues.next_delayed() < until
            or self._finished()
        ):
            self._event.set()

    async def until(self, due: float) -> None:
        """Sleep until ``due`` (time.monotonic(); inf: until woken), or until woken."""
        self._event.clear()
        self._until = due
        timer = None
        if due != math.inf:
            # A timer, not asyncio.timeout: most waits end at their due time, and a
            # timeout ends each with a cancellation raised through the task.
            timer = asyncio.get_running_loop().call_at(timer_at(due), self._event.set)
        try:
            await self._event.wait()
        finally:
            self._until = None
            if timer is not None:
                timer.cancel()
