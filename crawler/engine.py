"""The crawl loop of one event loop: dispatcher, workers, parser stage.

Layer 3: imports layers 0-2, and visit and hosts (same layer). Shape: the
dispatcher leases entries from the frontier (which hands out only hosts that
are ready) for the workers that are idle; a worker gives the lease to the
Visitor (visit.py), which fetches, sends HTML to the parser stage, queues
links and emits the record; redirects and retries come back as
continuations, so every request passes its host's politeness slot.

The frontier is the in-memory one (its state journaled to state.sqlite) or,
with --frontier, the shared one in Redis (shared_frontier.py, its results in
this worker's folder through WorkerJournal): leasing, acking and requeueing
are the same; only how a run opens (create or join) and its final stats
(the whole shared crawl's) differ.

Invariants:
1. Every lease is matched by exactly one ack or requeue, in a ``finally``; a
   visit cancelled after stop()'s grace requeues its entry (it is not done).
2. The dispatcher leases only while a worker is idle (the ``_idle``
   semaphore), so a leased entry starts at once and host gaps hold.
3. A page's links are queued before its lease is acked: the frontier can only
   look finished when nothing is in flight and nothing is queued.
4. Only entries that start a record (not redirect hops) are journaled; a
   resumed crawl redoes a redirect chain from its first URL.
5. Per-URL failures are records; anything else raised here is a bug and
   propagates out of the TaskGroup, after the output is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from crawler.config import CrawlConfig
from crawler.errors import CrawlerError, FrontierUnavailable
from crawler.fetcher import Fetcher, Response
from crawler.frontier import DONE, Entry, Frontier, Lease, MemoryFrontier, Outcome, PageBudget
from crawler.hosts import RobotsStore
from crawler.journal import Journal, Restored, Settings, Sink, WorkerJournal
from crawler.parser import ParsedPage, header_directives, parse_html
from crawler.politeness import Politeness, SharedSlot
from crawler.records import CrawlStats
from crawler.stats import Tally
from crawler.urls import Scope, host_of, normalize
from crawler.visit import RecordSink, Visitor

if TYPE_CHECKING:
    from crawler.shared_frontier import SharedFrontier

log = logging.getLogger(__name__)

# After stop(), requests in flight get this long before they are cancelled.
STOP_GRACE_SECONDS = 5.0
# The error of a record for a URL whose workers kept dying (the shared frontier gave up).
DEAD_LETTER = "dead-letter"


class Partition(Protocol):
    """What makes an engine one process of the multiprocessing front (procs.py)."""

    budget: PageBudget
    sink: Sink
    # The politeness slot of a host whose URLs the front splits between processes,
    # and where its robots.txt is shared.
    shared_slot: SharedSlot | None
    robots_store: RobotsStore | None

    def split(self, entries: Iterable[Entry]) -> tuple[list[Entry], list[Entry]]:
        """The entries this process owns, and the others, sent to their owners."""

    async def drain(self) -> None:
        """Wait while the parent is behind with what this process sent it."""

    def added(self, entries: list[Entry]) -> None:
        """Entries new to this process's seen set (the parent journals them)."""

    def idle(self) -> None:
        """This process has nothing to do until more entries come."""


