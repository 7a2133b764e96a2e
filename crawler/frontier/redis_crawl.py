"""A shared crawl as a whole: creating or joining it, its counters, its robots.txt.

A crawl is created by the first member given seeds (or a seed list) in an
empty database: its settings (the ones every member must share), its id and
the format of its entries go into the ``meta`` hash, its seeds into the
queues, its seed list after them (SeedListKeys). Every later member joins it:
its seeds must be the crawl's (another crawl in the same database is refused),
and the crawl's shared settings replace its own.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, NothingToDo
from crawler.frontier.politeness import first_limit
from crawler.frontier.redis_codec import (
    ENTRY_FORMAT,
    PREFIX,
    SHARED_SETTINGS,
    check_format,
    enqueue_args,
    nested_counters,
    shared_settings,
    stable_fingerprint,
    with_shared_settings,
)
from crawler.frontier.redis_link import RedisLink
from crawler.records import CrawlStats, seed_entry
from crawler.stats import Tally
from crawler.web.robots import RobotsAnswer
from crawler.web.urls import normalize, redact_url

log = logging.getLogger(__name__)

# How long the ``listing`` key outlives the last batch its member queued: a member that
# stops while it reads its seed list lets the others go on after this.
LISTING_MS = 15_000
# Hosts a round trip when the seed list's hosts are written or read.
HOSTS_BATCH = 10_000
# How often a member waiting for another's seed list looks again.
LISTING_POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Joined:
    """A crawl joined: the member's config with the crawl's settings, the crawl's id,
    whether this member created it, and (if so) the fingerprints of its seeds."""

    config: CrawlConfig
    crawl_id: str
    created: bool
    seeds: tuple[int, ...] = ()


def common_args(config: CrawlConfig) -> list[Any]:
    """The ARGV every script starts with: key prefix, per-host limit, the limit until
    robots.txt is known, delay ms, max pages or -1."""
    limit = first_limit(config.per_host, robots_first=not config.ignore_robots)
    max_pages = -1 if config.max_pages is None else config.max_pages
    return [PREFIX, config.per_host, limit, int(config.delay * 1000), max_pages]


async def join(link: RedisLink, config: CrawlConfig, host_cap: int) -> Joined:
    """Create the crawl (given seeds or a seed list, in an empty database) or join the
    one there."""
    await link.check_server()
    meta = await _meta(link)
    created: tuple[int, ...] | None = None
    listing = config.input_file is not None or config.seed_stream is not None
    if not meta and (config.seeds or listing) and not config.resume:
        created = await _create(link, config, host_cap, listing)
        meta = await _meta(link)
    if not meta:
        raise ConfigError(f"no crawl in {link.url} to join: start one with seed URLs")
    try:
        stored = json.loads(meta["settings"])
        crawl_id = meta["id"]
    except (KeyError, ValueError):
        raise ConfigError(f"{link.url} holds {PREFIX}* keys that are not a crawl") from None
    check_format(meta, link.url)
    if config.seeds and [redact_url(seed) for seed in config.seeds] != stored["seeds"]:
        raise ConfigError(
            f"{link.url} holds another crawl (seeds {' '.join(stored['seeds'])}):"
            " use another database"
        )
    if meta.get("status") == "finished":
        raise NothingToDo(f"the crawl in {link.url} is finished; nothing to do")
    shared = with_shared_settings(config, stored)
    _warn_overrides(config, shared)
    return Joined(shared, crawl_id, created is not None, created or ())


async def _meta(link: RedisLink) -> dict[str, str]:
    meta: dict[str, str] = await link.call(lambda: link.redis.hgetall(PREFIX + "meta"))
    return meta


async def _create(
    link: RedisLink, config: CrawlConfig, host_cap: int, listing: bool
) -> tuple[int, ...] | None:
    """CREATE the crawl with its seeds (and, if ``listing``, held for this member to
    queue its seed list); their fingerprints if this member created it, else None."""
    crawl_id = f"{time.time_ns():x}"
    seeds = [
        (seed_entry(url, check=config.check), stable_fingerprint(url))
        for url in map(normalize, config.seeds)
        if url is not None
    ]
    args = [*common_args(config), json.dumps(shared_settings(config)), crawl_id, ENTRY_FORMAT]
    args += [LISTING_MS if listing else 0, host_cap, *enqueue_args(seeds, first=False)]
    created = await link.eval("create", args)
    return tuple(key for _, key in seeds) if created[0] == 1 else None


def _warn_overrides(mine: CrawlConfig, shared: CrawlConfig) -> None:
    default = CrawlConfig()
    for name in SHARED_SETTINGS:
        value = getattr(mine, name)
        chosen = getattr(shared, name)
        if name != "seeds" and value != getattr(default, name) and value != chosen:
            log.warning("%s: the shared crawl's value %r is used, not %r", name, chosen, value)


async def read_counters(link: RedisLink) -> dict[str, Any]:
    """The whole crawl's counters (Tally.counters() form) and its duration so far."""
    redis = link.redis
    flat = await link.call(lambda: redis.hgetall(PREFIX + "stats"))
    meta = await link.call(lambda: redis.hmget(PREFIX + "meta", "created"))
    seconds, micros = await link.call(lambda: redis.time())
    counters = nested_counters(flat)
    if meta[0] is not None:
        counters["duration_s"] = max(seconds + micros / 1e6 - int(meta[0]) / 1000, 0.0)
    return counters


