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
  few ms after their leases, and the server must still see the whole gap.
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
- Adds and acks are group-committed: whatever the event loop produced while
  the last round trip was out goes in the next one, ENQUEUE before ACK, so a
  page's links are queued before it leaves the lease set. Each member keeps
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
4. An ack whose lease was reclaimed (it expired) changes nothing but a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, FrontierUnavailable, NothingToDo
from crawler.frontier.politeness import first_limit
from crawler.frontier.protocol import Lease
from crawler.frontier.redis_codec import (
    ENTRY_FORMAT,
    PREFIX,
    SHARED_SETTINGS,
    check_format,
    decode,
    encode,
    enqueue_args,
    nested_counters,
    shared_settings,
    stable_fingerprint,
    with_shared_settings,
)
from crawler.frontier.redis_commit import GroupCommit
from crawler.frontier.redis_link import OUTAGE_SECONDS, RedisLink
from crawler.records import CrawlStats, Entry
from crawler.stats import Tally
from crawler.web.robots import RobotsAnswer
from crawler.web.seen import SeenSet
from crawler.web.urls import normalize

log = logging.getLogger(__name__)

# Entries one host may have queued; more are refused (counted as capped, not
# marked seen, so a later link can bring them back).
HOST_CAP = 1_000_000
LEASE_SECONDS = 10.0
HEARTBEAT_SECONDS = 2.0
RECLAIM_SECONDS = 2.0
# A URL whose lease expired this many times (its holders died) is given up.
MAX_ATTEMPTS = 3
# Longest sleep before asking Redis again when nothing was due.
POLL_SECONDS = 0.05


