"""The Frontier protocol and the in-memory frontier.

Layer 2: imports politeness and urls. The frontier owns the seen set, the
queued entries (one FIFO per host) and, through the politeness slots, the
schedule: ``lease()`` hands out an entry only when its host may take another
request now, so no worker ever sits waiting on one host's gap while another
host has work. This is the same contract as the Redis frontier's LEASE/ACK.

Invariants:
1. Every ``lease()`` that returns an entry is matched by exactly one ``ack()``
   or ``requeue()`` (which acks), in a ``finally`` of the caller.
2. A host is in the ready heap iff its queue is non-empty, its slot is not
   full, and (after --max-pages is reached) its first entry is a continuation:
   past the limit only records already started are carried on.
   Heap times may be stale; ``lease()`` recomputes before trusting one.
3. The crawl is finished when nothing is leased and nothing leasable is queued;
   then ``lease()`` returns None to every caller, as it does after ``close()``.
4. Memory stays bounded however large the frontier grows: the seen set holds
   64-bit fingerprints, not URLs, and past ``MEMORY_ENTRIES`` queued entries
   new ones stay only in the spill (state.sqlite, where the journal writes
   every queued entry anyway) and are read back in queue order as the
   in-memory queues drain. Entries are spilled in the order they were
   queued, so everything past the spill cursor is spilled and nothing before it.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from crawler.politeness import Politeness
from crawler.urls import host_key


@dataclass(frozen=True, slots=True)
class Entry:
    """A URL waiting in the frontier, with what its record needs to carry."""

    url: str
    depth: int
    referrer: str | None = None
    # "page", or "sitemap" for a sitemap to read (it gets no record of its own).
    kind: str = "page"
    # Failed requests so far (for --retries).
    attempts: int = 0
    # Times this entry's record has been leased before (deferred after robots.txt, retried).
    leases: int = 0
    # For a redirect hop: the URL the record is for, and the hops requested so far.
    origin: str | None = None
    hops: tuple[str, ...] = ()
    elapsed_ms: int = 0
    # For a redirect hop: the status of the answer that redirected here.
    via_status: int | None = None

    def is_continuation(self) -> bool:
        """Carries on a record already started (retry, deferral, redirect hop)."""
        return self.leases > 0 or self.origin is not None

    def counts_as_page(self) -> bool:
        """Leasing it starts a new record: it counts toward --max-pages."""
        return self.kind == "page" and not self.is_continuation()


@dataclass(frozen=True, slots=True)
class Lease:
    entry: Entry
    host: str
    # The shared frontier's lease id (0 in memory).
    ticket: int = 0


# Entries kept in memory before new ones are left in the spill, and the number
# read back at a time once fewer than half of that remain.
MEMORY_ENTRIES = 50_000


def fingerprint(url: str) -> int:
    """The seen set's key: the string's 64-bit SipHash, kept instead of the URL.

    The seen set lives in one process and is rebuilt from state.sqlite on
    --resume, so a per-process (salted) hash is enough, and a str caches its
    hash: the normalised URLs, which urls.normalize caches, cost nothing to look
    up again. A collision needs about 4e9 URLs.
    """
    return hash(url)


class SeenSet:
    """A set of 64-bit fingerprints at about 8 bytes each: a sorted array, and a
    small set of recent additions merged into it when it grows (a Python set of
    ints costs about 70 bytes an entry)."""

    MERGE_AT = 65_536

    def __init__(self) -> None:
        self._sorted = array("q")
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        index = bisect.bisect_left(self._sorted, key)
        return index < len(self._sorted) and self._sorted[index] == key

    def add(self, key: int) -> None:
        self._recent.add(key)
        if len(self._recent) >= self.MERGE_AT:
            self._sorted = array("q", sorted(itertools.chain(self._sorted, self._recent)))
            self._recent = set()

    def update(self, keys: Iterable[int]) -> None:
        for key in keys:
            if key not in self:
                self.add(key)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a processed lease tells the frontier."""

    # The entry that carries the record on (a retry, a deferred page), if any.
    continuation: Entry | None = None
    # The answer's status and Retry-After, for the host's politeness slot.
    status: int | None = None
    retry_after: float | None = None
    # Seconds the continuation alone waits (its host is not held back).
    delay: float = 0.0


DONE = Outcome()


