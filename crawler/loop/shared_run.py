"""SharedRun: this process as one member of a crawl shared through Redis (``--frontier``).

Its frontier is the shared one (frontier/shared.py): opening it creates the
crawl (given seeds, in an empty database) or joins it, and the crawl's
settings in Redis settle this member's config. Its output folder holds this
member's records only (output/shared_journal.py); the counters and the
frontier are Redis's, so the final stats are the whole crawl's.
"""

from __future__ import annotations

from collections.abc import Callable

from crawler.config import CrawlConfig
from crawler.errors import FrontierUnavailable
from crawler.frontier.politeness import Politeness
from crawler.frontier.shared import SharedFrontier
from crawler.loop.recording import CURRENT_LEASE, Recorder
from crawler.loop.runs import Opened
from crawler.output.shared_journal import SharedJournal
from crawler.records import CrawlStats
from crawler.stats import Tally


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
