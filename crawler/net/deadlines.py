"""Request deadlines (--timeout) that share their timers.

asyncio.timeout() makes a timer for each request, and its handle, its heap
entry and its cancellation cost about 10 us a request: 2% of a crawl's CPU.
Here every request due in the same tick (TICK seconds) shares one timer, so a
request is cut between its timeout and TICK later. The semantics are
asyncio.timeout's: when a deadline passes, its task is cancelled; ``cut()``
tells that cancellation from any other (Ctrl-C, a stopping crawl), which is
passed on.
"""

from __future__ import annotations

import asyncio
import math

TICK = 0.1


class Deadline:
    """One request's deadline, from ``Deadlines.start`` to ``end``."""

    __slots__ = ("_cancelling", "_due", "_expired", "_task")

    def __init__(self, task: asyncio.Task[object], due: set[Deadline]) -> None:
        self._task = task
        self._cancelling = task.cancelling()
        self._due = due
        self._expired = False

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def cut(self) -> bool:
        """Whether the CancelledError being handled is this deadline's (then it is
        taken back: the request failed with a timeout, the task goes on)."""
        return self._expired and self._task.uncancel() <= self._cancelling

    def end(self) -> None:
        self._due.discard(self)


class Deadlines:
    """The deadlines of one event loop's requests, a timer for each tick that has any."""

    def __init__(self) -> None:
        self._due: dict[int, set[Deadline]] = {}

    def start(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now for the current task; call its ``end()`` after."""
        task = asyncio.current_task()
        assert task is not None, "a deadline needs a task"
        loop = task.get_loop()
        tick = math.ceil((loop.time() + seconds) / TICK)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
            loop.call_at(tick * TICK, self._expire, tick)
        deadline = Deadline(task, due)
        due.add(deadline)
        return deadline

    def _expire(self, tick: int) -> None:
        for deadline in self._due.pop(tick, ()):
            deadline.expire()
