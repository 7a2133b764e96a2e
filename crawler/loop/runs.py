"""How a run opens and closes: the run modes behind one small interface.

The engine (engine.py) is only the loop; a Run gives it what the loop works
on and takes back what it leaves:

- ``open(tally)`` settles the run's config once, before the loop starts
  (a resumed crawl's seeds and scope come from its state.sqlite, a shared
  crawl's settings from Redis), and returns the frontier, the sink of its
  records, the politeness slots, where robots.txt is shared, and the seeds
  to queue (none when the frontier already holds the crawl);
- ``started(recorder)`` tells it the loop is about to run;
- ``close(stats)`` writes what is left and returns the run's final stats
  (a shared crawl's are the whole crawl's).

The modes: LocalRun (one process: a new, resumed or incremental crawl
journaled to state.sqlite, or the library's crawl with no output folder),
SharedRun (one member of a crawl shared through Redis, ``--frontier``),
and, in procs/child.py, one process of the multiprocessing front.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from crawler.config import CrawlConfig
from crawler.frontier.memory import MemoryFrontier
from crawler.frontier.politeness import Politeness, SharedSlot
from crawler.frontier.protocol import Frontier, HostBudget
from crawler.loop.hosts import RobotsStore
from crawler.loop.recording import AfterAck, Recorder
from crawler.loop.seeding import has_seed_list, read_seed_list, with_seed_hosts
from crawler.output.journal import Journal, Sink
from crawler.output.spill import TempSpill
from crawler.records import CrawlStats, Entry, seed_entry
from crawler.stats import Tally
from crawler.web.urls import host_key, normalize


@dataclass(slots=True)
class Opened:
    """What a run gives the loop."""

    config: CrawlConfig
    frontier: Frontier
    politeness: Politeness
    sink: Sink | None = None
    robots_store: RobotsStore | None = None
    seeds: list[Entry] = dataclasses.field(default_factory=list)
    # Records wait for their lease's ack to hold (a shared frontier's stale acks).
    after_ack: AfterAck | None = None


class Run(Protocol):
    async def open(self, tally: Tally, stopping: Callable[[], bool]) -> Opened: ...

    def started(self, recorder: Recorder) -> None: ...

    async def close(self, stats: CrawlStats) -> CrawlStats: ...


def politeness_for(config: CrawlConfig, shared: SharedSlot | None = None) -> Politeness:
    """The crawl's per-host slots (``shared``: the one slot of a host whose URLs the
    front splits between its processes)."""
    # One request at a time to a host until it first answers: its robots.txt, or with
    # --ignore-robots its first page (HostKnowledge.heard opens the slot then).
    return Politeness(
        config.per_host,
        config.delay,
        robots_first=True,
        backoff_cap=config.max_retry_after,
        shared=shared,
    )


def seed_entries(config: CrawlConfig) -> list[Entry]:
    urls = filter(None, map(normalize, config.seeds))
    return [seed_entry(url, check=config.check) for url in urls]


class LocalRun:
    """A crawl in this process: new, resumed or incremental, journaled to its
    output folder's state.sqlite; or, with no output folder, kept in memory."""

    def __init__(self, config: CrawlConfig) -> None:
        self._config = config
        self._journal: Journal | None = None
        self._temp_spill = TempSpill()

    async def open(self, tally: Tally, stopping: Callable[[], bool]) -> Opened:
        config = self._config
        journal = restored = None
        if config.output_dir is not None:
            journal = self._journal = Journal(config, tally)
            restored = journal.start()
            config = restored.settings.applied_to(config)
        politeness = politeness_for(config)
        # No output folder (the library): the overflow goes to a temporary file.
        spill = journal if journal is not None else self._temp_spill
        # crawler check leases every page: past --max-pages the Checker checks them instead.
        max_pages = None if config.check else config.max_pages
        done = journal.done_unrecorded if journal is not None else None
        resumed = restored is not None and restored.carries_on()
        started = map(host_key, restored.pages_done) if restored is not None and resumed else ()
        host_budget = HostBudget(config.max_pages_per_host, tally, done, started)
        frontier = MemoryFrontier(
            politeness,
            max_pages=max_pages,
            spill=spill,
            host_budget=host_budget,
            on_added=spill.added,
        )
        opened = Opened(config, frontier, politeness, sink=journal)
        if restored is not None and resumed:
            # A resumed crawl whose every URL is done (it was killed as it finished)
            # has nothing pending: it finishes at once, it does not start over.
            frontier.restore(restored.seen, restored.pending, tally.pages)
        else:
            opened.seeds = seed_entries(config)
        if has_seed_list(config):
            listed = await read_seed_list(config, frontier.add, stopping)
            tally.seeds_skipped += listed.skipped
            opened.config = config = with_seed_hosts(config, listed.hosts)
            if journal is not None:
                journal.settle(config)
        return opened

    def started(self, recorder: Recorder) -> None:
        pass

    async def close(self, stats: CrawlStats) -> CrawlStats:
        self._temp_spill.close()
        if self._journal is not None:
            self._journal.finish(stats, finished=stats.finished)
        return stats
