"""A child's share of the frontier: the in-memory frontier over the URLs it owns.

To the engine it is a Frontier like any other. What it adds: every entry
added is sorted by owner (wire.owner), the others are routed to the parent
("route"), and what is new here is reported ("added", or "taken" for
entries the parent routed here, which it journaled as it routed them). When
nothing is leasable and nothing is in flight it reports "idle" with the
number of parent messages consumed (parent.py's invariant 1); leasing waits
while the parent is behind with what this process sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from crawler.frontier.memory import MemoryFrontier
from crawler.frontier.politeness import Politeness
from crawler.frontier.protocol import HostBudget, Lease, PageBudget
from crawler.output.spill import TempSpill
from crawler.procs.channel import Channel
from crawler.procs.wire import CHILD_COUNTS, ChildSpec, owner, pack_entries
from crawler.records import Entry
from crawler.stats import Tally
from crawler.web.seen import SeenSet, url_key
from crawler.web.urls import url_owner

# A child sends its messages in batches of this many, or this often.
BATCH = 1024
BATCH_SECONDS = 0.1


class SharedBudget(PageBudget):
    """--max-pages across the front's processes: one counter in shared memory."""

    def __init__(self, limit: int | None, counter: Synchronized[int]) -> None:
        super().__init__(limit)
        self._counter = counter

    def exhausted(self) -> bool:
        return self._limit is not None and self._counter.value >= self._limit

    def take(self) -> bool:
        if self._limit is None:
            return True
        with self._counter.get_lock():
            if self.exhausted():
                return False
            self._counter.value += 1
            return True


class Outbox:
    """A child's messages to the parent, sent in batches."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._batch: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None

    def send(self, message: tuple[Any, ...], *, now: bool = False) -> None:
        self._batch.append(message)
        if now or len(self._batch) >= BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)

    async def drain(self) -> None:
        await self._channel.drain()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._batch:
            self._channel.send(self._batch)
            self._batch = []


class PartitionedFrontier:
    """The Frontier of one child process of the front."""

    def __init__(
        self,
        spec: ChildSpec,
        outbox: Outbox,
        politeness: Politeness,
        budget: PageBudget,
        host_budget: HostBudget,
        tally: Tally,
    ) -> None:
        self._spec = spec
        self._outbox = outbox
        self._tally = tally
        # The parent journals this process's entries; its overflow waits in a file of
        # its own, so a process's memory stays bounded as one crawl's does.
        self.spill = TempSpill()
        self._memory = MemoryFrontier(
            politeness,
            budget=budget,
            host_budget=host_budget,
            spill=self.spill,
            on_idle=self._idle,
            on_added=self._added,
        )
        self.consumed = 0
        self._taking = False
        self._reported: int | None = None
        self._routed = SeenSet()
        # Whether this process owns an origin's host.
        self._owned: dict[str, bool] = {}

    # The Frontier protocol.

    async def add(self, entries: Iterable[Entry], *, first: bool = False) -> list[Entry]:
        """Queue the entries this process owns; route the others (they count as taken)."""
        owned, foreign = self._split(entries)
        return await self._memory.add(owned, first=first) + foreign

    async def lease(self, limit: int = 1) -> list[Lease]:
        await self._outbox.drain()
        return await self._memory.lease(limit)

    async def ack(self, lease: Lease, status: int | None, retry_after: float | None) -> None:
        await self._memory.ack(lease, status, retry_after)

    async def requeue(
        self,
        lease: Lease,
        entry: Entry,
        status: int | None,
        retry_after: float | None,
        delay: float = 0.0,
    ) -> None:
        await self._memory.requeue(lease, entry, status, retry_after, delay)

    def close(self) -> None:
        self._memory.close()

    def unseen(self, urls: list[str]) -> list[str]:
        """Neither seen here (owned) nor routed before (another process's)."""
        return self._routed.unseen(self._memory.unseen(urls))

    def is_finished(self) -> bool:
        return self._memory.is_finished()

    def pending(self) -> int:
        return self._memory.pending()

    def in_flight(self) -> int:
        return self._memory.in_flight()

    # What the parent sends.

    async def take(self, entries: list[Entry]) -> list[Entry]:
        """Entries the parent routed here; return the redirect hops that led to a URL
        seen here (their records end there)."""
        hops = [entry for entry in entries if entry.is_continuation()]
        pages = [entry for entry in entries if not entry.is_continuation()]
        self._taking = True
        try:
            taken = await self.add(hops, first=True)
            await self.add(pages)
        finally:
            self._taking = False
        return [hop for hop in hops if hop not in taken]

    def restore(self, seen: Iterable[str], pending: list[Entry]) -> None:
        """This process's share of a resumed crawl (journaled already)."""
        self._memory.adopt(seen, pending)

    def consumed_one(self) -> None:
        """A message of the parent's is handled: report idle again if there is nothing to do."""
        self.consumed += 1
        self._reported = None
        if self._memory.is_finished():
            self._idle()

    def counters(self) -> dict[str, int]:
        counts: dict[str, Any] = {name: getattr(self._tally, name) for name in CHILD_COUNTS}
        counts["budget_hosts"] = sorted(self._tally.budget_hosts)
        return counts

    def _split(self, entries: Iterable[Entry]) -> tuple[list[Entry], list[Entry]]:
        """The entries this process owns, and the others, which it routes to their
        owners. Every link passes here, so it is one loop: ownership is decided once
        per origin, and a URL is routed once (most links repeat; the owner dedups),
        which keeps the traffic to about one message per URL."""
        spec = self._spec
        owned: list[Entry] = []
        foreign: list[Entry] = []
        fresh: list[Entry] = []
        known, routed = self._owned, self._routed
        for entry in entries:
            url = entry.url
            if spec.split:
                mine: bool | None = url_owner(url, spec.processes) == spec.index
            else:
                # A normalised URL's origin (scheme, host, port) ends at its path's "/".
                origin = url[: url.find("/", len("https://"))]
                mine = known.get(origin)
                if mine is None:
                    mine = known[origin] = owner(url, spec.processes) == spec.index
            if mine:
                owned.append(entry)
                continue
            foreign.append(entry)
            if entry.is_continuation():
                fresh.append(entry)
            elif (key := url_key(url)) not in routed:
                routed.add(key)
                fresh.append(entry)
        if fresh:
            self._outbox.send(("route", pack_entries(fresh)))
        return owned, foreign

    def _added(self, entries: list[Entry]) -> None:
        self.spill.added(entries)
        if self._taking:
            # Routed here by the parent, which journaled them as it routed them.
            self._outbox.send(("taken", len(entries)))
        else:
            self._outbox.send(("added", pack_entries(entries)))

    def _idle(self) -> None:
        if not self._taking and self._reported != self.consumed:
            self._reported = self.consumed
            self._outbox.send(("idle", self.consumed, self.counters()), now=True)
