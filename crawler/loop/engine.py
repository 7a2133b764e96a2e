"""The crawl loop of one event loop: a dispatcher and a pool of workers.

Shape: the run (runs.py) opens and settles everything the loop works on;
the dispatcher leases entries from the frontier (which hands out only hosts
that are ready) for the workers that are idle; a worker gives the lease to
the Visitor (visit.py), which fetches, parses (parsing.py), queues links
and emits the record; redirects and retries come back as continuations, so
every request passes its host's politeness slot. The loop does not know
which frontier, sink or run mode it has.

Invariants:
1. Every lease is matched by exactly one ack or requeue, in a ``finally``; a
   visit cancelled after stop()'s grace requeues its entry (it is not done).
2. The dispatcher leases only while a worker is idle (``_idle`` counts them),
   so a leased entry starts at once and host gaps hold.
3. A page's links are queued before its lease is acked: the frontier can only
   look finished when nothing is in flight and nothing is queued.
4. Only entries that start a record (not redirect hops) are journaled; a
   resumed crawl redoes a redirect chain from its first URL.
5. Per-URL failures are records, whatever raised them: an unexpected
   exception while visiting one URL is logged with its traceback once and
   becomes its record (``error: "internal"``). Only a CrawlerError (the
   crawl's own output, state or Redis failing) propagates out of the
   TaskGroup, after the run is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from crawler.config import CrawlConfig
from crawler.errors import CrawlerError
from crawler.extract import Extractor, load_extractor
from crawler.frontier.protocol import DONE, Lease, Outcome
from crawler.loop.checks import Checker, open_checker
from crawler.loop.gate import LinkGate
from crawler.loop.hosts import HostKnowledge
from crawler.loop.parsing import Parser, ParseStage
from crawler.loop.recording import CURRENT_LEASE, Recorder, RecordSink
from crawler.loop.rendering import rendering
from crawler.loop.runs import LocalRun, Opened, Run
from crawler.loop.visit import Visitor
from crawler.net.addresses import AddressPolicy
from crawler.net.fetcher import Fetcher, Pacer, Response
from crawler.net.identity import CookieJar, Identity, cookie_jar, proxies
from crawler.records import CrawlStats
from crawler.stats import Tally

if TYPE_CHECKING:
    from crawler.net.warc import WarcRecorder

# After stop(), requests in flight get this long before they are cancelled.
STOP_GRACE_SECONDS = 5.0


class Engine:
    """One crawl in the running event loop; ``run`` chooses how it opens and closes
    (by default from the config: a local or a shared crawl)."""

    def __init__(
        self, config: CrawlConfig, on_record: RecordSink | None = None, *, run: Run | None = None
    ) -> None:
        self.config = config
        self._on_record = on_record
        self._run = run if run is not None else run_for(config)
        self.tally = Tally()
        self._opened: Opened | None = None
        self._stopping = False
        # Idle workers, and the dispatcher's wake-up. A semaphore taken once for each idle
        # worker before every lease was 9% of a 500-host crawl's CPU (py-spy).
        self._idle = config.concurrency
        self._freed = asyncio.Event()
        self._work: asyncio.Queue[Lease | None] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._grace: asyncio.TimerHandle | None = None
        self._checker: Checker | None = None

    def stop(self) -> None:
        """Lease nothing more; pages in flight get a few seconds to finish, then are
        cancelled (they stay pending for --resume); every file is written."""
        self._stopping = True
        if self._opened is not None:
            self._opened.frontier.close()
        if self._grace is None:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(STOP_GRACE_SECONDS, self._cancel_workers)

    def stopping(self) -> bool:
        return self._stopping

    def _cancel_workers(self) -> None:
        for worker in self._workers:
            worker.cancel()

    def stats(self) -> CrawlStats:
        if self._opened is None:
            return self.tally.snapshot(0, 0)
        frontier = self._opened.frontier
        return self.tally.snapshot(frontier.pending(), frontier.in_flight())

    async def run(self) -> CrawlStats:
        """Crawl to the end (or to a limit or stop()); return the final CrawlStats."""
        with contextlib.ExitStack() as files:
            # Before the run opens: an extractor that cannot be imported or a --warc that
            # cannot be written leaves no state behind.
            extract = self.config.extract
            extractor = load_extractor(extract) if isinstance(extract, str) else extract
            cookies = cookie_jar(self.config.cookies)
            through = proxies(self.config.proxy)
            warc = open_warc(self.config, files)
            given = self.config  # its seeds keep their user:pass@ (the state's do not)
            opened = self._opened = await self._run.open(self.tally, self.stopping)
            self.config = opened.config
            if self._stopping:
                opened.frontier.close()
            deadline = None
            if self.config.max_time is not None:
                deadline = asyncio.get_running_loop().call_later(self.config.max_time, self.stop)
            self.tally.start()
            try:
                pacer = opened.politeness
                recorder = warc.record if warc is not None else None
                conversion = warc.conversion if warc is not None else None
                async with (
                    fetcher_for(self.config, given, recorder, cookies, through, pacer) as fetcher,
                    rendering(self.config, fetcher, self.tally, conversion) as rendered,
                ):
                    visitor = self._visitor(opened, fetcher, extractor, rendered)
                    if opened.seeds:
                        await opened.frontier.add(opened.seeds)
                    await self._run_workers(visitor)
                    if self._checker is not None:
                        await self._checker.report(opened.sink, self._on_record)
            finally:
                for timer in (deadline, self._grace):
                    if timer is not None:
                        timer.cancel()
                stats = await self._run.close(self._final_stats(opened))
        return stats

    def _final_stats(self, opened: Opened) -> CrawlStats:
        pending, in_flight = opened.frontier.pending(), opened.frontier.in_flight()
        exhausted = pending == 0 and in_flight == 0
        return self.tally.snapshot(pending, in_flight, finished=exhausted)

    def _visitor(
        self,
        opened: Opened,
        fetcher: Fetcher,
        extractor: Extractor | None,
        rendered: Callable[[ParseStage], Parser],
    ) -> Visitor:
        config, frontier = opened.config, opened.frontier
        gate = LinkGate(config, self.tally)
        checker = None
        if config.check:
            checker = self._checker = open_checker(opened, gate, fetcher, self.tally.pages)
        recorder = Recorder(
            self.tally,
            opened.sink,
            self._on_record,
            opened.after_ack,
            checked=checker.book.note_record if checker is not None else None,
        )
        hosts = HostKnowledge(
            config,
            fetcher=fetcher,
            politeness=opened.politeness,
            frontier=frontier,
            gate=gate,
            tally=self.tally,
            sink=opened.sink,
            robots_store=opened.robots_store,
        )
        self._run.started(recorder)
        return Visitor(
            config,
            fetcher=fetcher,
            frontier=frontier,
            gate=gate,
            hosts=hosts,
            parser=rendered(
                ParseStage(gate, honour_nofollow=not config.ignore_nofollow, refs=config.check)
            ),
            recorder=recorder,
            sink=opened.sink,
            extractor=extractor,
            checker=checker,
        )

    async def _run_workers(self, visitor: Visitor) -> None:
        try:
            async with asyncio.TaskGroup() as crawl:
                crawl.create_task(self._dispatch(), name="dispatcher")
                self._workers = [
                    crawl.create_task(self._worker(visitor), name=f"worker-{number}")
                    for number in range(self.config.concurrency)
                ]
        except* CrawlerError as group:
            # A run-stopping error (the shared frontier gone) is raised as itself.
            raise group.exceptions[0] from None

    async def _dispatch(self) -> None:
        assert self._opened is not None
        frontier = self._opened.frontier
        concurrency = self.config.concurrency
        try:
            while True:
                while not self._idle:
                    self._freed.clear()
                    await self._freed.wait()
                # Lease for every idle worker at once: one round trip to a shared frontier.
                idle, self._idle = self._idle, 0
                leases = await frontier.lease(idle)
                self._idle += idle - len(leases)
                if not leases:
                    return
                for lease in leases:
                    self._work.put_nowait(lease)
        finally:
            for _ in range(concurrency):
                self._work.put_nowait(None)

    async def _worker(self, visitor: Visitor) -> None:
        while (lease := await self._work.get()) is not None:
            try:
                await self._handle(visitor, lease)
            finally:
                self._idle += 1
                self._freed.set()

    async def _handle(self, visitor: Visitor, lease: Lease) -> None:
        assert self._opened is not None
        frontier = self._opened.frontier
        outcome = DONE
        CURRENT_LEASE.set(lease)
        try:
            outcome = await visitor.visit(lease)
        except asyncio.CancelledError:
            # Cancelled after stop()'s grace: the entry is not done; it goes back.
            outcome = Outcome(continuation=lease.entry)
            raise
        except CrawlerError:
            raise  # the crawl's own resources failed (output, state, Redis): it stops
        except Exception:
            # Invariant 5: a bug met on one URL (a page no one foresaw) is that URL's
            # record, not the end of the crawl, which --resume would meet again.
            await visitor.failed(lease)
        finally:
            if outcome.continuation is None:
                await frontier.ack(lease, outcome.status, outcome.retry_after)
            else:
                await frontier.requeue(
                    lease, outcome.continuation, outcome.status, outcome.retry_after, outcome.delay
                )


def open_warc(config: CrawlConfig, files: contextlib.ExitStack) -> WarcRecorder | None:
    """The crawl's --warc file, open until ``files`` closes; None without --warc."""
    if config.warc is None:
        return None
    # Imported here: warcio costs every process's start-up, and few crawls use it.
    from crawler.net.warc import WarcRecorder

    return files.enter_context(WarcRecorder(config.warc))


