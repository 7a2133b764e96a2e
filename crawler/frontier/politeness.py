"""Per-host slots: how many requests may be in flight to a host, and when the next may start.

A slot is a small data model (after
Scrapy's downloader Slot); the frontier asks it when a host is ready and tells
it when a request starts and how it ended. The gap between two request starts
to one host is max(--delay, robots.txt Crawl-delay, current back-off), and a
Retry-After pushes the next start out on top of that. The gap is kept again as
each request leaves (``send_wait``, through ``Politeness.pace``, which the fetcher
awaits): whatever held a leased request up on its way (a queue, a busy loop, a
timer that fired late), no two requests to a host are sent closer than the gap.

A SharedSlot is the same model kept in shared memory, for a host whose URLs
the multiprocessing front splits between its processes (a single-host crawl):
every process checks and starts under one lock, on the system-wide monotonic
clock, so the host's bound and gap hold for all of them together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import operator
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any, Protocol

# Back-off after a 429/503: the gap doubles from this floor up to the slot's
# cap (--max-retry-after), and halves again on each success until it falls
# below the floor.
BACKOFF_FLOOR = 0.5
THROTTLE_STATUSES = frozenset({429, 503})
# A running loop's clock this far from time.monotonic() is a clock of its own (timer_at).
OWN_CLOCK_SECONDS = 0.05


@dataclass(slots=True)
class HostSlot:
    """The politeness state of one host (scheme-less network location)."""

    limit: int
    delay: float
    backoff_cap: float = 60.0
    in_flight: int = 0
    last_start: float = -math.inf
    crawl_delay: float = 0.0
    backoff: float = 0.0
    not_before: float = -math.inf
    # When the last request left (Politeness.pace).
    last_sent: float = -math.inf

    def gap(self) -> float:
        return max(self.delay, self.crawl_delay, self.backoff)

    def ready_at(self) -> float:
        """The monotonic time the next request may start, inf while the slot is full."""
        if self.in_flight >= self.limit:
            return math.inf
        return max(max(self.last_start, self.last_sent) + self.gap(), self.not_before)

    def start(self, now: float) -> None:
        self.in_flight += 1
        self.last_start = now

    def send_wait(self, now: float) -> float:
        """0 if a request may leave at ``now`` (a gap after the last one left), and it
        is taken as sent; else how long to wait before asking again. The moment taken
        is when it leaves, not when it was leased or meant to leave: a request held up
        on its way (a queue, a busy loop, a wake-up late) moves the next one too."""
        wait = self.last_sent + self.gap() - now
        if wait > 0:
            return wait
        self.last_sent = now
        return 0.0

    def sent(self, now: float) -> None:
        """The request that ``send_wait`` let go leaves only now (its connection was
        made, or the loop was busy): the next one counts from now."""
        self.last_sent = max(self.last_sent, now)

    def try_start(self, now: float) -> bool:
        """Start a request if the slot allows one at ``now``."""
        if self.ready_at() > now:
            return False
        self.start(now)
        return True

    def robots_known(self, limit: int, crawl_delay: float) -> None:
        self.limit = limit
        self.crawl_delay = crawl_delay

    def finish(self, now: float, status: int | None, retry_after: float | None) -> None:
        self.in_flight -= 1
        if status in THROTTLE_STATUSES:
            self.backoff = min(max(self.backoff * 2, BACKOFF_FLOOR), self.backoff_cap)
        elif status is not None and status < 400 and self.backoff:
            self.backoff = self.backoff / 2 if self.backoff / 2 >= BACKOFF_FLOOR else 0.0
        if retry_after is not None:
            self.not_before = max(self.not_before, now + retry_after)


class Slot(Protocol):
    def gap(self) -> float: ...

    def ready_at(self) -> float: ...

    def try_start(self, now: float) -> bool: ...

    def send_wait(self, now: float) -> float: ...

    def sent(self, now: float) -> None: ...

    def finish(self, now: float, status: int | None, retry_after: float | None) -> None: ...

    def robots_known(self, limit: int, crawl_delay: float) -> None: ...


# While a shared slot is full, the processes look again this often.
SHARED_POLL_SECONDS = 0.001
# A shared slot's array: HostSlot's fields in order, then the robots flag.
_SLOT_FIELDS = tuple(field.name for field in dataclasses.fields(HostSlot))
_ROBOTS_LEARNED = len(_SLOT_FIELDS)
_fields_of = operator.attrgetter(*_SLOT_FIELDS)


class SharedSlot:
    """A HostSlot in shared memory: a multiprocessing Array of its fields and one
    more value, 1 once some process has learned the host's robots.txt. Asked three
    times a page: the raw array is read and written under the lock taken once."""

    def __init__(self, values: SynchronizedArray[float]) -> None:
        self._values = values
        self._lock = values.get_lock()
        self._raw = values.get_obj()

    @staticmethod
    def initial(limit: int, delay: float, backoff_cap: float) -> list[float]:
        """The array's starting values (a new HostSlot's fields, in order)."""
        return [*_fields_of(HostSlot(limit, delay, backoff_cap)), 0.0]

    def _read(self) -> HostSlot:
        """The slot as it is now (the caller holds the lock); its counts are floats,
        as the array keeps them."""
        values: list[Any] = self._raw[:_ROBOTS_LEARNED]
        return HostSlot(*values)

    def _write(self, slot: HostSlot) -> None:
        """The slot back into the array (the caller holds the lock)."""
        self._raw[:_ROBOTS_LEARNED] = list(_fields_of(slot))

    def ready_at(self) -> float:
        with self._lock:
            ready = self._read().ready_at()
        if ready == math.inf:
            # Full, maybe with another process's requests: look again at the next
            # tick (a stable time within a tick, so the frontier's heap settles).
            ready = (math.floor(time.monotonic() / SHARED_POLL_SECONDS) + 1) * SHARED_POLL_SECONDS
        return ready

    def try_start(self, now: float) -> bool:
        with self._lock:
            slot = self._read()
            if not slot.try_start(now):
                return False
            self._write(slot)
            return True

    def gap(self) -> float:
        with self._lock:
            return self._read().gap()

    def sent(self, now: float) -> None:
        with self._lock:
            slot = self._read()
            slot.sent(now)
            self._write(slot)

    def send_wait(self, now: float) -> float:
        with self._lock:
            slot = self._read()
            wait = slot.send_wait(now)
            if not wait:
                self._write(slot)
        return wait

    def finish(self, now: float, status: int | None, retry_after: float | None) -> None:
        with self._lock:
            slot = self._read()
            slot.finish(now, status, retry_after)
            self._write(slot)

    def robots_known(self, limit: int, crawl_delay: float) -> None:
        with self._lock:
            slot = self._read()
            slot.robots_known(limit, crawl_delay)
            self._write(slot)
            self._raw[_ROBOTS_LEARNED] = 1.0

    def robots_learned(self) -> bool:
        """Whether some process has learned the host's robots.txt."""
        return bool(self._values[_ROBOTS_LEARNED])


