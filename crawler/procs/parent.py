"""The multiprocessing front: --processes N spreads hosts across N processes.

Each child process (spawn start
method; children.py, child.py) runs its own event loop, its own aiohttp
session and an Engine over
its own share of the frontier: the hosts it owns, chosen by a stable hash of
the host name (web/urls.owner_of: BLAKE2b, never Python's salted hash(); every
port of a host goes to one process). Per-host politeness is untouched, since
each host lives in one process. The parent is the one
writer: it journals (state.sqlite, pages.jsonl, broken.jsonl, stats.json)
what the children report, routes links between them, and drives the display.
Parent and child talk over a socket pair each (channel.py), on their event
loops, in the wire format of wire.py. The parent imports neither aiohttp
nor the engine: its start-up is on the crawl's critical path.

Why hosts and not URLs: a host's politeness (its in-flight bound, its gap,
its back-off, its robots.txt) must be kept on one clock, so one process owns
it. A crawl of a single host (one host in scope, no --allow-domain) is the
exception: its URLs are split between processes by a stable hash of the
whole URL, and its politeness slot lives in shared memory
(frontier/politeness.py's SharedSlot: one lock, the system-wide monotonic clock), so the
bound and the gap hold for all processes together; its robots.txt is
fetched by one process and sent through the parent to the others. Spreading
only the parsing was tried first and measured (a spawn ProcessPoolExecutor
doing parse and link normalisation):
1,220 pages/s against 1,990 for one process, because with lxml a page's
parsing costs about what shipping its body to another process does; a whole
share of the fetching, parsing and link work per process does gain.

Invariants (the termination rule):
1. The parent counts the messages it forwards to each child; a child reports
   "idle" with the number of messages it has consumed whenever its frontier
   has nothing leasable and nothing in flight, and after each message it
   consumes while idle.
2. The crawl is finished when every child's last report is idle with a
   consumed count equal to the parent's forwarded count for it: no child has
   work, and nothing is in transit. Messages from one child arrive in order,
   so every route and record sent before an idle report is handled first.
3. Then (or on stop, or when a child dies) the parent sends "stop" to every
   live child and waits for each one's "exit" report (or its death) before
   it writes the last files: every record sent is written.
4. --max-pages holds across processes: one shared counter, taken under a lock.
   Links routed between children are journaled by the parent as it routes
   them, before the record of the page that found them (output/state.py's invariant
   1), so their owner reports only how many it took; --resume hands a saved
   crawl's pending entries back to their owners.
5. A child that dies is seen at once: its channel ends (after everything it
   sent has been read) and its process sentinel fires; the crawl stops, every
   file is written, its pages stay pending for --resume, and the run ends
   with ProcessDied (exit 4). Ctrl-C reaches the parent only: children ignore
   SIGINT and are stopped by message; a child whose parent is gone (its
   channel ends) stops too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, CrawlerError
from crawler.extract import Item
from crawler.loop.seeding import has_seed_list, read_into_journal
from crawler.output.journal import Journal, Restored, Settings
from crawler.procs.children import Children
from crawler.procs.wire import (
    CHILD_COUNTS,
    owner,
    pack_entries,
    unpack_entries,
    unpack_record,
)
from crawler.records import Completion, CrawlStats, Entry, PageRecord, seed_entry
from crawler.stats import Tally
from crawler.web.urls import normalize

if TYPE_CHECKING:
    from crawler.loop.recording import RecordSink

log = logging.getLogger(__name__)

# Batches read from the children and not yet handled; past this the parent stops
# reading, and a child whose channel is full stops leasing (a library reader
# that falls behind holds the crawl back instead of filling memory).
BACKLOG_BATCHES = 2


class ProcessDied(CrawlerError):
    """A process of the front died; the crawl stopped with its state saved."""

    exit_code = 4


class ProcessFront:
    """The parent of the front; to the library it is an Engine (run, stop, stats)."""

    def __init__(self, config: CrawlConfig, on_record: RecordSink | None = None) -> None:
        if config.incremental or config.warc is not None:
            raise ConfigError("--incremental and --warc work with --processes 1 only, for now")
        self.config = config
        self._on_record = on_record
        self.tally = Tally()
        self._journal = Journal(config, self.tally) if config.output_dir is not None else None
        self._children = Children(config.processes)
        self._counts: list[dict[str, Any]] = [{} for _ in range(config.processes)]
        self._base: dict[str, Any] = {}
        self._messages: asyncio.Queue[tuple[int, list[tuple[Any, ...]]]] = asyncio.Queue(
            maxsize=BACKLOG_BATCHES
        )
        self._stopping = False
        self._drained = False
        self._failure: str | None = None
        self._queued = 0

    def stop(self) -> None:
        """Stop every child; each finishes what it has in flight, then reports and exits."""
        if self._stopping:
            return
        self._stopping = True
        self._send_stop()

    def _send_stop(self) -> None:
        """ "stop", with the URLs known broken (whose referrers each child's "exit" brings),
        to every live child; before they start, run() sends it."""
        broken = self._journal.output.links.broken_urls() if self._journal is not None else []
        for index in self._children.live():
            self._children.channels[index].send(("stop", broken))

    def stats(self) -> CrawlStats:
        return self.tally.snapshot(max(self._queued, 0), 0)

    async def run(self) -> CrawlStats:
        config, restored = await _settled(
            self.config, self._journal, self.tally, lambda: self._stopping
        )
        self._base = self.tally.counters()
        deadline = None
        self.tally.start()
        try:
            self._children.start(config, pages_done=self.tally.pages)
            await self._children.open()
            self._hand_out(config, restored)
            if self._stopping:  # stopped while the children were starting
                self._send_stop()
            if self.config.max_time is not None:
                loop = asyncio.get_running_loop()
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
                await self._children.shut_down()
        if self._failure is not None:
            raise ProcessDied(self._failure)
        return stats

    async def _serve(self) -> None:
        """Read every child's channel and handle its messages, until all have exited."""
        children = self._children
        async with asyncio.TaskGroup() as tasks:
            messages = self._messages
            readers = [
                tasks.create_task(children.read(index, messages), name=f"front-reader-{index}")
                for index in range(children.count)
            ]
            consumer = tasks.create_task(self._consume(), name="front-consumer")
            await children.all_exited.wait()
            await self._messages.join()
            for task in (*readers, consumer):
                task.cancel()

    def _hand_out(self, config: CrawlConfig, restored: Restored | None) -> None:
        """The seeds, or a resumed crawl's seen set and pending entries, to their owners."""
        count = self._children.count
        if restored is not None and restored.carries_on():
            assert self._journal is not None
            seen: list[list[str]] = [[] for _ in range(count)]
            for url in restored.seen:
                seen[owner(url, count, split=self._children.split)].append(url)
            pending: list[list[Entry]] = [[] for _ in range(count)]
            for _, entry in self._journal.load(-1, restored.pending):
                pending[owner(entry.url, count, split=self._children.split)].append(entry)
            self._queued = restored.pending
            for index in range(count):
                self._children.send(index, ("restore", seen[index], pack_entries(pending[index])))
            return
        seeds = [seed_entry(url) for url in filter(None, map(normalize, config.seeds))]
        self._journal_added(seeds)  # as every entry the parent routes
        self._children.route(pack_entries(seeds))
        self._children.flush_routes(stopping=self._stopping)

    async def _consume(self) -> None:
        while True:
            index, batch = await self._messages.get()
            try:
                for message in batch:
                    await self._handle(index, message)
                self._children.flush_routes(stopping=self._stopping)
            finally:
                self._messages.task_done()

    async def _handle(self, index: int, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "record":
            await self._record(*unpack_record(message))
        elif kind == "added":
            entries = unpack_entries(message[1])
            self._queued += len(entries)
            self._journal_added(entries)
        elif kind == "taken":
            # Entries this parent routed (and journaled then) that were new to their owner.
            self._queued += message[1]
        elif kind == "route":
            # Journaled now, so that a page's record never lands before its links
            # (output/state.py's invariant 1); the owner's "taken" report counts them.
            self._journal_added(unpack_entries(message[1]))
            self._children.route(message[1])
        elif kind == "done":
            self._queued -= 1
            if self._journal is not None:
                self._journal.done_unrecorded(message[1])
        elif kind == "robots":
            # A split host's robots.txt, fetched by one child: the others take it.
            for other in self._children.live():
                if other != index:
                    self._children.send(other, message)
        else:
            await self._lifecycle(index, message)

    async def _lifecycle(self, index: int, message: tuple[Any, ...]) -> None:
        """A child's idle report, its exit, its failure, or its end."""
        kind, children = message[0], self._children
        if kind == "idle":
            self._children.flush_routes(
                stopping=self._stopping
            )  # invariant 2 counts what has been forwarded
            children.idle[index] = message[1]
            self._absorb(index, message[2])
            if not self._stopping and children.drained():
                self._drained = True
                self.stop()
        elif kind == "exit":
            self._absorb(index, message[1])
            if self._journal is not None:
                self._journal.output.links.merge(message[2])
            children.mark_exited(index)
        elif kind == "failed":
            # A bug: its traceback is logged whole; the run ends naming the error.
            self._fail(f"process {index} of the front failed: {message[2]}", message[1])
            children.mark_exited(index)
        elif kind == "gone" and not children.exited[index]:
            reason = await children.death(index)
            self._fail(f"{reason}; its pages stay queued: --resume continues the crawl")
            children.mark_exited(index)

    def _journal_added(self, entries: list[Entry]) -> None:
        fresh = [entry for entry in entries if not entry.is_continuation()]
        if self._journal is not None and fresh:
            self._journal.added(fresh)

    async def _record(self, record: PageRecord, completion: Completion) -> None:
        self._queued -= 1
        self.tally.add(record)
        self.tally.items += len(completion.items)
        if self._journal is not None:
            self._journal.record(record, completion)
        if self._on_record is not None:
            for item in completion.items:
                await self._on_record(Item(record.url, item))
            await self._on_record(record)

    def _absorb(self, index: int, counts: dict[str, Any]) -> None:
        self._counts[index] = counts
        self.tally.absorb(CHILD_COUNTS, self._base, self._counts)

    def _fail(self, reason: str, detail: str = "") -> None:
        log.error("%s", f"{detail}{reason}")
        self._failure = self._failure or reason
        self.stop()


async def _settled(
    given: CrawlConfig, journal: Journal | None, tally: Tally, stopping: Callable[[], bool]
) -> tuple[CrawlConfig, Restored | None]:
    """The children's config, settled here once (the crawl's saved settings, its seed
    list read into the state), and what the state holds to start from."""
    settings, restored = Settings.of(given), None
    if journal is not None:
        restored = journal.start()
        settings = restored.settings
    config = settings.applied_to(given, resume=False, max_time=None)
    if has_seed_list(config):
        assert journal is not None  # config.py: with processes, a list needs a folder
        config, restored = await read_into_journal(config, journal, restored, tally, stopping)
    return config, restored
