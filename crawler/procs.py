"""The multiprocessing front: --processes N spreads hosts across N processes.

Layer 4: imports the engine and below. Each worker process (spawn start
method) runs its own event loop, its own aiohttp session and an Engine over
its own share of the frontier: the hosts it owns, chosen by a stable hash of
the host name (urls.owner_of: BLAKE2b, never Python's salted hash(); every
port of a host goes to one process). Per-host politeness is untouched, since
each host lives in one process. The parent is the one
writer: it journals (state.sqlite, pages.jsonl, broken.jsonl, stats.json)
what the workers report, routes links between them, and drives the display.

Why hosts and not URLs: a host's politeness (its in-flight bound, its gap,
its back-off, its robots.txt) must be kept on one clock, so one process owns
it. A crawl of a single host (one host in scope, no --allow-domain) is the
exception: its URLs are split between processes by a stable hash of the
whole URL, and its politeness slot lives in shared memory
(politeness.SharedSlot: one lock, the system-wide monotonic clock), so the
bound and the gap hold for all processes together; its robots.txt is
fetched by one process and sent through the parent to the others. Spreading
only the parsing was tried first and measured (a spawn ProcessPoolExecutor
doing parse and link normalisation):
1,220 pages/s against 1,990 for one process, because with lxml a page's
parsing costs about what shipping its body to another process does; a whole
share of the fetching, parsing and link work per process does gain.

Invariants (the termination rule):
1. The parent counts the batches it forwards to each worker; a worker reports
   "idle" with the number of batches it has consumed whenever its frontier
   has nothing leasable and nothing in flight, and after each batch it
   consumes while idle.
2. The crawl is finished when every worker's last report is idle with a
   consumed count equal to the parent's forwarded count for it: no worker has
   work, and nothing is in transit. Messages from one worker arrive in order,
   so every route and record sent before an idle report is handled first.
3. Then (or on stop, or when a worker dies) the parent sends "stop" to every
   live worker and waits for each one's "exit" report (or its death) before
   it writes the last files: every record sent is written.
4. --max-pages holds across processes: one shared counter, taken under a lock.
   Links routed between workers are journaled by the parent as it routes
   them, before the record of the page that found them (state.py's invariant
   1); --resume hands a saved crawl's pending entries back to their owners.
5. A worker that dies is seen at once (its process sentinel); the crawl stops,
   every file is written, its pages stay pending for --resume, and the run
   ends with WorkerDied (exit 4). Ctrl-C reaches the parent only: workers
   ignore SIGINT and are stopped by message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import threading
from collections.abc import Iterable
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, CrawlerError
from crawler.extract import Item
from crawler.frontier import Entry
from crawler.journal import Journal, Settings
from crawler.politeness import SharedSlot, first_limit
from crawler.records import CrawlStats, PageRecord
from crawler.state import Completion
from crawler.stats import Tally
from crawler.urls import host_of, normalize
from crawler.visit import RecordSink
from crawler.worker import WORKER_COUNTS, WorkerSpec, owner, worker_main

log = logging.getLogger(__name__)


class WorkerDied(CrawlerError):
    """A worker process of the front died; the crawl stopped with its state saved."""

    exit_code = 4


class ProcessFront:
    """The parent of the front; to the library it is an Engine (run, stop, stats)."""

    def __init__(self, config: CrawlConfig, on_record: RecordSink | None = None) -> None:
        if config.incremental or config.warc is not None:
            raise ConfigError("--incremental and --warc work with --processes 1 only, for now")
        self.config = config
        self._on_record = on_record
        self._count = config.processes
        self.tally = Tally()
        self._journal = Journal(config, self.tally) if config.output_dir is not None else None
        self._forwarded = [0] * self._count
        self._idle: list[int | None] = [None] * self._count
        self._exited = [False] * self._count
        self._counts: list[dict[str, int]] = [{} for _ in range(self._count)]
        self._base: dict[str, int] = {}
        self._inboxes: list[multiprocessing.Queue[Any]] = []
        self._processes: list[SpawnProcess] = []
        self._messages: asyncio.Queue[tuple[int, list[tuple[Any, ...]]]] = asyncio.Queue()
        self._all_exited = asyncio.Event()
        self._stopping = False
        self._drained = False
        self._failure: str | None = None
        self._queued = 0
        self._outgoing: dict[int, list[Entry]] = {}
        self._split = False
        self._slot: SynchronizedArray[float] | None = None

    def stop(self) -> None:
        """Stop every worker; each finishes what it has in flight, then reports and exits."""
        if self._stopping:
            return
        self._stopping = True
        for index, inbox in enumerate(self._inboxes):
            if not self._exited[index]:
                inbox.put(("stop",))

    def stats(self) -> CrawlStats:
        return self.tally.snapshot(max(self._queued, 0), 0)

    async def run(self) -> CrawlStats:
        settings, restored = Settings.of(self.config), None
        if self._journal is not None:
            restored = self._journal.start()
            settings = restored.settings
        self._base = {name: getattr(self.tally, name) for name in WORKER_COUNTS}
        context = multiprocessing.get_context("spawn")
        outbox: multiprocessing.Queue[Any] = context.Queue()
        reader = threading.Thread(target=self._read, args=(outbox,), name="front-reader")
        loop = self._loop = asyncio.get_running_loop()
        deadline = None
        self.tally.start()
        try:
            self._start_workers(context, outbox, settings)
            reader.start()
            for index, process in enumerate(self._processes):
                loop.add_reader(process.sentinel, self._process_ended, index)
            self._hand_out(settings, restored)
            if self.config.max_time is not None:
                deadline = loop.call_later(self.config.max_time, self.stop)
            consumer = asyncio.create_task(self._consume(), name="front-consumer")
            try:
                await self._all_exited.wait()
                await self._messages.join()
            finally:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
        finally:
            if deadline is not None:
                deadline.cancel()
            self._shut_down(loop, outbox, reader)
            stats = self.tally.snapshot(
                max(self._queued, 0), 0, finished=self._drained and self._queued <= 0
            )
            if self._journal is not None:
                self._journal.finish(stats, finished=stats.finished)
        if self._failure is not None:
            raise WorkerDied(self._failure)
        return stats

    def _start_workers(
        self, context: SpawnContext, outbox: multiprocessing.Queue[Any], settings: Settings
    ) -> None:
        # Kept on self: the workers' handles to them must outlive this call.
        self._counter = counter = context.Value("q", self.tally.pages)
        hosts = {host_of(url) for url in map(normalize, settings.seeds) if url is not None}
        self._split = len(hosts) == 1 and not settings.allow_domain
        if self._split:
            limit = first_limit(self.config.per_host, robots_first=not self.config.ignore_robots)
            initial = SharedSlot.initial(limit, self.config.delay, self.config.max_retry_after)
            self._slot = context.Array("d", initial)
        config = dataclasses.replace(
            self.config,
            seeds=settings.seeds,
            allow_domain=settings.allow_domain,
            keep_query_order=settings.keep_query_order,
            resume=False,
            max_time=None,
        )
        for index in range(self._count):
            inbox: multiprocessing.Queue[Any] = context.Queue()
            process = context.Process(
                target=worker_main,
                args=(
                    WorkerSpec(config, index, self._count, self._split),
                    inbox,
                    outbox,
                    counter,
                    self._slot,
                ),
                name=f"crawler-worker-{index}",
                daemon=True,
            )
            process.start()
            self._inboxes.append(inbox)
            self._processes.append(process)

    def _hand_out(self, settings: Settings, restored: Any) -> None:
        """The seeds, or a resumed crawl's seen set and pending entries, to their owners."""
        if restored is not None and restored.pending:
            seen: list[list[str]] = [[] for _ in range(self._count)]
            for url in restored.seen:
                seen[owner(url, self._count, split=self._split)].append(url)
            assert self._journal is not None
            pending: list[list[Entry]] = [[] for _ in range(self._count)]
            for _, entry in self._journal.load(-1, restored.pending):
                pending[owner(entry.url, self._count, split=self._split)].append(entry)
            self._queued = restored.pending
            for index in range(self._count):
                self._send(index, ("restore", seen[index], pending[index]))
            return
        self._route(Entry(url, 0) for url in map(normalize, settings.seeds) if url is not None)
        self._flush_routes()

    def _send(self, index: int, message: tuple[Any, ...]) -> None:
        self._forwarded[index] += 1
        self._inboxes[index].put(message)

    def _route(self, entries: Iterable[Entry]) -> None:
        """Entries for their owners, sent by _flush_routes (one message per owner per batch)."""
        for entry in entries:
            self._outgoing.setdefault(owner(entry.url, self._count, split=self._split), []).append(
                entry
            )

    def _flush_routes(self) -> None:
        outgoing, self._outgoing = self._outgoing, {}
        for index, group in outgoing.items():
            if not self._exited[index] and not self._stopping:
                self._send(index, ("take", group))

    def _read(self, outbox: multiprocessing.Queue[Any]) -> None:
        """The reader thread: batches from the workers onto the event loop."""
        loop = self._loop
        while (batch := outbox.get()) is not None:
            loop.call_soon_threadsafe(self._messages.put_nowait, batch)

    async def _consume(self) -> None:
        while True:
            index, batch = await self._messages.get()
            try:
                for message in batch:
                    await self._handle(index, message)
                self._flush_routes()
            finally:
                self._messages.task_done()

    async def _handle(self, index: int, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "record":
            await self._record(message[1], message[2])
        elif kind == "added":
            self._queued += len(message[1])
            self._journal_added(message[1])
        elif kind == "route":
            # Journaled now, so that a page's record never lands before its links
            # (state.py's invariant 1); the owner's "added" report counts them.
            self._journal_added(message[1])
            self._route(message[1])
        elif kind == "sitemap":
            self._queued -= 1
            if self._journal is not None:
                self._journal.sitemap_done(message[1])
        elif kind == "idle":
            self._flush_routes()  # invariant 2 counts what has been forwarded
            self._idle[index] = message[1]
            self._absorb(index, message[2])
            self._check_drained()
        elif kind == "exit":
            self._absorb(index, message[1])
            if self._journal is not None:
                self._journal.output.links.merge(message[2])
            self._mark_exited(index)
        elif kind == "robots":
            # A split host's robots.txt, fetched by one worker: the others take it.
            for other in range(self._count):
                if other != index and not self._exited[other]:
                    self._send(other, message)
        elif kind == "failed":
            self._fail(f"worker {index} failed:\n{message[1]}")

    def _journal_added(self, entries: list[Entry]) -> None:
        fresh = [entry for entry in entries if not entry.is_continuation()]
        if self._journal is not None and fresh:
            self._journal.added(fresh)

    async def _record(self, record: PageRecord, completion: Completion) -> None:
        self._queued -= 1
        self.tally.add(record)
        items = [Item(record.url, json.loads(item)) for item in completion.items_json]
        self.tally.items += len(items)
        if self._journal is not None:
            self._journal.record(record, completion)
        if self._on_record is not None:
            for item in items:
                await self._on_record(item)
            await self._on_record(record)

    def _absorb(self, index: int, counts: dict[str, int]) -> None:
        self._counts[index] = counts
        for name in WORKER_COUNTS:
            total = sum(worker.get(name, 0) for worker in self._counts)
            setattr(self.tally, name, self._base.get(name, 0) + total)

    def _check_drained(self) -> None:
        """Invariant 2: every worker idle, every batch sent to it consumed."""
        if self._stopping:
            return
        if all(self._idle[i] == self._forwarded[i] for i in range(self._count)):
            self._drained = True
            self.stop()

    def _mark_exited(self, index: int) -> None:
        self._exited[index] = True
        if all(self._exited):
            self._all_exited.set()

    def _process_ended(self, index: int) -> None:
        process = self._processes[index]
        asyncio.get_running_loop().remove_reader(process.sentinel)
        if not self._exited[index]:
            # Its last messages may still be in the pipe: give the reader a moment.
            asyncio.get_running_loop().call_later(0.5, self._died, index)

    def _died(self, index: int) -> None:
        if self._exited[index]:
            return
        process = self._processes[index]
        self._fail(
            f"worker process {index} (pid {process.pid}) died with exit code "
            f"{process.exitcode}; its pages stay queued: --resume continues the crawl"
        )
        self._mark_exited(index)

    def _fail(self, reason: str) -> None:
        log.error("%s", reason)
        self._failure = self._failure or reason.splitlines()[0]
        self.stop()

    def _shut_down(
        self,
        loop: asyncio.AbstractEventLoop,
        outbox: multiprocessing.Queue[Any],
        reader: threading.Thread,
    ) -> None:
        for process in self._processes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(process.sentinel)
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
        if reader.is_alive():
            outbox.put(None)
            reader.join(10)
        for inbox in self._inboxes:
            inbox.close()
            inbox.cancel_join_thread()
        outbox.close()
        outbox.cancel_join_thread()
