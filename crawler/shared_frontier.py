"""The Redis frontier: one crawl shared by workers on many machines (``--frontier redis://...``).

Layer 2: imports config, errors, frontier, redis_scripts, robots, stats and
urls. It is the Frontier protocol of frontier.py over Redis (7.0 or later):
the engine leases, acks and requeues exactly as with the in-memory frontier.
Every change to the frontier is one Lua script (redis_scripts.py), so each
is atomic, and the scripts read Redis's clock (TIME), so every worker keeps
each host's gap on one clock.

Started from shared/notes/redis-frontier.md; what changed, and why:
- Politeness is whole in Redis, not only the gap: one small hash per host
  (``h:<host>``) holds its last start, not-before (Retry-After), gap (--delay
  or Crawl-delay), back-off (doubled on 429/503, halved on success, as
  politeness.py does in one process) and in-flight limit. The limit is 1 until
  the host's robots.txt is known, so exactly one worker fetches it (no lock
  key), and ``save_robots`` stores it and raises the limit to --per-host.
  A gap gets redis_scripts.GAP_MARGIN_MS more: requests leave from different machines a
  few ms after their leases, and the server must still see the whole gap.
- LEASE takes up to n entries per call, several from one host when its gap
  allows (the engine asks for as many as it has idle workers). ACK carries
  continuations (retries, redirect hops, the entry deferred by robots.txt):
  they go back first in their host's queue, or into a ``delayed`` set for a
  retry's own wait, in the same script that frees the lease.
- Leases are short (LEASE_SECONDS) and kept alive by a heartbeat from the
  worker that holds them, so a slow download or extractor never loses its
  lease, and a killed worker's URLs come back within seconds, not minutes.
- Queued entries are ``reclaims<TAB>kind<TAB>payload``: kind p (a page: counts
  toward --max-pages), s (a sitemap) or c (a continuation); the payload is
  ``depth<TAB>url<TAB>referrer``, or JSON for a continuation. No pickles.
- Adds and acks are group-committed: whatever the event loop produced while
  the last round trip was out goes in the next one, ENQUEUE before ACK, so a
  page's links are queued before it leaves the lease set. Each worker keeps
  its own seen set (8 bytes a URL) in front of Redis's, so a link it already
  sent is not sent again.
- The seen set is 16,384 buckets of 64-bit fingerprints (BLAKE2b), as Redis
  intsets: 10.1 bytes a URL at 1M URLs, fewer as they fill (512 per bucket, 8M), by
  benchmarks/redis_memory.py. Beyond that buckets turn into hash tables.
- With --max-pages, ENQUEUE stops queueing new pages once twice that many
  were (redis_scripts.ADMISSION_FACTOR, the note's admission budget): LEASE could never
  take more, so Redis does not hold a big site's millions of links.
- Settings that workers must agree on live in the crawl's ``meta`` hash;
  joiners take them. One crawl per Redis database (keys ``c:{crawl}:...``;
  the hash tag keeps every key of the crawl in one Cluster slot).
- Scripts that only free memory or move entries run even when Redis is at
  ``maxmemory`` (allow-oom); ENQUEUE does not (a shebang script is refused
  whole, never half done): its links are counted as ``refused_links`` and
  logged, and the crawl goes on with what is queued. An evicting
  maxmemory-policy is refused at start, since it would drop URLs silently.
- A Redis that stops answering is retried with back-off for OUTAGE_SECONDS,
  then FrontierUnavailable (exit 5). Unacked leases come back to whichever
  worker carries on; acked work is in Redis.

Invariants (over the in-memory ones of frontier.py):
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
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, FrontierUnavailable, NothingToDo
from crawler.frontier import Entry, Lease, SeenSet
from crawler.redis_scripts import SCRIPTS
from crawler.robots import RobotsAnswer
from crawler.stats import Tally
from crawler.urls import host_key, normalize

log = logging.getLogger(__name__)

PREFIX = "c:{crawl}:"
BUCKETS = 16_384
# Entries one host may have queued; more are refused (counted as capped, not
# marked seen, so a later link can bring them back).
HOST_CAP = 1_000_000
LEASE_SECONDS = 10.0
HEARTBEAT_SECONDS = 2.0
RECLAIM_SECONDS = 2.0
# A URL whose lease expired this many times (its workers died) goes to the dead list.
MAX_ATTEMPTS = 3
OUTAGE_SECONDS = 20.0
# Longest sleep before asking Redis again when nothing was due.
POLL_SECONDS = 0.05
# Settings every worker of a crawl shares; the rest are each worker's own.
SHARED_SETTINGS = (
    "seeds",
    "allow_domain",
    "keep_query_order",
    "max_pages",
    "max_depth",
    "per_host",
    "delay",
    "ignore_robots",
    "ignore_nofollow",
    "no_sitemaps",
    "user_agent",
    "retries",
    "max_retry_after",
    "allow",
    "deny",
)


def redacted(url: str) -> str:
    """``url`` with a password replaced by ***, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def fingerprint(url: str) -> int:
    """A URL's 64-bit fingerprint, the same in every process and on every machine."""
    digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def encode(entry: Entry) -> str:
    """An entry as a queue item (its reclaim count 0): no pickles, a page is one short line."""
    if entry.is_continuation():
        fields_ = [getattr(entry, item.name) for item in fields(Entry)]
        return "0\tc\t" + json.dumps(fields_, ensure_ascii=False, separators=(",", ":"))
    kind = "p" if entry.kind == "page" else "s"
    referrer = entry.referrer or ""
    if "\t" in entry.url or "\t" in referrer or "\n" in entry.url + referrer:
        payload = json.dumps([entry.url, entry.depth, entry.referrer, entry.kind])
        return f"0\t{kind}\t{payload}"
    return f"0\t{kind}\t{entry.depth}\t{entry.url}\t{referrer}"