def fetcher_for(
    config: CrawlConfig,
    given: CrawlConfig,
    recorder: Callable[[Response], None] | None,
    cookies: CookieJar,
    through: dict[str, str | None],
    pacer: Pacer | None = None,
) -> Fetcher:
    """The crawl's fetcher: ``config`` as the run settled it, ``given`` as it was given
    (its seeds keep their user:pass@, which the state's do not)."""
    identity = Identity(
        (*config.seeds, *given.seeds),  # the given ones last: they win
        headers=given.header,
        auth=given.auth,
        proxies=through,
    )
    return Fetcher(
        concurrency=config.concurrency,
        timeout=config.timeout,
        user_agent=config.user_agent,
        addresses=AddressPolicy(
            config.seeds,
            allow_private=config.allow_private,
            trusted=identity.proxy_endpoints,
            seed_hosts=config.seed_hosts,
        ),
        recorder=recorder,
        identity=identity,
        cookies=cookies,
        pacer=pacer,
    )


def run_for(config: CrawlConfig) -> Run:
    """The run mode of a crawl in one process: local, or a member of a shared one."""
    if config.frontier is not None:
        # Imported here: redis costs every process's start-up, and few crawls use it.
        from crawler.loop.shared_run import SharedRun

        return SharedRun(config)
    return LocalRun(config)
