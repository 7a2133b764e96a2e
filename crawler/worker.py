"""A worker process of the multiprocessing front (procs.py has the rules).

Layer 4: imports the engine and below, and procs.py for the wire. It runs
one Engine over the hosts it owns; everything it learns goes to the parent
in batches over its channel: entries it found that are new to its seen set
("added"), how many of those the parent routed to it were new ("taken"),
entries for other processes' hosts ("route"), records, "idle" reports
(invariant 1 of procs.py), and at the end its counters and who links to
the URLs found broken ("exit"). It ignores SIGINT: the parent stops it by
message, or by closing the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import traceback
from collections.abc import Iterable
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any

from crawler.channel import Channel
from crawler.engine import Engine
from crawler.frontier import Entry, PageBudget, SeenSet, fingerprint
from crawler.hosts import RobotsStore
from crawler.journal import Sink
from crawler.output import LinkIndex, Output
from crawler.politeness import SharedSlot
from crawler.procs import (
    WORKER_COUNTS,
    WorkerSpec,
    owner,
    pack_entries,
    pack_record,
    unpack_entries,
)
from crawler.records import PageRecord
from crawler.robots import RobotsAnswer
from crawler.state import Completion, Validators
from crawler.stats import Tally
from crawler.urls import url_owner

log = logging.getLogger(__name__)

# How long a worker waits for a split host's robots.txt that another worker has
# fetched, before fetching it itself.
ROBOTS_WAIT_SECONDS = 1.0
# A worker sends its messages in batches of this many, or this often.
BATCH = 1024
BATCH_SECONDS = 0.1


class SharedBudget(PageBudget):
    """--max-pages across the front's processes: one counter in shared memory."""

    def __init__(self, limit: int | None, counter: Synchronized[int]) -> None:
        super().__init__(limit)
        self._counter = counter

    def exhausted(self) -> bool:
        return self._limit is not None and self._counter.value >= self._limit

    def take(self) -> bool:
        if self._limit is None:
            return True
        with self._counter.get_lock():
            if self.exhausted():
                return False
            self._counter.value += 1
            return True


class _Outbox:
    """A worker's messages to the parent, sent in batches."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._batch: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None

    def send(self, message: tuple[Any, ...], *, now: bool = False) -> None:
        self._batch.append(message)
        if now or len(self._batch) >= BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)

    async def drain(self) -> None:
        await self._channel.drain()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._batch:
            self._channel.send(self._batch)
            self._batch = []


class _WorkerPartition:
    """The Engine's Partition and Sink in a worker: everything goes to the parent."""

    def __init__(
        self,
        spec: WorkerSpec,
        outbox: _Outbox,
        budget: PageBudget,
        shared_slot: SharedSlot | None,
    ) -> None:
        self._spec = spec
        self._outbox = outbox
        self.budget = budget
        self.shared_slot = shared_slot
        # A split host's robots.txt is fetched by one worker and sent to the others.
        self.robots_store: RobotsStore | None = self if spec.split else None
        self._robots: dict[str, RobotsAnswer] = {}
        self._robots_arrived: dict[str, asyncio.Event] = {}
        self.sink: Sink = self
        self.links = LinkIndex()
        self.consumed = 0
        self.taking = False
        # The URLs the parent knew broken when it said stop.
        self.broken: list[str] = []
        self._routed = SeenSet()
        # Whether this process owns an origin's host.
        self._owned: dict[str, bool] = {}
        config = spec.config
        self._mirror = None
        if config.save_html and config.output_dir is not None:
            self._mirror = Output(config.output_dir, format=config.format, save_html=True)
        self.tally: Tally | None = None
        self._reported: int | None = None

    def split(self, entries: Iterable[Entry]) -> tuple[list[Entry], list[Entry]]:
        """The entries this process owns, and the others, which it routes to their
        owners. Every link passes here, so it is one loop: ownership is decided once
        per origin, and a URL is routed once (most links repeat; the owner dedups),
        which keeps the traffic to about one message per URL."""
        spec = self._spec
        owned: list[Entry] = []
        foreign: list[Entry] = []
        fresh: list[Entry] = []
        known, routed = self._owned, self._routed
        for entry in entries:
            url = entry.url
            if spec.split:
                mine: bool | None = url_owner(url, spec.processes) == spec.index
            else:
                # A normalised URL's origin (scheme, host, port) ends at its path's "/".
                origin = url[: url.find("/", len("https://"))]
                mine = known.get(origin)
                if mine is None:
                    mine = known[origin] = owner(url, spec.processes) == spec.index
            if mine:
                owned.append(entry)
                continue
            foreign.append(entry)
            if entry.is_continuation():
                fresh.append(entry)
            elif (key := fingerprint(url)) not in routed:
                routed.add(key)
                fresh.append(entry)
        if fresh:
            self._outbox.send(("route", pack_entries(fresh)))
        return owned, foreign

    async def drain(self) -> None:
        await self._outbox.drain()

    def added(self, entries: list[Entry]) -> None:
        if self.taking:
            # Routed here by the parent, which journaled them as it routed them.
            self._outbox.send(("taken", len(entries)))
        else:
            self._outbox.send(("added", pack_entries(entries)))

    def idle(self) -> None:
        if not self.taking and self._reported != self.consumed:
            self._reported = self.consumed
            self._outbox.send(("idle", self.consumed, self.counters()), now=True)

    def busy(self) -> None:
        self._reported = None

    def counters(self) -> dict[str, int]:
        tally = self.tally
        return {name: getattr(tally, name) for name in WORKER_COUNTS} if tally else {}

    @property
    def incremental(self) -> bool:
        return False

    async def load_robots(self, host: str) -> RobotsAnswer | None:
        """The host's robots.txt if another worker fetched it; when one has (the
        shared slot says so), its answer is on the way: wait for it, a while."""
        slot = self.shared_slot
        if host not in self._robots and slot is not None and slot.robots_learned():
            arrived = self._robots_arrived.setdefault(host, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ROBOTS_WAIT_SECONDS):
                    await arrived.wait()
        return self._robots.get(host)

    async def save_robots(self, host: str, answer: RobotsAnswer, crawl_delay: float) -> None:
        self._outbox.send(("robots", host, answer.pack()), now=True)

    def robots_received(self, host: str, packed: str) -> None:
        self._robots[host] = RobotsAnswer.unpack(packed)
        self._robots_arrived.setdefault(host, asyncio.Event()).set()

    def record(self, record: PageRecord, completion: Completion) -> None:
        self.links.track(record)
        self._outbox.send(pack_record(record, completion))

    def sitemap_done(self, url: str) -> None:
        self._outbox.send(("sitemap", url))

    def validators(self, url: str) -> Validators | None:
        return None

    def note_links(self, page: str, targets: list[str]) -> None:
        self.links.note(page, targets)

    async def save_html(self, url: str, body: bytes) -> None:
        # Each mirrored path is one URL's (a single host's URLs split between
        # workers may rarely collide on a path: the last one written stays).
        if self._mirror is not None:
            await self._mirror.save_html(url, body)