class Politeness:
    """The slots of every host of one crawl (or one slot shared by processes)."""

    def __init__(
        self,
        per_host: int,
        delay: float,
        *,
        robots_first: bool,
        backoff_cap: float = 60.0,
        shared: SharedSlot | None = None,
    ) -> None:
        self._per_host = per_host
        self._delay = delay
        self._backoff_cap = backoff_cap
        self.first_limit = first_limit(per_host, robots_first=robots_first)
        self._slots: dict[str, HostSlot] = {}
        self._shared = shared

    def slot(self, host: str) -> Slot:
        if self._shared is not None:
            return self._shared
        slot = self._slots.get(host)
        if slot is None:
            slot = HostSlot(self.first_limit, self._delay, self._backoff_cap)
            self._slots[host] = slot
        return slot

    def robots_known(self, host: str, crawl_delay: float) -> None:
        self.slot(host).robots_known(self._per_host, crawl_delay)

    def sent(self, host: str) -> None:
        self.slot(host).sent(time.monotonic())

    async def pace(self, host: str) -> None:
        """Wait until a request to ``host`` may leave (HostSlot.send_wait): the gap is
        kept between the requests as they are sent, not as they were leased."""
        slot = self.slot(host)
        while True:
            now = time.monotonic()
            wait = slot.send_wait(now)
            if not wait:
                return
            await sleep_until(now + wait)  # then ask again: another may have left meanwhile


def timer_at(due: float) -> float:
    """The running loop's time to set a timer for that fires no sooner than ``due`` (a
    time.monotonic()). asyncio's and uvloop's loops keep time.monotonic()'s clock: the
    next whole millisecond after ``due``. uvloop's timers count whole milliseconds on
    a clock read to the millisecond, and one set for ``due`` itself fired up to 1.5 ms
    before it: the waiter looked, found nothing due and slept again, or spun on timers
    rounded to none (a 500-host crawl's dispatcher woke 3.6 times a lease). A loop on
    a clock of its own (an embedding program's, a test's virtual time) is given the
    time left on its clock."""
    loop_now, now = asyncio.get_running_loop().time(), time.monotonic()
    if abs(loop_now - now) > OWN_CLOCK_SECONDS:
        return loop_now + (due - now)
    return math.ceil(due * 1000) / 1000


async def sleep_until(due: float) -> None:
    """Sleep until time.monotonic() has reached ``due`` (``timer_at``)."""
    await asyncio.sleep(timer_at(due) - asyncio.get_running_loop().time())


def first_limit(per_host: int, *, robots_first: bool) -> int:
    """Until a host's robots.txt is known, one request at a time: the robots fetch."""
    return 1 if robots_first else per_host
