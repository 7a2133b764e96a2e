"""SharedRun: this process as one member of a crawl shared through Redis (``--frontier``).

Its frontier is the shared one (frontier/shared.py): opening it creates the
crawl (given seeds, in an empty database) or joins it, and the crawl's
settings in Redis settle this member's config. Its output folder holds this
member's records only (output/shared_journal.py); the counters and the
frontier are Redis's, so the final stats are the whole crawl's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, FrontierUnavailable
from crawler.frontier.politeness import Politeness
from crawler.frontier.shared import SharedFrontier
from crawler.loop.recording import CURRENT_LEASE, Recorder
from crawler.loop.runs import Opened
from crawler.loop.seeding import (
    has_seed_list,
    read_seed_list,
    seed_list_digest,
    with_seed_hosts,
)
from crawler.output.shared_journal import SharedJournal
from crawler.records import CrawlStats, Entry
from crawler.stats import Tally

log = logging.getLogger(__name__)


async def _with_seed_list(
    frontier: SharedFrontier, config: CrawlConfig, tally: Tally, stopping: Callable[[], bool]
) -> CrawlConfig:
    """The crawl's seed list: queued by this member if it created the crawl (or if the
    member that did stopped halfway and this one is given the list), else waited for
    (a list given here must be the same); its hosts in scope either way."""
    keys = frontier.seed_list
    given = has_seed_list(config)
    state = await keys.state()
    if state is None:
        if given:
            raise ConfigError(
                f"{frontier.url} holds a crawl made from seed URLs, not from a seed list:"
                " use another database, or join it without --input-file",
                setting="input_file",
            )
        return config
    read_here = False
    while not state and given and not stopping():
        if frontier.created or await keys.take_over():
            read_here = await _read_list(frontier, config, tally, stopping)
            break
        state = await keys.wait(stopping)
    if given and not read_here and state and await seed_list_digest(config) != state:
        raise ConfigError(
            f"{frontier.url} holds a crawl made from another seed list: use another"
            " database, or join it with the same list (or none)",
            setting="input_file",
        )
    if not given and not await keys.wait(stopping) and not stopping():
        log.warning(
            "the crawl's seed list was not queued whole (the member reading it stopped):"
            " give one member the same --input-file to queue the rest"
        )
    return with_seed_hosts(config, await keys.hosts())


async def _read_list(
    frontier: SharedFrontier, config: CrawlConfig, tally: Tally, stopping: Callable[[], bool]
) -> bool:
    """Queue the seed list into the shared crawl; whether it was read to its end."""
    keys = frontier.seed_list

    async def add(entries: list[Entry]) -> None:
        await frontier.add(entries)
        await keys.reading()

    listed = await read_seed_list(config, add, stopping)
    tally.seeds_skipped += listed.skipped
    if listed.digest:
        await keys.read(listed.hosts, listed.digest)
    return bool(listed.digest)


class SharedRun:
    """One member of a shared crawl."""

    def __init__(self, config: CrawlConfig) -> None:
        assert config.frontier is not None
        self._config = config
        self._frontier: SharedFrontier | None = None
        self._journal: SharedJournal | None = None

    async def open(self, tally: Tally, stopping: Callable[[], bool]) -> Opened:
        assert self._config.frontier is not None
        frontier = self._frontier = SharedFrontier(self._config.frontier, tally)
        try:
            config = await frontier.open(self._config)
            if config.output_dir is not None:
                self._journal = SharedJournal(config)
                self._journal.start(frontier.url, frontier.crawl_id)
            config = await _with_seed_list(frontier, config, tally, stopping)
        except BaseException:
            await frontier.aclose(settle=False)
            raise
        return Opened(
            config,
            frontier,
            MemberPoliteness(config, frontier),
            sink=self._journal,
            robots_store=frontier.robots,
            after_ack=frontier.after_ack,
        )

    def started(self, recorder: Recorder) -> None:
        pass

    async def close(self, stats: CrawlStats) -> CrawlStats:
        """The whole crawl's stats, from Redis; this member's folder finished."""
        frontier = self._frontier
        if frontier is None:
            return stats
        try:
            stats = await frontier.crawl_stats()
            await frontier.aclose()
        except FrontierUnavailable:
            await frontier.aclose(settle=False)
            raise
        finally:
            if self._journal is not None:
                self._journal.finish(stats)
        return stats


class MemberPoliteness(Politeness):
    """A member's slots: the gap kept among its own requests as they are sent, and, for
    a request that leaves late after its lease, between members too (Redis's clock)."""

    def __init__(self, config: CrawlConfig, frontier: SharedFrontier) -> None:
        super().__init__(
            config.per_host,
            config.delay,
            robots_first=True,
            backoff_cap=config.max_retry_after,
        )
        self._frontier = frontier

    async def pace(self, host: str) -> None:
        await super().pace(host)
        lease = CURRENT_LEASE.get()
        if lease is not None and lease.host == host:
            await self._frontier.gap.keep(lease, self.slot(host).gap())