class SharedFrontier:
    """The Frontier protocol over Redis; also robots.txt and counters shared by a crawl."""

    def __init__(
        self,
        url: str,
        tally: Tally,
        *,
        lease_seconds: float = LEASE_SECONDS,
        outage_seconds: float = OUTAGE_SECONDS,
        host_cap: int = HOST_CAP,
    ) -> None:
        self._link = RedisLink(url, outage_seconds)
        self.url = self._link.url
        self._tally = tally
        self._lease_ms = int(lease_seconds * 1000)
        self._common: list[Any] = []
        self._commit = GroupCommit(self._link, tally, lambda: self._common, self._fail)
        self._commit.host_cap = host_cap
        self._seen = SeenSet()
        self._held: dict[int, Lease] = {}
        self._given_up: deque[Lease] = deque()
        self._pending = 0
        self._closed = False
        self._failure: Exception | None = None
        self._done = False
        self.created = False
        self.crawl_id = ""
        self._chores: list[asyncio.Task[None]] = []

    # Opening and closing.

    async def open(self, config: CrawlConfig) -> CrawlConfig:
        """Create the crawl (when given seeds and Redis has none) or join it.

        Returns ``config`` with the crawl's shared settings. NothingToDo if it
        is finished; ConfigError if it is another crawl or there is none to join.
        """
        await self._link.check_server()
        meta = await self._meta()
        if not meta and config.seeds and not config.resume:
            await self._create(config)
            meta = await self._meta()
        if not meta:
            raise ConfigError(f"no crawl in {self.url} to join: start one with seed URLs")
        try:
            stored = json.loads(meta["settings"])
            self.crawl_id = meta["id"]
        except (KeyError, ValueError):
            raise ConfigError(f"{self.url} holds {PREFIX}* keys that are not a crawl") from None
        check_format(meta, self.url)
        if config.seeds and list(config.seeds) != stored["seeds"]:
            raise ConfigError(
                f"{self.url} holds another crawl (seeds {' '.join(stored['seeds'])}):"
                " use another database"
            )
        if meta.get("status") == "finished":
            raise NothingToDo(f"the crawl in {self.url} is finished; nothing to do")
        shared = with_shared_settings(config, stored)
        _warn_overrides(config, shared)
        self._configure(shared)
        self._chores = [
            asyncio.create_task(self._every(HEARTBEAT_SECONDS, self._heartbeat), name="heartbeat"),
            asyncio.create_task(self._every(RECLAIM_SECONDS, self.reclaim), name="reclaim"),
        ]
        return shared

    async def _meta(self) -> dict[str, str]:
        meta: dict[str, str] = await self._link.call(
            lambda: self._link.redis.hgetall(PREFIX + "meta")
        )
        return meta

    async def _create(self, config: CrawlConfig) -> None:
        self._configure(config)
        crawl_id = f"{time.time_ns():x}"
        seeds = [
            (Entry(url, 0), stable_fingerprint(url))
            for url in map(normalize, config.seeds)
            if url is not None
        ]
        args = [*self._common, json.dumps(shared_settings(config)), crawl_id, ENTRY_FORMAT]
        args += [self._commit.host_cap, *enqueue_args(seeds, first=False)]
        created = await self._link.eval("create", args)
        if created[0] == 1:
            self.created = True
            self._seen.update(key for _, key in seeds)

    def _configure(self, config: CrawlConfig) -> None:
        limit = first_limit(config.per_host, robots_first=not config.ignore_robots)
        max_pages = -1 if config.max_pages is None else config.max_pages
        self._common = [PREFIX, config.per_host, limit, int(config.delay * 1000), max_pages]
        self._commit.backoff_cap_ms = int(config.max_retry_after * 1000)

    async def aclose(self, *, settle: bool = True) -> None:
        """Send what is waiting (acks, counters) unless told not to, stop the chores,
        close the connection."""
        self._closed = True
        for chore in self._chores:
            chore.cancel()
        for chore in self._chores:
            with contextlib.suppress(asyncio.CancelledError):
                await chore
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
        self._commit.settled.set()

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
            now, done, due, self._pending = (int(value) for value in result[:4])
            leases = []
            for ticket, host, item in zip(result[5::3], result[6::3], result[7::3], strict=True):
                lease = Lease(decode(item), host, int(ticket))
                self._held[lease.ticket] = lease
                leases.append(lease)
            if leases:
                return leases
            if done:
                self._done = True
                return []
            wait = POLL_SECONDS if due < 0 else min(max(due - now, 1) / 1000, POLL_SECONDS)
            self._commit.settled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._commit.settled.wait()
        if self._failure is not None:
            raise self._failure
        return []

    async def ack(self, lease: Lease, status: int | None, retry_after: float | None) -> None:
        self._queue_ack(lease, status, retry_after, None, 0.0)

    async def requeue(
        self,
        lease: Lease,
        entry: Entry,
        status: int | None,
        retry_after: float | None,
        delay: float = 0.0,
    ) -> None:
        self._queue_ack(lease, status, retry_after, entry, delay)

    def _queue_ack(
        self,
        lease: Lease,
        status: int | None,
        retry_after: float | None,
        continuation: Entry | None,
        delay: float,
    ) -> None:
        if lease.given_up:  # already out of Redis, in its dead list
            return
        self._held.pop(lease.ticket, None)
        self._commit.ack(
            (
                lease.ticket,
                "" if status is None else status,
                "" if retry_after is None else int(retry_after * 1000),
                "" if continuation is None else encode(continuation),
                int(delay * 1000),
            )
        )

    # robots.txt, once per host for the whole crawl.

    async def load_robots(self, host: str) -> RobotsAnswer | None:
        value = await self._link.call(lambda: self._link.redis.get(f"{PREFIX}robots:{host}"))
        return None if value is None else RobotsAnswer.unpack(value)

    async def save_robots(self, host: str, answer: RobotsAnswer, crawl_delay: float) -> None:
        args = [*self._common, host, answer.pack(), int(crawl_delay * 1000)]
        await self._link.eval("robots", args)

    # The whole crawl's counters.

    async def counters(self) -> dict[str, Any]:
        """The whole crawl's counters (Tally.counters() form) and its duration so far."""
        await self._commit.all()
        redis = self._link.redis
        flat = await self._link.call(lambda: redis.hgetall(PREFIX + "stats"))
        meta = await self._link.call(lambda: redis.hmget(PREFIX + "meta", "created"))
        seconds, micros = await self._link.call(lambda: redis.time())
        counters = nested_counters(flat)
        if meta[0] is not None:
            counters["duration_s"] = max(seconds + micros / 1e6 - int(meta[0]) / 1000, 0.0)
        return counters

    async def frontier_counts(self) -> dict[str, int]:
        redis = self._link.redis
        values = await self._link.call(lambda: redis.hgetall(PREFIX + "f"))
        leased = await self._link.call(lambda: redis.zcard(PREFIX + "leases"))
        counts = {name: int(value) for name, value in values.items()}
        counts["leased"] = int(leased)
        return counts

    async def crawl_stats(self) -> CrawlStats:
        """The whole shared crawl's stats, as far as it has gone."""
        tally = Tally()
        tally.restore(await self.counters())
        counts = await self.frontier_counts()
        return tally.snapshot(counts.get("pending", 0), counts["leased"], finished=self._done)

    # Chores: keep this member's leases alive, take back dead members' leases.

    async def _every(self, seconds: float, chore: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await chore()
            except Exception as error:
                self._fail(error)

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
        dead = await self._link.eval("reclaim", [*self._common, 1000, MAX_ATTEMPTS])
        for host, item in zip(dead[::2], dead[1::2], strict=True):
            entry = decode(item)
            log.warning(
                "%s (%s): its lease expired %d times, the processes holding it died: given up",
                entry.url,
                host,
                MAX_ATTEMPTS,
            )
            self._given_up.append(Lease(entry, host, given_up=True))
        if dead:
            self._commit.settled.set()


def _warn_overrides(mine: CrawlConfig, shared: CrawlConfig) -> None:
    default = CrawlConfig()
    for name in SHARED_SETTINGS:
        value = getattr(mine, name)
        chosen = getattr(shared, name)
        if name != "seeds" and value != getattr(default, name) and value != chosen:
            log.warning("%s: the shared crawl's value %r is used, not %r", name, chosen, value)