def decode(item: str) -> Entry:
    _, kind, payload = item.split("\t", 2)
    if kind == "c":
        values = json.loads(payload)
        values[7] = tuple(values[7])  # hops
        return Entry(*values)
    if payload.startswith("["):
        url, depth, referrer, entry_kind = json.loads(payload)
        return Entry(url, depth, referrer, entry_kind)
    depth, url, referrer = payload.split("\t", 2)
    return Entry(url, int(depth), referrer or None, "page" if kind == "p" else "sitemap")


def _shared_settings(config: CrawlConfig) -> dict[str, Any]:
    values = {name: getattr(config, name) for name in SHARED_SETTINGS}
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def _flat_counters(counters: dict[str, Any]) -> dict[str, int]:
    flat: dict[str, int] = {}
    for name, value in counters.items():
        if name in ("status_counts", "error_counts"):
            prefix = "status:" if name == "status_counts" else "error:"
            flat.update({prefix + key: count for key, count in value.items()})
        elif name != "duration_s":
            flat[name] = value
    return flat


def nested_counters(flat: dict[str, str]) -> dict[str, Any]:
    """The stats hash back in Tally.counters() form."""
    counters: dict[str, Any] = {"status_counts": {}, "error_counts": {}}
    for name, value in flat.items():
        number = int(value)
        if name.startswith("status:"):
            counters["status_counts"][name[7:]] = number
        elif name.startswith("error:"):
            counters["error_counts"][name[6:]] = number
        else:
            counters[name] = number
    return counters


class _Settle:
    """Adds and acks waiting for the next round trip (group commit)."""

    def __init__(self) -> None:
        # Per add(): its ENQUEUE arguments (URLs encoded once), how many, its answer.
        self.adds: list[tuple[list[Any], int, asyncio.Future[list[int]]]] = []
        self.acks: list[tuple[Any, ...]] = []


