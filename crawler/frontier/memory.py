"""The in-memory frontier: the embedded default, journaled to state.sqlite.

It implements the Frontier protocol (protocol.py). It owns the seen set, the
queued entries (one FIFO per host) and, through the politeness slots, the
schedule: ``lease()`` hands out an entry only when its host may take another
request now, so no worker ever sits waiting on one host's gap while another
host has work. This is the same contract as the Redis frontier's LEASE/ACK.

Invariants (with those of protocol.py):
1. Every entry new to the seen set that starts a record is given to
   ``on_added`` (the journal) as it is added, before ``add()`` returns.
2. A host is in the ready heap iff its queue is non-empty, its slot is not
   full, and (after --max-pages is reached) its first entry is a continuation
   (queues.py).
3. Memory stays bounded however large the frontier grows: the seen set holds
   64-bit fingerprints, not URLs, and past ``MEMORY_ENTRIES`` queued entries
   new ones stay only in the spill (state.sqlite, where the journal writes
   every queued entry anyway) and are read back in queue order as the
   in-memory queues drain. Entries are spilled in the order they were
   queued, so everything past the spill cursor is spilled and nothing before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from crawler.frontier.politeness import Politeness
from crawler.frontier.protocol import HostBudget, Lease, PageBudget, Spill
from crawler.frontier.queues import HostQueues, Wakeup
from crawler.records import Entry
from crawler.web.seen import SeenSet, url_key

# Entries kept in memory before new ones are left in the spill, and the number
# read back at a time once fewer than half of that remain.
MEMORY_ENTRIES = 50_000


class MemoryFrontier:
    """A frontier held in this process: FIFO per host, a heap of ready hosts."""

    def __init__(
        self,
        politeness: Politeness,
        *,
        max_pages: int | None = None,
        spill: Spill | None = None,
        budget: PageBudget | None = None,
        host_budget: HostBudget | None = None,
        on_idle: Callable[[], None] | None = None,
        on_added: Callable[[list[Entry]], None] | None = None,
    ) -> None:
        self._politeness = politeness
        self._budget = budget or PageBudget(max_pages)
        self._host_budget = host_budget or HostBudget(None)
        # In a front, running out of work is reported (lease() waits for more).
        self._on_idle = on_idle
        self._on_added = on_added
        self._spill = spill
        # Position of the last entry read from the spill; None while nothing is spilled.
        self._spill_cursor: int | None = None
        self._spilled = 0
        self._queues = HostQueues(politeness, self._budget)
        self._seen = SeenSet()
        self._pending = 0
        # Queued or delayed entries leased even past --max-pages (Entry.outside_budget).
        self._continuations = 0
        self._leased = 0
        self._closed = False
        self._wakeup = Wakeup(self._queues, self.is_finished)

    def pending(self) -> int:
        return self._pending

    def in_flight(self) -> int:
        return self._leased

    def close(self) -> None:
        self._closed = True
        self._wakeup.wake()

    def unseen(self, urls: list[str]) -> list[str]:
        return self._seen.unseen(urls)

    def is_finished(self) -> bool:
        exhausted = self._budget.exhausted() and self._continuations == 0
        return not self._leased and (self._pending == 0 or exhausted)

    def _push(self, entry: Entry, first: bool) -> None:
        self._pending += 1
        self._continuations += entry.outside_budget()
        self._queues.push(entry, first=first)

    def restore(self, seen: Iterable[str], pending: int, pages_done: int) -> None:
        """Start from a saved crawl: its seen set, its ``pending`` entries (all in
        the spill, read back as the queues drain), its page count."""
        self._seen.update(map(url_key, seen))
        self._budget.take_done(pages_done)
        if pending:
            self._pending += pending
            self._spilled = pending
            self._spill_cursor = -1
            self._refill()
        self._wakeup.wake()

    async def add(self, entries: Iterable[Entry], *, first: bool = False) -> list[Entry]:
        added = self._take_in(entries, first)
        fresh = [entry for entry in added if not entry.is_continuation()]
        if fresh and self._on_added is not None:
            self._on_added(fresh)
        return added

    def adopt(self, seen: Iterable[str], entries: Iterable[Entry]) -> None:
        """Start from a share of a saved crawl, already journaled: its seen URLs and
        its pending entries (the front hands each process its own)."""
        self._take_in(entries, False)
        self._seen.update(map(url_key, seen))

    def _take_in(self, entries: Iterable[Entry], first: bool) -> list[Entry]:
        added = []
        in_memory = self._pending - self._spilled
        if self._spill is not None and self._spill_cursor is None and in_memory >= MEMORY_ENTRIES:
            # A whole batch spills or none of it does: the journal learns of a
            # batch only after add() returns, so the cursor is marked before it.
            self._spill_cursor = self._spill.mark()
        for entry in entries:
            key = url_key(entry.url)
            if key in self._seen:
                continue
            self._seen.add(key)
            if self._spill_cursor is not None and not entry.is_continuation():
                self._pending += 1
                self._spilled += 1
            else:
                self._push(entry, first)
            added.append(entry)
        if added:
            self._wakeup.changed()
        return added

    def _refill(self) -> None:
        """Read spilled entries back while the in-memory queues run low (invariant 4)."""
        if self._spill_cursor is None or self._pending - self._spilled >= MEMORY_ENTRIES // 2:
            return
        assert self._spill is not None
        rows = self._spill.load(self._spill_cursor, MEMORY_ENTRIES // 2)
        for position, entry in rows:
            self._queues.push(entry, first=False)
            self._continuations += entry.outside_budget()  # a link to check, spilled
            self._spill_cursor = position
        self._spilled -= len(rows)
        if not rows or self._spilled <= 0:
            self._spill_cursor, self._pending = None, self._pending - max(self._spilled, 0)
            self._spilled = 0

    def _take(self, host: str, now: float) -> Lease | None:
        """Lease the host's first entry; None if it is a page the budget no longer allows."""
        queues = self._queues
        queues.unschedule_top()
        head = queues.head(host)
        page = head.counts_as_page()
        if page and self._host_budget.skips(host, head):
            queues.pop(host)  # past --max-pages-per-host: no request, no record
            self._pending -= 1
            queues.schedule(host)
            return None
        slot = self._politeness.slot(host)
        if (page and self._budget.exhausted()) or not slot.try_start(now):
            queues.schedule(host)
            return None
        if page and not self._budget.take():  # another process took the last page
            slot.finish(now, None, None)
            queues.schedule(host)
            return None
        entry = queues.pop(host)
        if page:
            self._host_budget.start(host)
        self._pending -= 1
        self._continuations -= entry.outside_budget()
        self._leased += 1
        queues.schedule(host)
        return Lease(entry, host)

    async def lease(self, limit: int = 1) -> list[Lease]:
        while not self._closed:
            if self.is_finished():
                if self._on_idle is None:
                    break
                self._on_idle()
            now = time.monotonic()
            self._refill()
            next_delayed = self._queues.release_delayed(now)
            earliest = self._queues.earliest()
            if earliest is not None and earliest[0] <= now:
                leases: list[Lease] = []
                while earliest is not None and earliest[0] <= now and len(leases) < limit:
                    lease = self._take(earliest[1], now)
                    if lease is not None:
                        leases.append(lease)
                    earliest = self._queues.earliest()
                if leases:
                    return leases
                continue
            due = min(next_delayed, earliest[0] if earliest is not None else math.inf)
            await self._wakeup.until(due)
        self._wakeup.wake()
        return []

    async def ack(self, lease: Lease, status: int | None, retry_after: float | None) -> None:
        self._leased -= 1
        self._politeness.slot(lease.host).finish(time.monotonic(), status, retry_after)
        self._queues.schedule(lease.host)
        self._wakeup.changed()

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
            self._queues.delay(entry, time.monotonic() + delay)
        else:
            self._push(entry, first=True)
        await self.ack(lease, status, retry_after)
