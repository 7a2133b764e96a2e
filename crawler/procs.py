"""The multiprocessing front: --processes N spreads hosts across N processes.

Layer 4: imports the engine and below. Each worker process (spawn start
method) runs its own event loop, its own aiohttp session and an Engine over
its own share of the frontier: the hosts it owns, chosen by a stable hash of
the host name (urls.owner_of: BLAKE2b, never Python's salted hash(); every
port of a host goes to one process). Per-host politeness is untouched, since
each host lives in one process. The parent is the one
writer: it journals (state.sqlite, pages.jsonl, broken.jsonl, stats.json)
what the workers report, routes links between them, and drives the display.
Parent and worker talk over a socket pair each (channel.py), on their event
loops; entries and records cross as plain tuples (pack/unpack below), which
pickle several times faster than the dataclasses. The parent imports neither
aiohttp nor the engine: its start-up is on the crawl's critical path.

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
1. The parent counts the messages it forwards to each worker; a worker reports
   "idle" with the number of messages it has consumed whenever its frontier
   has nothing leasable and nothing in flight, and after each message it
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
   1), so their owner reports only how many it took; --resume hands a saved
   crawl's pending entries back to their owners.
5. A worker that dies is seen at once: its channel ends (after everything it
   sent has been read) and its process sentinel fires; the crawl stops, every
   file is written, its pages stay pending for --resume, and the run ends
   with WorkerDied (exit 4). Ctrl-C reaches the parent only: workers ignore
   SIGINT and are stopped by message; a worker whose parent is gone (its
   channel ends) stops too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import operator
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import TYPE_CHECKING, Any

from crawler.channel import Channel
from crawler.config import CrawlConfig
from crawler.errors import ConfigError, CrawlerError
from crawler.extract import Item
from crawler.frontier import Entry
from crawler.journal import Journal, Settings
from crawler.politeness import SharedSlot, first_limit
from crawler.records import CrawlStats, PageRecord
from crawler.state import Completion
from crawler.stats import Tally
from crawler.urls import host_of, normalize, owner_of, url_owner

if TYPE_CHECKING:
    from crawler.visit import RecordSink

log = logging.getLogger(__name__)

# Counters only workers see (records are counted by the parent).
WORKER_COUNTS = (
    "retries",
    "offsite_links",
    "dropped_links",
    "excluded_links",
    "sitemaps",
    "sitemap_urls",
)
# How long the parent waits for a worker whose channel ended to be reaped.
REAP_SECONDS = 5.0
# Batches read from the workers and not yet handled; past this the parent stops
# reading, and a worker whose channel is full stops leasing (a library reader
# that falls behind holds the crawl back instead of filling memory).
BACKLOG_BATCHES = 2


def owner(url: str, processes: int, *, split: bool = False) -> int:
    """The process that owns the URL: by its host name (every port of it, as scope
    does), or by the whole URL when the front splits a single host's URLs."""
    if split:
        return url_owner(url, processes)
    return owner_of(host_of(url), processes)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; picklable for the spawn start method."""

    config: CrawlConfig
    index: int
    processes: int
    # A single-host crawl: URLs are split between processes, politeness shared.
    split: bool = False


# The wire: entries, records and completions as tuples of their fields, in order.
_entry_row = operator.attrgetter(*(f.name for f in dataclasses.fields(Entry)))
_record_row = operator.attrgetter(*(f.name for f in dataclasses.fields(PageRecord)))
_completion_row = operator.attrgetter(*(f.name for f in dataclasses.fields(Completion)))


def pack_entries(entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    return [_entry_row(entry) for entry in entries]


def unpack_entries(rows: Iterable[tuple[Any, ...]]) -> list[Entry]:
    return [Entry(*row) for row in rows]


def pack_record(record: PageRecord, completion: Completion) -> tuple[Any, ...]:
    return ("record", _record_row(record), _completion_row(completion))


def _worker_process(*args: Any) -> None:
    """The spawn target: the engine and aiohttp are imported in workers only."""
    from crawler.worker import worker_main

    worker_main(*args)


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
        self._heard = [False] * self._count
        self._reaped = [asyncio.Event() for _ in range(self._count)]
        self._counts: list[dict[str, int]] = [{} for _ in range(self._count)]
        self._base: dict[str, int] = {}
        self._channels: list[Channel] = []
        self._processes: list[SpawnProcess] = []
        self._messages: asyncio.Queue[tuple[int, list[tuple[Any, ...]]]] = asyncio.Queue(
            maxsize=BACKLOG_BATCHES
        )
        self._all_exited = asyncio.Event()
        self._stopping = False
        self._drained = False
        self._failure: str | None = None
        self._queued = 0
        self._outgoing: dict[int, list[tuple[Any, ...]]] = {}
        self._split = False
        self._slot: SynchronizedArray[float] | None = None
        self._counter: Synchronized[int] | None = None

    def stop(self) -> None:
        """Stop every worker; each finishes what it has in flight, then reports and exits."""
        if self._stopping:
            return
        self._stopping = True
        # The URLs known broken: a worker's "exit" brings who links to them.
        broken = self._journal.output.links.broken_urls() if self._journal is not None else []
        for index, channel in enumerate(self._channels):
            if not self._exited[index]:
                channel.send(("stop", broken))

    def stats(self) -> CrawlStats:
        return self.tally.snapshot(max(self._queued, 0), 0)

    async def run(self) -> CrawlStats:
        settings, restored = Settings.of(self.config), None
        if self._journal is not None:
            restored = self._journal.start()
            settings = restored.settings
        self._base = {name: getattr(self.tally, name) for name in WORKER_COUNTS}
        loop = asyncio.get_running_loop()
        deadline = None
        self.tally.start()
        try:
            self._start_workers(multiprocessing.get_context("spawn"), settings)
            for index, process in enumerate(self._processes):
                loop.add_reader(process.sentinel, self._process_ended, index)
            for channel in self._channels:
                await channel.open()
            self._hand_out(settings, restored)
            if self.config.max_time is not None:
                deadline = loop.call_later(self.config.max_time, self.stop)
            await self._serve()
        finally:
            if deadline is not None:
                deadline.cancel()
            stats = self.tally.snapshot(
                max(self._queued, 0), 0, finished=self._drained and self._queued <= 0
            )
            try:
                if self._journal is not None:
                    self._journal.finish(stats, finished=stats.finished)
            finally:
                self._shut_down(loop)
        if self._failure is not None:
            raise WorkerDied(self._failure)
        return stats

    async def _serve(self) -> None:
        """Read every worker's channel and handle its messages, until all have exited."""
        async with asyncio.TaskGroup() as tasks:
            readers = [
                tasks.create_task(self._read(index, channel), name=f"front-reader-{index}")
                for index, channel in enumerate(self._channels)
            ]
            consumer = tasks.create_task(self._consume(), name="front-consumer")
            await self._all_exited.wait()
            await self._messages.join()
            for task in (*readers, consumer):
                task.cancel()

    def _start_workers(self, context: SpawnContext, settings: Settings) -> None:
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
            mine, theirs = socket.socketpair()
            spec = WorkerSpec(config, index, self._count, self._split)
            process = context.Process(
                target=_worker_process,
                args=(spec, theirs, counter, self._slot),
                name=f"crawler-worker-{index}",
                daemon=True,
            )
            try:
                process.start()
            finally:
                # Only the worker holds its end: when it dies, the parent's end reads EOF.
                theirs.close()
            self._channels.append(Channel(mine))
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
                self._send(index, ("restore", seen[index], pack_entries(pending[index])))
            return
        seeds = [Entry(url, 0) for url in map(normalize, settings.seeds) if url is not None]
        self._journal_added(seeds)  # as every entry the parent routes
        self._route(pack_entries(seeds))
        self._flush_routes()

    def _send(self, index: int, message: tuple[Any, ...]) -> None:
        self._forwarded[index] += 1
        self._channels[index].send(message)

    def _route(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Entries (as rows) for their owners, sent by _flush_routes (one message per
        owner per batch)."""
        for row in rows:
            index = owner(row[0], self._count, split=self._split)
            self._outgoing.setdefault(index, []).append(row)

    def _flush_routes(self) -> None:
        outgoing, self._outgoing = self._outgoing, {}
        for index, rows in outgoing.items():
            if not self._exited[index] and not self._stopping:
                self._send(index, ("take", rows))

    async def _read(self, index: int, channel: Channel) -> None:
        """A worker's batches, in order; then, once its channel ends, that it is gone."""
        while (batch := await channel.receive()) is not None:
            self._heard[index] = True
            await self._messages.put((index, batch))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_SECONDS):
                await self._reaped[index].wait()
        await self._messages.put((index, [("gone",)]))

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
            await self._record(PageRecord(*message[1]), Completion(*message[2]))
        elif kind == "added":
            entries = unpack_entries(message[1])
            self._queued += len(entries)
            self._journal_added(entries)
        elif kind == "taken":
            # Entries this parent routed (and journaled then) that were new to their owner.
            self._queued += message[1]
        elif kind == "route":
            # Journaled now, so that a page's record never lands before its links
            # (state.py's invariant 1); the owner's "taken" report counts them.
            self._journal_added(unpack_entries(message[1]))
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
            # A bug: its traceback is logged whole; the run ends naming the error.
            self._fail(f"worker process {index} failed: {message[2]}", message[1])
            self._mark_exited(index)
        elif kind == "gone":
            self._died(index)

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
        """Invariant 2: every worker idle, every message sent to it consumed."""
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
        asyncio.get_running_loop().remove_reader(self._processes[index].sentinel)
        self._reaped[index].set()

    def _died(self, index: int) -> None:
        """A worker's channel ended: unless it said "exit" first, it died."""
        if self._exited[index]:
            return
        process = self._processes[index]
        process.join(1)  # its sentinel fires as it exits, a moment before it can be reaped
        reason = (
            f"worker process {index} (pid {process.pid}) died with exit code {process.exitcode}"
        )
        if not self._heard[index]:
            # Most often a script that starts a crawl on import: the spawned worker
            # imports the script again, and multiprocessing refuses to start there.
            reason += (
                " before it started (a script that runs a crawl with processes > 1 must"
                ' do so under `if __name__ == "__main__":`)'
            )
        self._fail(f"{reason}; its pages stay queued: --resume continues the crawl")
        self._mark_exited(index)

    def _fail(self, reason: str, detail: str = "") -> None:
        log.error("%s", f"{detail}{reason}")
        self._failure = self._failure or reason
        self.stop()

    def _shut_down(self, loop: asyncio.AbstractEventLoop) -> None:
        """After the last files are written: close the channels, reap the workers."""
        for process in self._processes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(process.sentinel)
        for channel in self._channels:
            channel.close()
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
