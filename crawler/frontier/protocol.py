"""The Frontier protocol: what the crawl loop asks of a frontier, in memory or in Redis.

A frontier owns the seen set, the queued entries and the schedule:
``lease()`` hands out an entry only when its host may take another request
now. The loop cannot tell the two implementations apart (memory.py,
shared.py).

Invariants, for every implementation:
1. Every ``lease()`` that returns an entry is matched by exactly one ``ack()``
   or ``requeue()`` (which acks), in a ``finally`` of the caller.
2. The crawl is finished when nothing is leased and nothing leasable is
   queued; then ``lease()`` returns [] to every caller, as after ``close()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from crawler.records import Entry
from crawler.stats import Tally


@dataclass(frozen=True, slots=True)
class Lease:
    """An entry handed out to be visited now; its host's slot has started a request."""

    entry: Entry
    host: str
    # The shared frontier's lease id (0 in memory).
    ticket: int = 0
    # The frontier gave up on the entry (the processes that leased it kept dying):
    # no request is made, its record says so, and its ack changes nothing.
    given_up: bool = False
    # The shared frontier's clock (Redis's TIME, ms) when it was leased: the moment its
    # request should leave (0 in memory).
    leased_ms: int = 0


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
# Links queued at a time (queue_links): a page or sitemap of 600,000 links is taken
# in batch by batch, so the memory frontier spills what it cannot hold (it decides
# a batch at a time) and the journal writes them as they come.
QUEUE_BATCH = 5000


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


class HostBudget:
    """--max-pages-per-host: the pages started on each host (by host and port, as
    politeness counts them); a page of a host at its limit is skipped, counted in the
    tally (``budget_skipped``), its host named (``budget_hosts``), and it is done
    (``on_skip``: the journal's, so a resumed crawl does not skip it again)."""

    def __init__(
        self,
        limit: int | None,
        tally: Tally | None = None,
        on_skip: Callable[[str], None] | None = None,
        started: Iterable[str] = (),
    ) -> None:
        self._limit = limit
        self._tally = tally
        self._on_skip = on_skip
        self._started: dict[str, int] = {}
        for host in started if limit is not None else ():  # a resume's pages: read if counted
            self.start(host)

    def skips(self, host: str, entry: Entry) -> bool:
        """``host`` has started all its pages: the page ``entry`` is skipped."""
        if self._limit is None or self._started.get(host, 0) < self._limit:
            return False
        assert self._tally is not None
        self._tally.budget_skipped += 1
        self._tally.budget_hosts.add(host)
        if self._on_skip is not None:
            self._on_skip(entry.url)
        return True

    def start(self, host: str) -> None:
        self._started[host] = self._started.get(host, 0) + 1


class Spill(Protocol):
    """Where queued entries wait when memory is full (the journal, over state.sqlite)."""

    def mark(self) -> int:
        """Write out everything queued so far; return the position of the last entry."""

    def load(self, after: int, limit: int) -> list[tuple[int, Entry]]:
        """Up to ``limit`` queued, not done entries past position ``after``, in order."""


class Frontier(Protocol):
    def unseen(self, urls: list[str]) -> list[str]:
        """The ``urls`` it may not have met: a cheap filter before Entries are made for a
        page's links (most of which are known); ``add`` still decides."""

    async def add(self, entries: Iterable[Entry], *, first: bool = False) -> list[Entry]:
        """Queue the entries not seen before (``first``: at the head of their hosts'
        queues, for a continuation); return those."""

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


async def queue_links(frontier: Frontier, links: list[str], depth: int, referrer: str) -> None:
    """Entries for the links a page (``referrer``) follows, those not seen yet, queued
    QUEUE_BATCH at a time: never all of a page's entries at once."""
    for start in range(0, len(links), QUEUE_BATCH):
        fresh = frontier.unseen(links[start : start + QUEUE_BATCH])
        await frontier.add([Entry(url, depth, referrer) for url in fresh])