class Engine:
    """One crawl in the running event loop."""

    def __init__(
        self,
        config: CrawlConfig,
        on_record: RecordSink | None = None,
        *,
        partition: Partition | None = None,
    ) -> None:
        self.config = config
        self._on_record = on_record
        self._partition = partition
        self._politeness = Politeness(
            config.per_host,
            config.delay,
            robots_first=not config.ignore_robots,
            backoff_cap=config.max_retry_after,
            shared=partition.shared_slot if partition is not None else None,
        )
        self.tally = Tally()
        self._journal = None
        self._worker_journal: WorkerJournal | None = None
        self._shared: SharedFrontier | None = None
        self._memory: MemoryFrontier | None = None
        self._frontier: Frontier
        if config.frontier is not None:
            # Imported here, as warc below: redis and warcio cost every process's
            # start-up, the front's spawned workers too, and few crawls use them.
            from crawler.shared_frontier import SharedFrontier

            self._shared = SharedFrontier(config.frontier, self.tally, on_dead=self._dead)
            self._frontier = self._shared
        else:
            if config.output_dir is not None and partition is None:
                self._journal = Journal(config, self.tally)
            self._frontier = self._memory = MemoryFrontier(
                self._politeness,
                max_pages=config.max_pages,
                spill=self._journal,
                budget=partition.budget if partition is not None else None,
                on_idle=partition.idle if partition is not None else None,
            )
        self._idle = asyncio.Semaphore(config.concurrency)
        self._work: asyncio.Queue[Lease | None] = asyncio.Queue()
        self._parse_jobs: asyncio.Queue[tuple[Response, asyncio.Future[ParsedPage]] | None]
        self._parse_jobs = asyncio.Queue(maxsize=config.concurrency)
        self._visitor: Visitor | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._grace: asyncio.TimerHandle | None = None
        # Set once the engine can take entries (a front's worker waits for it).
        self.ready = asyncio.Event()

    def stop(self) -> None:
        """Lease nothing more; pages in flight get a few seconds to finish, then are
        cancelled (they stay pending for --resume); every file is written."""
        self._frontier.close()
        if self._grace is None:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(STOP_GRACE_SECONDS, self._cancel_workers)

    def _cancel_workers(self) -> None:
        for worker in self._workers:
            worker.cancel()

    def stats(self) -> CrawlStats:
        return self.tally.snapshot(self._frontier.pending(), self._frontier.in_flight())

    async def run(self) -> CrawlStats:
        """Crawl to the end (or to a limit or stop()); return the final CrawlStats."""
        with contextlib.ExitStack() as files:
            recorder = None
            if self.config.warc is not None:
                from crawler.warc import WarcRecorder

                recorder = files.enter_context(WarcRecorder(self.config.warc)).record
            settings, restored = Settings.of(self.config), None
            if self._journal is not None:
                restored = self._journal.start()
                settings = restored.settings
            if self._shared is not None:
                settings = await self._join()
            deadline = None
            if self.config.max_time is not None:
                loop = asyncio.get_running_loop()
                deadline = loop.call_later(self.config.max_time, self.stop)
            self.tally.start()
            try:
                await self._crawl(settings, restored, recorder)
            finally:
                for timer in (deadline, self._grace):
                    if timer is not None:
                        timer.cancel()
                stats = await self._finish()
        return stats

    async def _join(self) -> Settings:
        """Create or join the shared crawl; its settings become this engine's."""
        assert self._shared is not None
        try:
            self.config = await self._shared.open(self.config)
            if self.config.output_dir is not None:
                self._worker_journal = WorkerJournal(self.config)
                self._worker_journal.start(self._shared.url, self._shared.crawl_id)
        except BaseException:
            await self._shared.aclose(settle=False)
            raise
        return Settings.of(self.config)

    async def _finish(self) -> CrawlStats:
        """The final stats (the whole crawl's, for a shared one); every file written."""
        stats = self._final_stats()
        if self._journal is not None:
            self._journal.finish(stats, finished=stats.finished)
        if self._shared is None:
            return stats
        try:
            stats = await self._shared_stats()
            await self._shared.aclose()
        except FrontierUnavailable:
            await self._shared.aclose(settle=False)
            raise
        finally:
            if self._worker_journal is not None:
                self._worker_journal.finish(stats)
        return stats

    async def _shared_stats(self) -> CrawlStats:
        assert self._shared is not None
        tally = Tally()
        tally.restore(await self._shared.counters())
        counts = await self._shared.frontier_counts()
        queued, leased = counts.get("pending", 0), counts["leased"]
        return tally.snapshot(queued, leased, finished=self._shared.is_finished())

    async def _crawl(
        self,
        settings: Settings,
        restored: Restored | None,
        recorder: Callable[[Response], None] | None,
    ) -> None:
        async with Fetcher(
            concurrency=self.config.concurrency,
            timeout=self.config.timeout,
            user_agent=self.config.user_agent,
            recorder=recorder,
        ) as fetcher:
            seeds = [url for url in map(normalize, settings.seeds) if url is not None]
            self._visitor = self._make_visitor(fetcher, seeds, settings)
            if restored is not None and restored.pending:
                assert self._memory is not None
                self._memory.restore(restored.seen, restored.pending, self.tally.pages)
            elif self._partition is None and self._shared is None:
                await self._enqueue((Entry(url, 0) for url in seeds), False)
            self.ready.set()
            await self._run_stages()

    def _final_stats(self) -> CrawlStats:
        exhausted = self._frontier.pending() == 0 and self._frontier.in_flight() == 0
        return self.tally.snapshot(
            self._frontier.pending(), self._frontier.in_flight(), finished=exhausted
        )

    def _make_visitor(self, fetcher: Fetcher, seeds: list[str], settings: Settings) -> Visitor:
        domains = frozenset(domain.lower() for domain in settings.allow_domain)
        scope = Scope(frozenset(host_of(url) for url in seeds), domains)
        config = replace(self.config, keep_query_order=settings.keep_query_order)
        return Visitor(
            config,
            fetcher=fetcher,
            politeness=self._politeness,
            scope=scope,
            tally=self.tally,
            sink=self._sink(),
            enqueue=self._enqueue,
            parse=self._parse,
            on_record=self._on_record,
            robots_store=self._robots_store(),
        )

    def _robots_store(self) -> RobotsStore | None:
        if self._shared is not None:
            return self._shared
        return self._partition.robots_store if self._partition is not None else None

    def _sink(self) -> Sink | None:
        if self._partition is not None:
            return self._partition.sink
        return self._journal or self._worker_journal

    async def _dead(self, entry: Entry) -> None:
        """The shared frontier gave up on an entry whose workers kept dying: its record."""
        assert self._visitor is not None
        await self._visitor.give_up(entry, DEAD_LETTER)

    async def _enqueue(self, entries: Iterable[Entry], front: bool) -> list[Entry]:
        """Queue entries (routing other processes' hosts to them); return those taken on."""
        routed: list[Entry] = []
        if self._partition is not None:
            entries, routed = self._partition.split(entries)
        added = await self._frontier.add(entries, front=front)
        fresh = [entry for entry in added if not entry.is_continuation()]
        if fresh and self._journal is not None:
            self._journal.added(fresh)
        if fresh and self._partition is not None:
            self._partition.added(fresh)
        return added + routed

    def idle(self) -> bool:
        """Nothing leasable is queued and nothing is in flight."""
        return self._frontier.is_finished()

    async def take(self, entries: list[Entry]) -> None:
        """Entries routed here by another process of the front."""
        hops = [entry for entry in entries if entry.is_continuation()]
        pages = [entry for entry in entries if not entry.is_continuation()]
        taken = await self._enqueue(hops, True)
        assert self._visitor is not None
        for hop in hops:
            if hop not in taken:
                await self._visitor.redirect_seen(hop)
        await self._enqueue(pages, False)

    async def restore(self, seen: Iterable[str], pending: list[Entry]) -> None:
        """A resumed crawl's share for this process of the front."""
        assert self._memory is not None
        await self._memory.add(pending)
        self._memory.restore(seen, 0, 0)

    async def _run_stages(self) -> None:
        try:
            await self._stages()
        except* CrawlerError as group:
            # A run-stopping error (the shared frontier gone) is raised as itself.
            raise group.exceptions[0] from None

    async def _stages(self) -> None:
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._parse_loop(), name="parser")
            async with asyncio.TaskGroup() as crawl:
                crawl.create_task(self._dispatch(), name="dispatcher")
                self._workers = [
                    crawl.create_task(self._worker(), name=f"worker-{number}")
                    for number in range(self.config.concurrency)
                ]
            self._parse_jobs.put_nowait(None)

    async def _dispatch(self) -> None:
        try:
            while True:
                # Lease for every idle worker at once: one round trip to a shared frontier.
                await self._idle.acquire()
                idle = 1
                while idle < self.config.concurrency and not self._idle.locked():
                    await self._idle.acquire()
                    idle += 1
                if self._partition is not None:
                    await self._partition.drain()
                leases = await self._frontier.lease(idle)
                for _ in range(idle - len(leases)):
                    self._idle.release()
                if not leases:
                    return
                for lease in leases:
                    self._work.put_nowait(lease)
        finally:
            for _ in range(self.config.concurrency):
                self._work.put_nowait(None)

    async def _worker(self) -> None:
        while (lease := await self._work.get()) is not None:
            try:
                await self._handle(lease)
            finally:
                self._idle.release()

    async def _handle(self, lease: Lease) -> None:
        assert self._visitor is not None
        outcome = DONE
        try:
            outcome = await self._visitor.visit(lease)
        except asyncio.CancelledError:
            # Cancelled after stop()'s grace: the entry is not done; it goes back.
            outcome = Outcome(continuation=lease.entry)
            raise
        finally:
            if outcome.continuation is None:
                await self._frontier.ack(lease, outcome.status, outcome.retry_after)
            else:
                await self._frontier.requeue(
                    lease, outcome.continuation, outcome.status, outcome.retry_after, outcome.delay
                )

    async def _parse(self, response: Response) -> ParsedPage:
        future: asyncio.Future[ParsedPage] = asyncio.get_running_loop().create_future()
        await self._parse_jobs.put((response, future))
        return await future

    async def _parse_loop(self) -> None:
        honour_nofollow = not self.config.ignore_nofollow
        while (job := await self._parse_jobs.get()) is not None:
            response, future = job
            if not future.cancelled():
                future.set_result(parse_response(response, honour_nofollow=honour_nofollow))


def parse_response(response: Response, *, honour_nofollow: bool) -> ParsedPage:
    """Parse an HTML answer; an X-Robots-Tag header adds to the page's own directives."""
    parsed = parse_html(
        response.body, response.url, response.charset, honour_nofollow=honour_nofollow
    )
    directives = header_directives(response.x_robots_tag)
    if not directives:
        return parsed
    nofollow = parsed.nofollow or (honour_nofollow and "nofollow" in directives)
    return replace(
        parsed,
        links=() if nofollow else parsed.links,
        nofollow=nofollow,
        noindex=parsed.noindex or "noindex" in directives,
    )