async def read_frontier_counts(link: RedisLink) -> dict[str, int]:
    """The frontier's own counters (pending, leased, reclaimed, dead, ...)."""
    values = await link.call(lambda: link.redis.hgetall(PREFIX + "f"))
    leased = await link.call(lambda: link.redis.zcard(PREFIX + "leases"))
    counts = {name: int(value) for name, value in values.items()}
    counts["leased"] = int(leased)
    return counts


async def read_stats(link: RedisLink, *, finished: bool) -> CrawlStats:
    """The whole shared crawl's stats, as far as it has gone."""
    tally = Tally()
    tally.restore(await read_counters(link))
    counts = await read_frontier_counts(link)
    return tally.snapshot(counts.get("pending", 0), counts["leased"], finished=finished)


class SeedListKeys:
    """A shared crawl's seed list (``--input-file``): one member queues it (the one that
    created the crawl, or one given the same list after that one stopped halfway), the
    others wait for it and take the hosts it names into their scope.

    ``meta.list`` is "" while the list is not queued whole, then its SHA-256; the
    ``listing`` key lives while its reader is at work; the set ``seed_hosts`` holds
    the hosts it names.
    """

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    async def state(self) -> str | None:
        """The crawl's list: None if it was made from seeds alone, "" if its list is
        not queued whole, else the list's SHA-256."""
        value: str | None = await self._link.call(
            lambda: self._link.redis.hget(PREFIX + "meta", "list")
        )
        return value

    async def take_over(self) -> bool:
        """Become the list's reader if nobody is (the last one stopped halfway)."""
        taken = await self._link.call(
            lambda: self._link.redis.set(PREFIX + "listing", "1", px=LISTING_MS, nx=True)
        )
        return bool(taken)

    async def reading(self) -> None:
        """The reader is still at work (after each batch it queues)."""
        await self._link.call(lambda: self._link.redis.set(PREFIX + "listing", "1", px=LISTING_MS))

    async def read(self, hosts: set[str], digest: str) -> None:
        """The list is queued whole: its hosts and its hash kept, the others let go."""
        names = sorted(hosts)
        for start in range(0, len(names), HOSTS_BATCH):
            chunk = names[start : start + HOSTS_BATCH]
            await self._link.call(
                functools.partial(self._link.redis.sadd, PREFIX + "seed_hosts", *chunk)
            )
        await self._link.call(lambda: self._link.redis.hset(PREFIX + "meta", "list", digest))
        await self._link.call(lambda: self._link.redis.delete(PREFIX + "listing"))

    async def wait(self, stopping: Callable[[], bool]) -> str | None:
        """Wait while another member reads the list (unless ``stopping``); the list's
        state then (``state``)."""
        said = False
        while not stopping() and await self._link.call(
            lambda: self._link.redis.exists(PREFIX + "listing")
        ):
            if not said:
                log.info("waiting for the member that reads the crawl's seed list")
                said = True
            await asyncio.sleep(LISTING_POLL_SECONDS)
        return await self.state()

    async def hosts(self) -> set[str]:
        """The hosts the crawl's seed list names."""
        found: set[str] = set()
        cursor = 0
        while True:
            cursor, chunk = await self._link.call(
                functools.partial(
                    self._link.redis.sscan, PREFIX + "seed_hosts", cursor, count=HOSTS_BATCH
                )
            )
            found.update(chunk)
            if not cursor:
                return found


class SharedRobots:
    """The RobotsStore of a shared crawl: each host's robots.txt, fetched by one member.

    Until a host's robots.txt is stored, its in-flight limit in Redis is 1, so
    exactly one member fetches it; storing it raises the limit to --per-host.
    """

    def __init__(self, link: RedisLink, common: Callable[[], list[Any]]) -> None:
        self._link = link
        self._common = common

    async def load_robots(self, host: str) -> RobotsAnswer | None:
        value = await self._link.call(lambda: self._link.redis.get(f"{PREFIX}robots:{host}"))
        return None if value is None else RobotsAnswer.unpack(value)

    async def save_robots(self, host: str, answer: RobotsAnswer, crawl_delay: float) -> None:
        args = [*self._common(), host, answer.pack(), int(crawl_delay * 1000)]
        await self._link.eval("robots", args)
