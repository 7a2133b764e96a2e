"""The Redis frontier: one crawl shared by members on many machines (``--frontier redis://...``).

It is the Frontier protocol (protocol.py) over Redis (7.0 or later): the
engine leases, acks and requeues exactly as with the in-memory frontier.
Every change to the frontier is one Lua script (scripts.py), so each is
atomic, and the scripts read Redis's clock (TIME), so every member keeps
each host's gap on one clock. Its pieces: the keys and the encoding of
entries (redis_codec.py), the connection and its outages (redis_link.py),
the group commit of adds and acks (redis_commit.py).

The design (docs/architecture.md has its origins) and its choices:
- Politeness is whole in Redis, not only the gap: one small hash per host
  (``h:<host>``) holds its last start, not-before (Retry-After), gap (--delay
  or Crawl-delay), back-off (doubled on 429/503, halved on success, as
  politeness.py does in one process) and in-flight limit. The limit is 1 until
  the host's robots.txt is known, so exactly one member fetches it (no lock
  key), and ``save_robots`` stores it and raises the limit to --per-host.
  A gap gets scripts.GAP_MARGIN_MS more: requests leave from different machines a
  few ms after their leases, and the server must still see the whole gap. A
  request that leaves later than that (a busy loop, a slow connect) tells Redis
  (SENT, redis_gap.py): the host's next start counts from it, and if another
  member leased the host meanwhile, it waits a gap after that lease.
- LEASE takes up to n entries per call, several from one host when its gap
  allows (the engine asks for as many as it has idle workers). ACK carries
  continuations (retries, redirect hops, the entry deferred by robots.txt):
  they go back first in their host's queue, or into a ``delayed`` set for a
  retry's own wait, in the same script that frees the lease.
- Leases are short (LEASE_SECONDS) and kept alive by a heartbeat from the
  member that holds them, so a slow download or extractor never loses its
  lease, and a killed member's URLs come back within seconds, not minutes.
- Queued entries are short strings (redis_codec.py), a continuation's fields
  by name. No pickles.
- Adds and acks are group-committed: they wait for the member's next LEASE (a
  20 ms at most, redis_commit.py) and go in its pipeline, ENQUEUE before ACK, so
  a page's links are queued before it leaves the lease set. A member waiting to
  lease sleeps until the next due entry, woken early only by news of a sooner
  one: 0.39 round trips a page, not 1.9. Each member keeps
  its own seen set (8 bytes a URL) in front of Redis's, so a link it already
  sent is not sent again.
- The seen set is 16,384 buckets of 64-bit fingerprints (BLAKE2b), as Redis
  intsets: 10.1 bytes a URL at 1M URLs, fewer as they fill (512 per bucket, 8M), by
  benchmarks/redis_memory.py. Beyond that buckets turn into hash tables.
- With --max-pages, ENQUEUE stops queueing new pages once twice that many
  were (scripts.ADMISSION_FACTOR, an admission budget): LEASE could never
  take more, so Redis does not hold a big site's millions of links.
- Settings that members must agree on live in the crawl's ``meta`` hash;
  joiners take them. One crawl per Redis database (keys ``c:{crawl}:...``;
  the hash tag keeps every key of the crawl in one Cluster slot).
- Scripts that only free memory or move entries run even when Redis is at
  ``maxmemory`` (allow-oom); ENQUEUE does not (a shebang script is refused
  whole, never half done): its links are counted as ``refused_links`` and
  logged, and the crawl goes on with what is queued. An evicting
  maxmemory-policy is refused at start, since it would drop URLs silently.
- A Redis that stops answering is retried with back-off for OUTAGE_SECONDS,
  then FrontierUnavailable (exit 5). Unacked leases come back to whichever
  member carries on; acked work is in Redis. A lease whose holders kept
  dying (MAX_ATTEMPTS) is given up: it is handed out once more, marked so, and
  its record says ``dead-letter``.

Invariants (over those of protocol.py):
1. An entry is in exactly one place: a host queue, ``delayed``, the lease set
   (``leases`` + ``lease:data``), or ``dead``. ``f.pending`` counts the first two.
2. A host is in ``ready`` iff its queue is non-empty, its in-flight count is
   below its limit, and (once --max-pages is reached) its first entry is not
   a new page; its score is when it may start the next request.
3. The crawl is finished when nothing is leased and nothing leasable is
   pending; LEASE sets ``meta.status`` to finished then, atomically.
4. An ack whose lease was reclaimed (it expired) changes nothing but the
   ``stale_acks`` counter: the visit's record waits for its ack to hold
   (``after_ack``), so a stale one writes no record and counts no page.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from crawler.config import CrawlConfig
from crawler.errors import FrontierUnavailable
from crawler.frontier.protocol import Lease
from crawler.frontier.redis_codec import (
    ack_args,
    decode,
    enqueue_args,
    flat_counters,
    stable_fingerprint,
)
from crawler.frontier.redis_commit import GroupCommit
from crawler.frontier.redis_crawl import (
    SeedListKeys,
    SharedRobots,
    common_args,
    join,
    read_frontier_counts,
    read_stats,
)
from crawler.frontier.redis_gap import MemberGap
from crawler.frontier.redis_link import OUTAGE_SECONDS, RedisLink
from crawler.frontier.scripts import LOST
from crawler.records import CrawlStats, Entry
from crawler.stats import Tally
from crawler.web.seen import SeenSet

log = logging.getLogger(__name__)

# Entries one host may have queued; more are refused (counted as capped, not
# marked seen, so a later link can bring them back).
HOST_CAP = 1_000_000
LEASE_SECONDS = 10.0
HEARTBEAT_SECONDS = 2.0
RECLAIM_SECONDS = 2.0
# A URL whose lease expired this many times (its holders died) is given up.
MAX_ATTEMPTS = 3
# A chore still running this long after it was cancelled is cancelled again.
RECANCEL_SECONDS = 1.0


class SharedFrontier:
    """The Frontier protocol over Redis; also the robots.txt and counters of the crawl."""

    def __init__(
        self,
        url: str,
        tally: Tally,
        *,
        lease_seconds: float | None = None,
        outage_seconds: float = OUTAGE_SECONDS,
        host_cap: int = HOST_CAP,
    ) -> None:
        self._link = RedisLink(url, outage_seconds)
        self.url = self._link.url
        self._tally = tally
        self._lease_ms = int((lease_seconds or LEASE_SECONDS) * 1000)
        self._common: list[Any] = []
        self._commit = GroupCommit(self._link, tally, lambda: self._common, self._fail)
        self._commit.host_cap = host_cap
        # robots.txt, once per host for the whole crawl.
        self.robots = SharedRobots(self._link, lambda: self._common)
        self.seed_list = SeedListKeys(self._link)
        self._seen = SeenSet()
        self._held: dict[int, Lease] = {}
        self._given_up: deque[Lease] = deque()
        # Held while RECLAIM's answer (entries given up, not yet leased) is out.
        self._reclaiming = asyncio.Lock()
        self._pending = 0
        self._closed = False
        self._failure: Exception | None = None
        self._done = False
        self.created = False
        self.crawl_id = ""
        self._chores: list[asyncio.Task[None]] = []
        self.gap = MemberGap(self._link, lambda: self._common, self._fail)

    # Opening and closing.

    async def open(self, config: CrawlConfig) -> CrawlConfig:
        """Create the crawl (when given seeds and Redis has none) or join it.

        Returns ``config`` with the crawl's shared settings. NothingToDo if it
        is finished; ConfigError if it is another crawl or there is none to join.
        """
        joined = await join(self._link, config, self._commit.host_cap)
        self.crawl_id, self.created = joined.crawl_id, joined.created
        self._seen.update(joined.seeds)
        self._common = common_args(joined.config)
        self._commit.backoff_cap_ms = int(joined.config.max_retry_after * 1000)
        self._chores = [
            asyncio.create_task(
                _every(HEARTBEAT_SECONDS, self._heartbeat, self._fail), name="heartbeat"
            ),
            asyncio.create_task(_every(RECLAIM_SECONDS, self.reclaim, self._fail), name="reclaim"),
        ]
        return joined.config

    async def aclose(self, *, settle: bool = True) -> None:
        """Send what waits (acks, counters) unless told not to; stop; disconnect."""
        self._closed = True
        await _stopped(self._chores)
        try:
            if settle:
                await self._commit.all()
        finally:
            self._commit.cancel()
            await self._link.aclose()

    # The Frontier protocol.

    def pending(self) -> int:
        return self._pending

    def in_flight(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._closed = True
        self._commit.news.heard()

    def unseen(self, urls: list[str]) -> list[str]:
        return urls  # its seen set is of fingerprints: add() computes them once

    def is_finished(self) -> bool:
        return self._done

    async def add(self, entries: Iterable[Entry], *, first: bool = False) -> list[Entry]:
        keyed = ((entry, stable_fingerprint(entry.url)) for entry in entries)
        fresh = [(entry, key) for entry, key in keyed if key not in self._seen]
        if not fresh:
            return []
        results = await self._commit.add(enqueue_args(fresh, first), len(fresh))
        added = []
        for (entry, key), result in zip(fresh, results, strict=True):
            if result == 2:  # capped: not seen, so a later link may bring it back
                self._tally.refused_links += 1
            else:  # queued, known, or past what --max-pages can ever lease
                self._seen.add(key)
            if result == 1:
                added.append(entry)
        return added

    async def lease(self, limit: int = 1) -> list[Lease]:
        """Up to ``limit`` entries whose hosts are ready; [] when finished or closed."""
        try:
            return await self._lease(limit)
        except FrontierUnavailable:
            self.close()
            raise

    async def _lease(self, limit: int) -> list[Lease]:
        while not self._closed:
            if self._given_up:
                return [self._given_up.popleft() for _ in range(min(limit, len(self._given_up)))]
            # This member's own acks go first, so its hosts' slots are free in Redis.
            result = await self._commit.now(("lease", [*self._common, limit, self._lease_ms]))
            _refuse_lost(result, self.url)
            now, done, due, self._pending = (int(value) for value in result[:4])
            self.gap.clock.heard(now)
            if leases := _leases(result[5:], now):
                self._held.update((lease.ticket, lease) for lease in leases if not lease.given_up)
                for lease in (lease for lease in leases if lease.given_up):  # unreadable
                    self._commit.ack(ack_args(lease.ticket, None, None, None, 0.0))
                return leases
            if done:
                async with self._reclaiming:  # a reclaim's given-up entries come first
                    if self._given_up:
                        continue
                self._done = True
                return []
            await self._commit.news.until_due(
                now, due, self.gap.clock.redis_ms, lambda: self._closed or bool(self._given_up)
            )
        if self._failure is not None:
            raise self._failure
        return []

    async def ack(self, lease: Lease, status: int | None, retry_after: float | None) -> None:
        await self.requeue(lease, None, status, retry_after)

    async def requeue(
        self,
        lease: Lease,
        entry: Entry | None,
        status: int | None,
        retry_after: float | None,
        delay: float = 0.0,
    ) -> None:
        """Ack ``lease`` in the next round trip, with its continuation if any."""
        if not lease.given_up:  # a given-up lease is out of Redis, in its dead list
            self._held.pop(lease.ticket, None)
            self._commit.ack(ack_args(lease.ticket, status, retry_after, entry, delay))

    def after_ack(self, lease: Lease, counts: dict[str, Any], then: Callable[[], None]) -> None:
        """A record of ``lease``'s visit: its counters go with the ack, and ``then`` is
        called once it holds; neither if it is stale (see redis_commit.py)."""
        if not lease.ticket or lease.given_up:  # not in Redis's lease set
            then()
        else:
            self._commit.after_ack(lease.ticket, flat_counters(counts), then)

    # The whole crawl's counters.

    async def frontier_counts(self) -> dict[str, int]:
        return await read_frontier_counts(self._link)

    async def crawl_stats(self) -> CrawlStats:
        """The whole shared crawl's stats, as far as it has gone."""
        await self._commit.all()
        return await read_stats(self._link, finished=self._done)

    # Chores: keep this member's leases alive, take back dead members' leases.

    def _fail(self, error: Exception) -> None:
        """A background failure (Redis gone for good) stops the member: lease() raises it."""
        self._failure = error
        self.close()

    async def _heartbeat(self) -> None:
        if self._held:
            await self._link.eval("heartbeat", [*self._common, self._lease_ms, *self._held])

    async def reclaim(self) -> None:
        """Take back expired leases (their holders died); past MAX_ATTEMPTS, give them up:
        each is leased once more, marked given up, so that its record says so."""
        async with self._reclaiming:
            dead = await self._link.eval("reclaim", [*self._common, 1000, MAX_ATTEMPTS])
            for host, item in zip(dead[::2], dead[1::2], strict=True):
                entry = _decoded(item, host) or _unreadable(item, host)
                log.warning(
                    "%s (%s): its lease expired %d times: given up", entry.url, host, MAX_ATTEMPTS
                )
                self._given_up.append(Lease(entry, host, given_up=True))
        if dead:
            self._commit.news.heard()