class SharedFrontier:
    """The Frontier protocol over Redis; also robots.txt and counters shared by a crawl."""

    def __init__(
        self,
        url: str,
        tally: Tally,
        *,
        on_dead: Callable[[Entry], Awaitable[None]] | None = None,
        lease_seconds: float = LEASE_SECONDS,
        outage_seconds: float = OUTAGE_SECONDS,
        host_cap: int = HOST_CAP,
    ) -> None:
        # What messages, logs and frontier.json show: the URL without its password.
        self.url = redacted(url)
        self._tally = tally
        self._on_dead = on_dead
        self._lease_ms = int(lease_seconds * 1000)
        self._outage = outage_seconds
        self._host_cap = host_cap
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5
        )
        self._scripts = SCRIPTS
        self._shas: dict[str, str] = {}
        self._common: list[Any] = []
        self._backoff_cap_ms = 60_000
        self._seen = SeenSet()
        self._settle = _Settle()
        self._settling: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self._held: dict[int, Lease] = {}
        self._pushed: dict[str, int] = {}
        self._pending = 0
        self._closed = False
        self._failure: Exception | None = None
        self._done = False
        self.created = False
        self.crawl_id = ""
        self._warned_full = False
        self._chores: list[asyncio.Task[None]] = []

    # Opening and closing.

    async def open(self, config: CrawlConfig) -> CrawlConfig:
        """Create the crawl (when given seeds and Redis has none) or join it.

        Returns ``config`` with the crawl's shared settings. NothingToDo if it
        is finished; ConfigError if it is another crawl or there is none to join.
        """
        info = await self._call(lambda: self._redis.info("server"))
        version = tuple(int(part) for part in str(info.get("redis_version", "0")).split(".")[:2])
        if version < (7, 0):
            raise ConfigError(f"{self.url}: Redis {info.get('redis_version')} is too old (7.0+)")
        await self._check_eviction()
        settings = _shared_settings(config)
        meta = await self._call(lambda: self._redis.hgetall(PREFIX + "meta"))
        if not meta and config.seeds and not config.resume:
            self._configure(config)
            crawl_id = f"{time.time_ns():x}"
            seeds = [
                (Entry(url, 0), fingerprint(url))
                for url in map(normalize, config.seeds)
                if url is not None
            ]
            args = [*self._common, json.dumps(settings), crawl_id, self._host_cap]
            created = await self._eval("create", args + self._enqueue_args(seeds, front=False))
            if created[0] == 1:
                self.created = True
                self._seen.update(key for _, key in seeds)
            meta = await self._call(lambda: self._redis.hgetall(PREFIX + "meta"))
        if not meta:
            raise ConfigError(f"no crawl in {self.url} to join: start one with seed URLs")
        try:
            stored = json.loads(meta["settings"])
            self.crawl_id = meta["id"]
        except (KeyError, ValueError):
            raise ConfigError(f"{self.url} holds {PREFIX}* keys that are not a crawl") from None
        if config.seeds and list(config.seeds) != stored["seeds"]:
            raise ConfigError(
                f"{self.url} holds another crawl (seeds {' '.join(stored['seeds'])}):"
                " use another database"
            )
        if meta.get("status") == "finished":
            raise NothingToDo(f"the crawl in {self.url} is finished; nothing to do")
        shared = replace(config, **{key: _setting(key, value) for key, value in stored.items()})
        self._warn_overrides(config, shared)
        self._configure(shared)
        self._chores = [
            asyncio.create_task(self._every(HEARTBEAT_SECONDS, self._heartbeat), name="heartbeat"),
            asyncio.create_task(self._every(RECLAIM_SECONDS, self.reclaim), name="reclaim"),
        ]
        return shared

    async def _check_eviction(self) -> None:
        try:
            policy = await self._redis.config_get("maxmemory-policy")
        except redis_errors.ResponseError:
            return  # CONFIG may be renamed or refused; then it cannot be checked
        name = policy.get("maxmemory-policy", "noeviction")
        if name != "noeviction":
            raise ConfigError(
                f"{self.url} evicts keys (maxmemory-policy {name}), which would lose URLs"
                " silently: set maxmemory-policy noeviction"
            )

    def _configure(self, config: CrawlConfig) -> None:
        first_limit = config.per_host if config.ignore_robots else 1
        max_pages = -1 if config.max_pages is None else config.max_pages
        self._common = [PREFIX, config.per_host, first_limit, int(config.delay * 1000), max_pages]
        self._backoff_cap_ms = int(config.max_retry_after * 1000)

    @staticmethod
    def _warn_overrides(mine: CrawlConfig, shared: CrawlConfig) -> None:
        default = CrawlConfig()
        for name in SHARED_SETTINGS:
            value = getattr(mine, name)
            chosen = getattr(shared, name)
            if name != "seeds" and value != getattr(default, name) and value != chosen:
                log.warning("%s: the shared crawl's value %r is used, not %r", name, chosen, value)

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
                await self._settle_all()
        finally:
            if self._settling is not None and not self._settling.done():
                self._settling.cancel()
            await self._redis.aclose()

    async def _settle_all(self) -> None:
        if self._settling is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._settling
        await self._settle_now()

    # The Frontier protocol.

    def pending(self) -> int:
        return self._pending

    def in_flight(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._closed = True
        self._settled.set()

    def is_finished(self) -> bool:
        return self._done

    async def add(self, entries: Iterable[Entry], *, front: bool = False) -> list[Entry]:
        keyed = ((entry, fingerprint(entry.url)) for entry in entries)
        fresh = [(entry, key) for entry, key in keyed if key not in self._seen]
        if not fresh:
            return []
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._settle.adds.append((self._enqueue_args(fresh, front), len(fresh), future))
        self._start_settling()
        results = await future
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
        while not self._closed:
            # This worker's own acks go first, so its hosts' slots are free in Redis.
            result = await self._settle_now(("lease", [*self._common, limit, self._lease_ms]))
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
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._settled.wait()
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
        self._held.pop(lease.ticket, None)
        self._settle.acks.append(
            (
                lease.ticket,
                "" if status is None else status,
                "" if retry_after is None else int(retry_after * 1000),
                "" if continuation is None else encode(continuation),
                int(delay * 1000),
            )
        )
        self._start_settling()

    # robots.txt, once per host for the whole crawl.

    async def load_robots(self, host: str) -> RobotsAnswer | None:
        value = await self._call(lambda: self._redis.get(f"{PREFIX}robots:{host}"))
        return None if value is None else RobotsAnswer.unpack(value)

    async def save_robots(self, host: str, answer: RobotsAnswer, crawl_delay: float) -> None:
        args = [*self._common, host, answer.pack(), int(crawl_delay * 1000)]
        await self._eval("robots", args)

    # Shared counters.

    async def counters(self) -> dict[str, Any]:
        """The whole crawl's counters (Tally.counters() form) and its duration so far."""
        await self._settle_all()
        flat = await self._call(lambda: self._redis.hgetall(PREFIX + "stats"))
        meta = await self._call(lambda: self._redis.hmget(PREFIX + "meta", "created"))
        seconds, micros = await self._call(lambda: self._redis.time())
        counters = nested_counters(flat)
        if meta[0] is not None:
            counters["duration_s"] = max(seconds + micros / 1e6 - int(meta[0]) / 1000, 0.0)
        return counters

    async def frontier_counts(self) -> dict[str, int]:
        values = await self._call(lambda: self._redis.hgetall(PREFIX + "f"))
        leased = await self._call(lambda: self._redis.zcard(PREFIX + "leases"))
        counts = {name: int(value) for name, value in values.items()}
        counts["leased"] = int(leased)
        return counts

    # Group commit of adds and acks.

    def _start_settling(self) -> None:
        if self._settling is None or self._settling.done():
            self._settling = asyncio.create_task(self._settle_loop(), name="settle")

    async def _settle_loop(self) -> None:
        while (self._settle.adds or self._settle.acks) and self._failure is None:
            await self._guarded(self._settle_now())

    async def _settle_now(self, then: tuple[str, list[Any]] | None = None) -> Any:
        """Send the waiting adds and acks (ENQUEUE before ACK) and the counters, then
        ``then`` (a LEASE) in the same round trip; return ``then``'s result."""
        batch, self._settle = self._settle, _Settle()
        deltas = self._counter_deltas()
        calls = [("enqueue", [*self._common, self._host_cap, *args]) for args, _, _ in batch.adds]
        if batch.acks or deltas:
            args = [*self._common, self._backoff_cap_ms, len(batch.acks)]
            args += [value for ack in batch.acks for value in ack]
            args += [value for pair in deltas.items() for value in pair]
            calls.append(("ack", args))
        if then is not None:
            calls.append(then)
        if not calls:
            return None
        try:
            results = await self._pipeline(calls)
        except BaseException as error:
            for _, _, future in batch.adds:
                if not future.done():
                    future.set_exception(error)
            raise
        if batch.acks or deltas:
            self._commit_deltas(deltas, results[len(batch.adds)])
        for (_, count, future), result in zip(batch.adds, results, strict=False):
            if isinstance(result, redis_errors.ResponseError):
                self._refused(count, result)
                result = [0] * count
            if not future.done():
                future.set_result([int(value) for value in result])
        self._settled.set()
        if then is None:
            return None
        if isinstance(results[-1], Exception):
            raise results[-1]
        return results[-1]

    def _refused(self, count: int, error: Exception) -> None:
        """ENQUEUE refused (Redis at maxmemory): back-pressure, counted and said, never silent."""
        if not isinstance(error, redis_errors.OutOfMemoryError):
            raise error
        if not self._warned_full:
            self._warned_full = True
            log.warning("%s is full (maxmemory): new links are refused and counted", self.url)
        self._tally.refused_links += count

    def _counter_deltas(self) -> dict[str, int]:
        flat = _flat_counters(self._tally.counters())
        return {
            name: value - self._pushed.get(name, 0)
            for name, value in flat.items()
            if value != self._pushed.get(name, 0)
        }

    def _commit_deltas(self, deltas: dict[str, int], result: object) -> None:
        if isinstance(result, Exception):
            raise result
        for name, delta in deltas.items():
            self._pushed[name] = self._pushed.get(name, 0) + delta

    @staticmethod
    def _enqueue_args(entries: list[tuple[Entry, int]], front: bool) -> list[Any]:
        """(bucket, fingerprint, host, item, front) per entry, given with its fingerprint."""
        args: list[Any] = []
        flag = "1" if front else "0"
        for entry, key in entries:
            args += [key & (BUCKETS - 1), key, host_key(entry.url), encode(entry), flag]
        return args

    # Chores: keep this worker's leases alive, take back dead workers' leases.

    async def _every(self, seconds: float, chore: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._guarded(chore())

    async def _guarded(self, work: Awaitable[None]) -> None:
        """A background failure (Redis gone for good) stops the worker: lease() raises it."""
        try:
            await work
        except Exception as error:
            self._failure = error
            self.close()

    async def _heartbeat(self) -> None:
        if self._held:
            await self._eval("heartbeat", [*self._common, self._lease_ms, *self._held])

    async def reclaim(self) -> None:
        """Take back expired leases (their workers died); past MAX_ATTEMPTS, give up on them."""
        args = [*self._common, 1000, MAX_ATTEMPTS]
        dead = await self._eval("reclaim", args)
        for host, item in zip(dead[::2], dead[1::2], strict=True):
            entry = decode(item)
            log.warning(
                "%s (%s): its lease expired %d times, the workers holding it died: given up",
                entry.url,
                host,
                MAX_ATTEMPTS,
            )
            if self._on_dead is not None:
                await self._on_dead(entry)

    async def _eval(self, name: str, args: list[Any]) -> Any:
        return (await self._pipeline([(name, args)]))[0]

    async def _pipeline(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Run scripts in one round trip (loading them again after a Redis restart).

        A script's own error (an OOM refusal) is returned in its place.
        """

        async def attempt() -> list[Any]:
            if len(self._shas) < len(self._scripts):
                for script, body in self._scripts.items():
                    self._shas[script] = await self._redis.script_load(body)
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, args in calls:
                    pipe.evalsha(self._shas[name], 0, *args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if any(isinstance(result, redis_errors.NoScriptError) for result in results):
                self._shas.clear()
                results = await attempt()
            return results

        results: list[Any] = await self._call(attempt)
        return results

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run a Redis command, retrying with back-off while Redis is unreachable."""
        if isinstance(self._failure, FrontierUnavailable):
            raise self._failure  # already waited once: the worker is stopping
        started = time.monotonic()
        pause = 0.1
        while True:
            try:
                return await command()
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as error:
                waited = time.monotonic() - started
                if waited > self._outage:
                    self._failure = FrontierUnavailable(
                        f"{self.url} did not answer for {self._outage:.0f} s ({error}); "
                        "what was acknowledged is kept in it"
                    )
                    self.close()
                    raise self._failure from None
                if pause == 0.1:  # once per outage
                    log.warning("%s: %s; retrying for %.0f s", self.url, error, self._outage)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)


def _setting(name: str, value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
