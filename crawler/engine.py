"""The crawl loop of one event loop: dispatcher, workers, parser stage.

Layer 3: imports layers 0-2 and visit (same layer). Shape: the dispatcher
leases entries from the frontier (which hands out only hosts that are ready)
whenever a worker is idle; a worker gives the lease to the Visitor (visit.py),
which fetches, sends HTML to the parser stage, queues links and emits the
record; redirects and retries come back as continuations, so every request
passes its host's politeness slot.

Invariants:
1. Every lease is matched by exactly one ack or requeue, in a ``finally``.
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

from crawler.config import CrawlConfig
from crawler.fetcher import Fetcher, Response
from crawler.frontier import Entry, Lease, MemoryFrontier
from crawler.journal import Journal, Restored, Settings
from crawler.parser import ParsedPage, header_directives, parse_html
from crawler.politeness import Politeness
from crawler.records import CrawlStats
from crawler.stats import Tally
from crawler.urls import Scope, host_of, normalize
from crawler.visit import DONE, RecordSink, Visitor
from crawler.warc import WarcRecorder

log = logging.getLogger(__name__)

# After stop(), requests in flight get this long before they are cancelled.
STOP_GRACE_SECONDS = 5.0


class Engine:
    """One crawl in the running event loop."""

    def __init__(self, config: CrawlConfig, on_record: RecordSink | None = None) -> None:
        self.config = config
        self._on_record = on_record
        self._politeness = Politeness(
            config.per_host,
            config.delay,
            robots_first=not config.ignore_robots,
            backoff_cap=config.max_retry_after,
        )
        self._tally = Tally()
        self._journal = Journal(config, self._tally) if config.output_dir is not None else None
        self._frontier = MemoryFrontier(
            self._politeness, max_pages=config.max_pages, spill=self._journal
        )
        self._idle = asyncio.Semaphore(config.concurrency)
        self._work: asyncio.Queue[Lease | None] = asyncio.Queue()
        self._parse_jobs: asyncio.Queue[tuple[Response, asyncio.Future[ParsedPage]] | None]
        self._parse_jobs = asyncio.Queue(maxsize=config.concurrency)
        self._visitor: Visitor | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._grace: asyncio.TimerHandle | None = None

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
        return self._tally.snapshot(self._frontier.pending(), self._frontier.in_flight())

    async def run(self) -> CrawlStats:
        """Crawl to the end (or to a limit or stop()); return the final CrawlStats."""
        with contextlib.ExitStack() as files:
            recorder = None
            if self.config.warc is not None:
                recorder = files.enter_context(WarcRecorder(self.config.warc)).record
            settings, restored = Settings.of(self.config), None
            if self._journal is not None:
                restored = self._journal.start()
                settings = restored.settings
            deadline = None
            if self.config.max_time is not None:
                loop = asyncio.get_running_loop()
                deadline = loop.call_later(self.config.max_time, self.stop)
            self._tally.start()
            try:
                await self._crawl(settings, restored, recorder)
            finally:
                for timer in (deadline, self._grace):
                    if timer is not None:
                        timer.cancel()
                stats = self._final_stats()
                if self._journal is not None:
                    self._journal.finish(stats, finished=stats.finished)
        return stats

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
                self._frontier.restore(restored.seen, restored.pending, self._tally.pages)
            else:
                await self._enqueue((Entry(url, 0) for url in seeds), False)
            await self._run_stages()

    def _final_stats(self) -> CrawlStats:
        exhausted = self._frontier.pending() == 0 and self._frontier.in_flight() == 0
        return self._tally.snapshot(
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
            tally=self._tally,
            journal=self._journal,
            enqueue=self._enqueue,
            parse=self._parse,
            on_record=self._on_record,
        )

    async def _enqueue(self, entries: Iterable[Entry], front: bool) -> list[Entry]:
        added = await self._frontier.add(entries, front=front)
        if self._journal is not None and added:
            self._journal.added(entry for entry in added if not entry.is_continuation())
        return added

    async def _run_stages(self) -> None:
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
                await self._idle.acquire()
                lease = await self._frontier.lease()
                if lease is None:
                    self._idle.release()
                    return
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
