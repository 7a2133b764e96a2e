"""The front's child processes as the parent sees them: started, talked to, watched, reaped.

Each child is spawned with one end of a socket pair (channel.py) as a
Process argument; the parent keeps the other. What the parent must know of
each child for the termination rule (parent.py's invariants 1 and 2) is
kept here: how many messages it was sent, the consumed count of its last
idle report, whether it has said anything, and whether it has exited.
A child that dies is seen twice: its channel ends (after everything it sent
has been read) and its process sentinel fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import signal
import socket
from collections.abc import Iterable
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any

from crawler.config import CrawlConfig
from crawler.frontier.politeness import SharedSlot, first_limit
from crawler.procs.channel import Channel
from crawler.procs.wire import PARENTS_SIGNALS, ChildSpec, owner, share
from crawler.web.urls import host_of, normalize

# How long the parent waits for a child whose channel ended to be reaped.
REAP_SECONDS = 5.0


def _child_process(*args: Any) -> None:
    """The spawn target: the engine and aiohttp are imported in the children only."""
    from crawler.procs.child import child_main

    child_main(*args)


class Children:
    """The child processes of one front."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.forwarded = [0] * count
        self.idle: list[int | None] = [None] * count
        self.exited = [False] * count
        self.heard = [False] * count
        self._reaped = [asyncio.Event() for _ in range(count)]
        self.channels: list[Channel] = []
        self._processes: list[SpawnProcess] = []
        self.all_exited = asyncio.Event()
        # A single-host crawl: the host's URLs are split between the children.
        self.split = False
        self._outgoing: dict[int, list[tuple[Any, ...]]] = {}
        # The shared page counter and slot: held while the children live (a child
        # that unpickles them after the parent let them go finds nothing).
        self._shared: tuple[object, ...] = ()

    def start(self, config: CrawlConfig, *, pages_done: int) -> None:
        """Spawn the children, each with the crawl's config and one end of its channel,
        the shared page counter (--max-pages) and, for a single-host crawl whose URLs
        are split between them, the host's politeness slot in shared memory."""
        context = multiprocessing.get_context("spawn")
        counter = context.Value("q", pages_done)
        hosts = {host_of(url) for url in map(normalize, config.seeds) if url is not None}
        hosts.update(config.seed_hosts)
        self.split = len(hosts) == 1 and not config.allow_domain and not config.span_hosts
        slot = None
        if self.split:
            limit = first_limit(config.per_host, robots_first=True)  # as loop/runs.py
            initial = SharedSlot.initial(limit, config.delay, config.max_retry_after)
            slot = context.Array("d", initial)
        self._shared = (counter, slot)
        for index in range(self.count):
            own = dataclasses.replace(
                config, concurrency=share(config.concurrency, index, self.count)
            )
            self._spawn(context, ChildSpec(own, index, self.count, self.split), counter, slot)

    def _spawn(
        self,
        context: SpawnContext,
        spec: ChildSpec,
        counter: Synchronized[int],
        slot: SynchronizedArray[float] | None,
    ) -> None:
        mine, theirs = socket.socketpair()
        process = context.Process(
            target=_child_process,
            args=(spec, theirs, counter, slot),
            name=f"crawler-process-{spec.index}",
            daemon=True,
        )
        # Born with the parent's signals blocked (a signal mask outlives exec): one
        # sent to the whole process group while the child starts up waits for it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, PARENTS_SIGNALS)
        try:
            process.start()
        finally:
            # The parent's own signals, held back meanwhile, arrive now.
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            # Only the child holds its end: when it dies, the parent's end reads EOF.
            theirs.close()
        self.channels.append(Channel(mine))
        self._processes.append(process)

    async def open(self) -> None:
        """Watch every child's sentinel and open its channel, on the running loop."""
        loop = asyncio.get_running_loop()
        for index, process in enumerate(self._processes):
            loop.add_reader(process.sentinel, self._process_ended, index)
        for channel in self.channels:
            await channel.open()

    def send(self, index: int, message: tuple[Any, ...]) -> None:
        self.forwarded[index] += 1
        self.channels[index].send(message)

    def route(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Entries (as rows) for their owners, sent by flush_routes (one message per
        owner per batch)."""
        for row in rows:
            index = owner(row[0], self.count, split=self.split)
            self._outgoing.setdefault(index, []).append(row)

    def flush_routes(self, *, stopping: bool) -> None:
        outgoing, self._outgoing = self._outgoing, {}
        for index, rows in outgoing.items():
            if not self.exited[index] and not stopping:
                self.send(index, ("take", rows))

    def live(self) -> list[int]:
        """The children started and not exited (none before start())."""
        return [index for index in range(len(self.channels)) if not self.exited[index]]

    def drained(self) -> bool:
        """Invariant 2: every child idle, every message sent to it consumed."""
        return all(self.idle[i] == self.forwarded[i] for i in range(self.count))

    async def read(self, index: int, messages: asyncio.Queue[tuple[int, Any]]) -> None:
        """A child's batches, in order; then, once its channel ends, that it is gone."""
        channel = self.channels[index]
        while (batch := await channel.receive()) is not None:
            self.heard[index] = True
            await messages.put((index, batch))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_SECONDS):
                await self._reaped[index].wait()
        await messages.put((index, [("gone",)]))

    def mark_exited(self, index: int) -> None:
        self.exited[index] = True
        if all(self.exited):
            self.all_exited.set()

    def _process_ended(self, index: int) -> None:
        asyncio.get_running_loop().remove_reader(self._processes[index].sentinel)
        self._reaped[index].set()

    async def death(self, index: int) -> str:
        """Why a child whose channel ended without "exit" is gone."""
        process = self._processes[index]
        # Its sentinel fires as it exits, a moment before it can be reaped: wait for
        # that on the loop (a second at most), never in a blocking join.
        for _ in range(100):
            if process.exitcode is not None:
                break
            await asyncio.sleep(0.01)
        reason = f"process {index} of the front (pid {process.pid}) died with exit code"
        reason += f" {process.exitcode}"
        if not self.heard[index] and (process.exitcode or 0) > 0:
            # Most often a script that starts a crawl on import: the spawned child
            # imports the script again, and multiprocessing refuses to start there
            # (an exit code of 1; a negative one is a signal that killed it).
            reason += (
                " before it started (a script that runs a crawl with processes > 1 must"
                ' do so under `if __name__ == "__main__":`)'
            )
        return reason

    async def shut_down(self) -> None:
        """After the last files are written: close the channels, reap the children,
        waiting on their sentinels (never a blocking join on the caller's loop)."""
        for channel in self.channels:
            channel.close()
        for index, process in enumerate(self._processes):
            if process.is_alive() and not await self._reaped_within(index, 10):
                process.kill()
                await self._reaped_within(index, 5)
            process.join(0)  # it has exited: this only reaps it
        loop = asyncio.get_running_loop()
        for process in self._processes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(process.sentinel)

    async def _reaped_within(self, index: int, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._reaped[index].wait()
        return self._reaped[index].is_set()
