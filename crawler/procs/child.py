"""A child process of the multiprocessing front (parent.py has the rules).

It runs one Engine over the hosts it owns, in a run mode of its own
(ChildRun): its frontier is a PartitionedFrontier (partition.py) and its
sink sends everything to the parent in batches over its channel: records,
sitemaps done, a split host's robots.txt, and at the end its counters and
who links to the URLs found broken ("exit"). It ignores SIGINT and SIGTERM:
the parent stops it by message, or by closing the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import traceback
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray

from crawler import runtime
from crawler.frontier.politeness import SharedSlot
from crawler.frontier.protocol import HostBudget
from crawler.loop.engine import Engine
from crawler.loop.recording import Recorder
from crawler.loop.runs import Opened, politeness_for
from crawler.output.files import Output
from crawler.output.links import LinkIndex
from crawler.procs.channel import Channel
from crawler.procs.partition import Outbox, PartitionedFrontier, SharedBudget
from crawler.procs.wire import PARENTS_SIGNALS, ChildSpec, pack_record, share, unpack_entries
from crawler.records import Completion, CrawlStats, PageRecord, Validators
from crawler.stats import Tally
from crawler.web.robots import RobotsAnswer

# How long a child waits for a split host's robots.txt that another child has
# fetched, before fetching it itself.
ROBOTS_WAIT_SECONDS = 1.0


class ChildSink:
    """Where a child's results go: to the parent. Also, for a split host, where its
    robots.txt is shared (the RobotsStore of loop/hosts.py)."""

    def __init__(self, spec: ChildSpec, outbox: Outbox, shared_slot: SharedSlot | None) -> None:
        self._outbox = outbox
        self._shared_slot = shared_slot
        self._robots: dict[str, RobotsAnswer] = {}
        self._robots_arrived: dict[str, asyncio.Event] = {}
        self.links = LinkIndex()
        config = spec.config
        self._mirror = None
        if config.save_html and config.output_dir is not None:
            self._mirror = Output(config.output_dir, format=config.format, save_html=True)

    @property
    def incremental(self) -> bool:
        return False

    def record(self, record: PageRecord, completion: Completion) -> None:
        self.links.track(record)
        self._outbox.send(pack_record(record, completion))

    def done_unrecorded(self, url: str) -> None:
        self._outbox.send(("done", url))

    def validators(self, url: str) -> Validators | None:
        return None

    def note_links(self, page: str, targets: list[str]) -> None:
        self.links.note(page, targets)

    async def save_html(self, url: str, body: bytes) -> None:
        # Each mirrored path is one URL's (a single host's URLs split between
        # processes may rarely collide on a path: the last one written stays).
        if self._mirror is not None:
            await self._mirror.save_html(url, body)

    async def load_robots(self, host: str) -> RobotsAnswer | None:
        """The host's robots.txt if another process fetched it; when one has (the
        shared slot says so), its answer is on the way: wait for it, a while."""
        slot = self._shared_slot
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


class ChildRun:
    """The run mode of a child: its config was settled by the parent."""

    def __init__(
        self,
        spec: ChildSpec,
        outbox: Outbox,
        counter: Synchronized[int],
        slot: SynchronizedArray[float] | None,
    ) -> None:
        self.spec = spec
        self._outbox = outbox
        self._counter = counter
        self._shared_slot = SharedSlot(slot) if slot is not None else None
        self.sink = ChildSink(spec, outbox, self._shared_slot)
        self.frontier: PartitionedFrontier | None = None
        self.recorder: Recorder | None = None
        # Set once the engine takes entries: the parent's messages wait for it.
        self.ready = asyncio.Event()

    async def open(self, tally: Tally, stopping: Callable[[], bool]) -> Opened:
        config = self.spec.config
        politeness = politeness_for(config, self._shared_slot)
        budget = SharedBudget(config.max_pages, self._counter)
        per_host = config.max_pages_per_host
        if self.spec.split and per_host is not None:  # one host's pages, split: a share each
            per_host = share(per_host, self.spec.index, self.spec.processes)
        host_budget = HostBudget(per_host, tally, self.sink.done_unrecorded)
        frontier = PartitionedFrontier(
            self.spec, self._outbox, politeness, budget, host_budget, tally
        )
        self.frontier = frontier
        # A split host's robots.txt is fetched by one process and sent to the others.
        store = self.sink if self.spec.split else None
        return Opened(config, frontier, politeness, sink=self.sink, robots_store=store)

    def started(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.ready.set()

    async def close(self, stats: CrawlStats) -> CrawlStats:
        if self.frontier is not None:
            self.frontier.spill.close()
        return stats


def child_main(
    spec: ChildSpec,
    end: socket.socket,
    counter: Synchronized[int],
    slot: SynchronizedArray[float] | None,
) -> None:
    """A child process: ignore Ctrl-C and SIGTERM, which systemd and timeout send the
    whole process group (the parent stops us, by message), run one engine. They were
    blocked from birth (children.py): one that came meanwhile is dropped here."""
    for signum in PARENTS_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENTS_SIGNALS)
    runtime.collect_seldom()
    runtime.run(_work(spec, Channel(end), counter, slot))


async def _work(
    spec: ChildSpec,
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
    spec: ChildSpec,
    channel: Channel,
    counter: Synchronized[int],
    slot: SynchronizedArray[float] | None,
) -> None:
    outbox = Outbox(channel)
    run = ChildRun(spec, outbox, counter, slot)
    engine = Engine(spec.config, run=run)
    broken: list[str] = []
    reader = asyncio.create_task(_read_parent(channel, engine, run, broken), name="parent")
    try:
        await engine.run()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        outbox.flush()
    assert run.frontier is not None
    referrers = run.sink.links.export(broken)
    outbox.send(("exit", run.frontier.counters(), referrers), now=True)


async def _read_parent(channel: Channel, engine: Engine, run: ChildRun, broken: list[str]) -> None:
    """The parent's messages; its channel ending (the parent gone) stops the crawl.
    "stop" brings the URLs the parent knew broken (``broken`` is filled)."""
    await run.ready.wait()
    frontier, recorder = run.frontier, run.recorder
    assert frontier is not None and recorder is not None
    while (message := await channel.receive()) is not None:
        kind = message[0]
        if kind == "stop":
            broken.extend(message[1])
            break
        if kind == "take":
            for hop in await frontier.take(unpack_entries(message[1])):
                await recorder.redirect_seen(hop)
        elif kind == "robots":
            run.sink.robots_received(message[1], message[2])
        else:
            frontier.restore(message[1], unpack_entries(message[2]))
        frontier.consumed_one()
    engine.stop()
