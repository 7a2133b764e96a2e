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
import socket
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any

from crawler.procs.channel import Channel
from crawler.procs.wire import ChildSpec

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
        # The shared page counter and slot: held while the children live (a child
        # that unpickles them after the parent let them go finds nothing).
        self._shared: tuple[object, ...] = ()

    def start(
        self,
        context: SpawnContext,
        specs: list[ChildSpec],
        counter: Synchronized[int],
        slot: SynchronizedArray[float] | None,
    ) -> None:
        self._shared = (counter, slot)
        for spec in specs:
            mine, theirs = socket.socketpair()
            process = context.Process(
                target=_child_process,
                args=(spec, theirs, counter, slot),
                name=f"crawler-process-{spec.index}",
                daemon=True,
            )
            try:
                process.start()
            finally:
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

    def live(self) -> list[int]:
        return [index for index in range(self.count) if not self.exited[index]]

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

    def death(self, index: int) -> str:
        """Why a child whose channel ended without "exit" is gone."""
        process = self._processes[index]
        process.join(1)  # its sentinel fires as it exits, a moment before it can be reaped
        reason = f"process {index} of the front (pid {process.pid}) died with exit code"
        reason += f" {process.exitcode}"
        if not self.heard[index]:
            # Most often a script that starts a crawl on import: the spawned child
            # imports the script again, and multiprocessing refuses to start there.
            reason += (
                " before it started (a script that runs a crawl with processes > 1 must"
                ' do so under `if __name__ == "__main__":`)'
            )
        return reason

    def shut_down(self) -> None:
        """After the last files are written: close the channels, reap the children."""
        loop = asyncio.get_running_loop()
        for process in self._processes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(process.sentinel)
        for channel in self.channels:
            channel.close()
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