class PageBudget:
    """--max-pages: how many pages may still be started. This one counts in one
    process; the multiprocessing front shares one across its processes."""

    def __init__(self, limit: int | None, used: int = 0) -> None:
        self._limit = limit
        self._used = used

    def exhausted(self) -> bool:
        return self._limit is not None and self._used >= self._limit

    def take(self) -> bool:
        """Start one page, if the budget allows."""
        if self.exhausted():
            return False
        self._used += 1
        return True

    def take_done(self, pages: int) -> None:
        """Pages done in earlier runs count too (--resume)."""
        self._used += pages


class Spill(Protocol):
    """Where queued entries wait when memory is full (the journal, over state.sqlite)."""

    def mark(self) -> int:
        """Write out everything queued so far; return the position of the last entry."""

    def load(self, after: int, limit: int) -> list[tuple[int, Entry]]:
        """Up to ``limit`` queued, not done entries past position ``after``, in order."""


class Frontier(Protocol):
    async def add(self, entries: Iterable[Entry], *, front: bool = False) -> list[Entry]:
        """Queue the entries not seen before; return those."""

    async def lease(self, limit: int = 1) -> list[Lease]:
        """Up to ``limit`` entries whose hosts are ready now, waiting for the first;
        [] when the crawl is finished or closed. Each starts its request at once."""

    async def ack(self, lease: Lease, status: int | None, retry_after: float | None) -> None:
        """The leased entry is done; its outcome feeds the host's politeness."""

    async def requeue(
        self,
        lease: Lease,
        entry: Entry,
        status: int | None,
        retry_after: float | None,
        delay: float = 0.0,
    ) -> None:
        """Ack ``lease``; queue ``entry`` (its continuation) first in its host's queue.

        ``retry_after`` holds back the whole host (the server asked for it);
        ``delay`` holds back only this entry.
        """

    def close(self) -> None:
        """Lease nothing more; in-flight entries may still be acked."""

    def is_finished(self) -> bool:
        """Nothing leased, nothing leasable queued."""

    def pending(self) -> int: ...

    def in_flight(self) -> int: ...