def worker_main(
    spec: WorkerSpec,
    end: socket.socket,
    counter: Synchronized[int],
    slot: SynchronizedArray[float] | None,
) -> None:
    """A worker process: ignore Ctrl-C (the parent stops us), run one engine."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_work(spec, Channel(end), counter, slot))


async def _work(
    spec: WorkerSpec,
    channel: Channel,
    counter: Synchronized[int],
    slot: SynchronizedArray[float] | None,
) -> None:
    await channel.open()
    try:
        await _crawl(spec, channel, counter, slot)
    except BaseException as error:
        channel.send([("failed", traceback.format_exc(), _summary(error))])
        raise
    finally:
        await channel.aclose()


def _summary(error: BaseException) -> str:
    """The error itself, out of the task groups it came through."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


async def _crawl(
    spec: WorkerSpec,
    channel: Channel,
    counter: Synchronized[int],
    slot: SynchronizedArray[float] | None,
) -> None:
    sender = _Outbox(channel)
    budget = SharedBudget(spec.config.max_pages, counter)
    shared = SharedSlot(slot) if slot is not None else None
    partition = _WorkerPartition(spec, sender, budget, shared)
    engine = Engine(spec.config, partition=partition)
    partition.tally = engine.tally
    reader = asyncio.create_task(_read_parent(channel, engine, partition), name="parent")
    try:
        await engine.run()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        sender.flush()
    referrers = partition.links.export(partition.broken)
    sender.send(("exit", partition.counters(), referrers), now=True)


async def _read_parent(channel: Channel, engine: Engine, partition: _WorkerPartition) -> None:
    """The parent's messages; its channel ending (the parent gone) stops the crawl."""
    await engine.ready.wait()
    while (message := await channel.receive()) is not None:
        if message[0] == "stop":
            partition.broken = message[1]
            break
        partition.taking = True
        try:
            if message[0] == "take":
                await engine.take(unpack_entries(message[1]))
            elif message[0] == "robots":
                partition.robots_received(message[1], message[2])
            else:
                await engine.restore(message[1], unpack_entries(message[2]))
            partition.consumed += 1
        finally:
            partition.taking = False
        partition.busy()
        if engine.idle():
            partition.idle()
    engine.stop()