async def _stopped(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for their end, cancelling again any that went on: a
    cancel can be lost in a library (asyncio.wait_for on Python 3.11 drops one that
    comes as its inner task completes; redis_link.py), and a chore that lost one
    would run forever, and the member with it."""
    running = set(tasks)
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=RECANCEL_SECONDS)
    await asyncio.gather(*tasks, return_exceptions=True)  # their errors, retrieved


def _refuse_lost(result: list[Any], url: str) -> None:
    """LEASE found the crawl's keys gone: FrontierUnavailable (exit 5), never "finished"."""
    if int(result[0]) == LOST:
        raise FrontierUnavailable(
            f"{url}: the shared crawl's keys are gone from Redis (FLUSHDB, or evicted): it"
            " cannot go on, and it is not finished; what was crawled is in each member's"
            " output folder"
        )


async def _every(
    seconds: float, chore: Callable[[], Awaitable[None]], fail: Callable[[Exception], None]
) -> None:
    """A member's chore, every ``seconds``; a failure (Redis gone for good) stops it."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await chore()
        except Exception as error:
            fail(error)


def _leases(values: list[Any], now: int) -> list[Lease]:
    """LEASE's (ticket, host, item) triples as leases; an item this crawler cannot read
    (written by hand, or by a bug) is a given-up lease: a dead-letter record, never
    the end of every member that leases it."""
    triples = zip(values[::3], values[1::3], values[2::3], strict=True)
    leases = []
    for ticket, host, item in triples:
        entry = _decoded(item, host)
        if entry is None:
            leases.append(Lease(_unreadable(item, host), host, int(ticket), given_up=True))
        else:
            leases.append(Lease(entry, host, int(ticket), leased_ms=now))
    return leases


def _decoded(item: str, host: str) -> Entry | None:
    try:
        return decode(item)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        log.warning("an unreadable entry of host %s in the shared frontier: %.200r", host, item)
        return None


def _unreadable(item: str, host: str) -> Entry:
    """The stand-in of an entry that cannot be read: its record names the host (the
    fragment says what it is: no request is ever made for it)."""
    return Entry(f"http://{host}/#unreadable-frontier-entry", 0, None, "page")