class MemoryFrontier:
    """A frontier held in this process: FIFO per host, a heap of ready hosts."""

    def __init__(
        self,
        politeness: Politeness,
        *,
        max_pages: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        spill: Spill | None = None,
        budget: PageBudget | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._politeness = politeness
        self._budget = budget or PageBudget(max_pages)
        # In a multiprocessing front, running out of work is reported, not final:
        # lease() waits for more (or close()) instead of returning None.
        self._on_idle = on_idle
        self._clock = clock
        self._spill = spill
        # Position of the last entry read from the spill; None while nothing is spilled.
        self._spill_cursor: int | None = None
        self._spilled = 0
        self._queues: dict[str, deque[Entry]] = {}
        self._seen = SeenSet()
        self._heap: list[tuple[float, int, str]] = []
        # Entries held back on their own (a retry after a failure): (due, order, entry).
        self._delayed: list[tuple[float, int, Entry]] = []
        self._scheduled: set[str] = set()
        self._order = itertools.count()
        self._pending = 0
        self._continuations = 0
        self._leased = 0
        self._closed = False
        self._changed = asyncio.Event()

    def pending(self) -> int:
        return self._pending

    def in_flight(self) -> int:
        return self._leased

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    def is_finished(self) -> bool:
        if self._leased:
            return False
        return self._pending == 0 or (self._limit_reached() and self._continuations == 0)

    def _limit_reached(self) -> bool:
        return self._budget.exhausted()

    def _ready_time(self, host: str) -> float:
        queue = self._queues.get(host)
        if not queue or (self._limit_reached() and not queue[0].is_continuation()):
            return math.inf
        return self._politeness.slot(host).ready_at()

    def _schedule(self, host: str) -> None:
        if host in self._scheduled:
            return
        ready = self._ready_time(host)
        if ready != math.inf:
            heapq.heappush(self._heap, (ready, next(self._order), host))
            self._scheduled.add(host)

    def _push(self, entry: Entry, front: bool) -> None:
        self._pending += 1
        if entry.is_continuation():
            self._continuations += 1
        self._enqueue(entry, front)

    def _enqueue(self, entry: Entry, front: bool) -> None:
        host = host_key(entry.url)
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = deque()
        if front:
            queue.appendleft(entry)
        else:
            queue.append(entry)
        self._schedule(host)

    def _release_delayed(self, now: float) -> float:
        """Queue the delayed entries that are due; return when the next one is."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, entry = heapq.heappop(self._delayed)
            self._enqueue(entry, front=True)
        return self._delayed[0][0] if self._delayed else math.inf

    def restore(self, seen: Iterable[str], pending: int, pages_done: int) -> None:
        """Start from a saved crawl: its seen set, its ``pending`` entries (all in
        the spill, read back as the queues drain), its page count."""
        self._seen.update(map(fingerprint, seen))
        self._budget.take_done(pages_done)
        if pending:
            self._pending += pending
            self._spilled = pending
            self._spill_cursor = -1
            self._refill()
        self._changed.set()

    async def add(self, entries: Iterable[Entry], *, front: bool = False) -> list[Entry]:
        added = []
        in_memory = self._pending - self._spilled
        if self._spill is not None and self._spill_cursor is None and in_memory >= MEMORY_ENTRIES:
            # A whole batch spills or none of it does: the journal learns of a
            # batch only after add() returns, so the cursor is marked before it.
            self._spill_cursor = self._spill.mark()
        for entry in entries:
            key = fingerprint(entry.url)
            if key in self._seen:
                continue
            self._seen.add(key)
            if self._spill_cursor is not None and not entry.is_continuation():
                self._pending += 1
                self._spilled += 1
            else:
                self._push(entry, front)
            added.append(entry)
        if added:
            self._changed.set()
        return added

    def _refill(self) -> None:
        """Read spilled entries back while the in-memory queues run low (invariant 4)."""
        if self._spill_cursor is None or self._pending - self._spilled >= MEMORY_ENTRIES // 2:
            return
        assert self._spill is not None
        rows = self._spill.load(self._spill_cursor, MEMORY_ENTRIES // 2)
        for position, entry in rows:
            self._enqueue(entry, front=False)
            self._spill_cursor = position
        self._spilled -= len(rows)
        if not rows or self._spilled <= 0:
            self._spill_cursor, self._pending = None, self._pending - max(self._spilled, 0)
            self._spilled = 0

    def _earliest(self) -> tuple[float, str] | None:
        """The ready heap's top after dropping and re-timing stale items (invariant 2)."""
        while self._heap:
            when, _, host = self._heap[0]
            actual = self._ready_time(host)
            if actual == when:
                return when, host
            heapq.heappop(self._heap)
            self._scheduled.discard(host)
            self._schedule(host)
        return None

    def _take(self, host: str, now: float) -> Lease | None:
        """Lease the host's first entry; None if it is a page the budget no longer allows."""
        heapq.heappop(self._heap)
        self._scheduled.discard(host)
        page = self._queues[host][0].counts_as_page()
        slot = self._politeness.slot(host)
        if (page and self._budget.exhausted()) or not slot.try_start(now):
            self._schedule(host)
            return None
        if page and not self._budget.take():  # another process took the last page
            slot.finish(now, None, None)
            self._schedule(host)
            return None
        entry = self._queues[host].popleft()
        if not self._queues[host]:
            del self._queues[host]
        self._pending -= 1
        if entry.is_continuation():
            self._continuations -= 1
        self._leased += 1
        self._schedule(host)
        return Lease(entry, host)

    async def lease(self, limit: int = 1) -> list[Lease]:
        while not self._closed:
            if self.is_finished():
                if self._on_idle is None:
                    break
                self._on_idle()
            now = self._clock()
            self._refill()
            next_delayed = self._release_delayed(now)
            earliest = self._earliest()
            if earliest is not None and earliest[0] <= now:
                leases: list[Lease] = []
                while earliest is not None and earliest[0] <= now and len(leases) < limit:
                    lease = self._take(earliest[1], now)
                    if lease is not None:
                        leases.append(lease)
                    earliest = self._earliest()
                if leases:
                    return leases
                continue
            self._changed.clear()
            due = min(next_delayed, earliest[0] if earliest is not None else math.inf)
            wait = None if due == math.inf else due - now
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass
        self._changed.set()
        return []

    async def ack(self, lease: Lease, status: int | None, retry_after: float | None) -> None:
        self._leased -= 1
        self._politeness.slot(lease.host).finish(self._clock(), status, retry_after)
        self._schedule(lease.host)
        self._changed.set()

    async def requeue(
        self,
        lease: Lease,
        entry: Entry,
        status: int | None,
        retry_after: float | None,
        delay: float = 0.0,
    ) -> None:
        if delay > 0:
            self._pending += 1
            self._continuations += 1
            due = self._clock() + delay
            heapq.heappush(self._delayed, (due, next(self._order), entry))
        else:
            self._push(entry, front=True)
        await self.ack(lease, status, retry_after)
