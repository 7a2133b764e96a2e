"""Group commit of a member's adds, acks and counters to the shared frontier.

Adds and acks wait for the member's next LEASE, or LINGER_SECONDS at most, and
go in one pipeline: ENQUEUE calls first, then one ACK (which also adds the
counters' deltas to the crawl's stats hash), then, when a lease asks for it,
LEASE. So a page's links are queued before it leaves the lease set, and a
member's own acks free its hosts' slots before it leases. While a lease
waits with nothing due (``urgent``), they go at once: it may be waiting for
them. Each ENQUEUE and ACK answers with the crawl's next due, for a lease
waiting for a later one (``LeaseNews``).
ENQUEUE refused by a Redis at maxmemory is back-pressure: its links are
counted as refused and said once in the log, and the crawl goes on.

Each ack carries its record's counters, which ACK adds only if the ack
holds; it answers with the tickets that were stale (their leases had
expired and were taken back, so another visit stands for them), and
once the round trip is back, only the records whose acks held are
counted in the member's tally (their counters marked as already in Redis)
and written (``after_ack``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors

from crawler.frontier.politeness import timer_at
from crawler.frontier.redis_codec import flat_counters
from crawler.frontier.redis_link import RedisLink
from crawler.stats import Tally

log = logging.getLogger(__name__)

# How long adds and acks wait for a LEASE to carry them. A politeness-bound member
# leases every few ms, so most ride with one; alone, one pipeline went out per add
# and per ack, and woke the waiting lease for one more (1.9 round trips a page).
LINGER_SECONDS = 0.02
# Longest sleep of a lease before asking Redis again (other members change what is due).
POLL_SECONDS = 0.05


class _Batch:
    """Adds and acks waiting for the next round trip."""

    def __init__(self) -> None:
        # Per add(): its ENQUEUE arguments (URLs encoded once), how many, its answer.
        self.adds: list[tuple[list[Any], int, asyncio.Future[list[int]]]] = []
        # Per ack(): ACK's values for it, and its record's counters (flat).
        self.acks: list[tuple[tuple[Any, ...], dict[str, int]]] = []


class LeaseNews:
    """What a member's round trips tell its lease waiting to ask Redis again: that one
    ended, with the crawl's next due as ENQUEUE or ACK said it (``due``: Redis ms, -1:
    none). While the lease waits with nothing due (``urgent``), adds and acks do not
    linger: it may be waiting for them."""

    def __init__(self) -> None:
        self.due: int | None = None
        self._ended = asyncio.Event()
        self._urgent = False
        self._hurried = asyncio.Event()

    def heard(self) -> None:
        """A round trip ended (or the member closed, or took back given-up leases)."""
        self._ended.set()

    def hurry(self, urgent: bool) -> None:
        self._urgent = urgent
        if urgent:
            self._hurried.set()
        else:
            self._hurried.clear()

    async def linger(self) -> None:
        """Wait LINGER_SECONDS for a lease to carry what waits, unless urgent."""
        if not self._urgent:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_SECONDS):
                    await self._hurried.wait()

    async def until_due(
        self, now: int, due: int, redis_ms: Callable[[], float], interrupted: Callable[[], bool]
    ) -> None:
        """Wait until the crawl's next entry is due (``due``, Redis ms at ``now``; -1:
        none), or POLL_SECONDS at most. A round trip of this member's ends the wait if it
        is the news awaited: any, when nothing was due (an ack frees a host, an add
        queues one); a sooner due, when one was. So does ``interrupted()``."""
        nothing_due = due < 0
        loop = asyncio.get_running_loop()
        if nothing_due:
            until = loop.time() + POLL_SECONDS
        else:  # a timer that fires no sooner than the due time (politeness.timer_at)
            until = timer_at(time.monotonic() + min(max(due - now, 1) / 1000, POLL_SECONDS))
        self.hurry(nothing_due)
        try:
            while until > loop.time():
                self._ended.clear()
                try:
                    async with asyncio.timeout_at(until):
                        await self._ended.wait()
                except TimeoutError:
                    return
                heard = self.due
                if nothing_due or interrupted() or heard is None or heard < 0:
                    return
                if heard < due:
                    until = min(until, timer_at(time.monotonic() + (heard - redis_ms()) / 1000))
                    due = heard
        finally:
            self.hurry(False)


class GroupCommit:
    """The adds and acks of one member, sent a round trip at a time."""

    def __init__(
        self,
        link: RedisLink,
        tally: Tally,
        common: Callable[[], list[Any]],
        on_failure: Callable[[Exception], None],
    ) -> None:
        self._link = link
        self._tally = tally
        # The ARGV every script starts with (settled when the crawl is joined).
        self._common = common
        self._on_failure = on_failure
        # What waits for a ticket's ack to hold: its record's counters (flat), which
        # go with the ACK, and what counts and writes the record in this member.
        self._waiting: dict[int, tuple[dict[str, int], list[Callable[[], None]]]] = {}
        self.host_cap = 0
        self.backoff_cap_ms = 60_000
        self._batch = _Batch()
        self._settling: asyncio.Task[None] | None = None
        # What each round trip tells a lease waiting to ask again.
        self.news = LeaseNews()
        self._pushed: dict[str, int] = {}
        self._warned_full = False
        self.failed = False

    async def add(self, args: list[Any], count: int) -> list[int]:
        """ENQUEUE ``count`` entries (their arguments); each one's result."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._batch.adds.append((args, count, future))
        self._start()
        return await future

    def after_ack(self, ticket: int, counts: dict[str, int], then: Callable[[], None]) -> None:
        """A record of the lease ``ticket``: ``counts`` go with its ACK, added only if
        the ACK holds, and then ``then`` is called; neither if it is stale."""
        flat, waiting = self._waiting.setdefault(ticket, ({}, []))
        for name, value in counts.items():
            if value:
                flat[name] = flat.get(name, 0) + value
        waiting.append(then)

    def ack(self, values: tuple[Any, ...]) -> None:
        """ACK one lease (``values`` from redis_codec.ack_args, its ticket first)."""
        counts, _ = self._waiting.get(int(values[0]), ({}, []))
        self._batch.acks.append((values, counts))
        self._start()

    def _start(self) -> None:
        if self._settling is None or self._settling.done():
            self._settling = asyncio.create_task(self._loop(), name="settle")

    async def _loop(self) -> None:
        while self._batch.adds or self._batch.acks:
            await self.news.linger()  # a lease may take them meanwhile
            if not (self._batch.adds or self._batch.acks):
                return
            try:
                await self.now()
            except Exception as error:
                self.failed = True
                self._on_failure(error)
                return

    async def all(self) -> None:
        """Wait for the round trip out, then send what is left, until nothing is:
        acks that hold count their records, whose counters go in one more."""
        self.news.hurry(True)
        if self._settling is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._settling
        await self.now()
        while self._batch.adds or self._batch.acks or self._counter_deltas():
            await self.now()

    def cancel(self) -> None:
        if self._settling is not None and not self._settling.done():
            self._settling.cancel()

    async def now(self, then: tuple[str, list[Any]] | None = None) -> Any:
        """Send the waiting adds and acks (ENQUEUE before ACK) and the counters, then
        ``then`` (a LEASE) in the same round trip; return ``then``'s result."""
        batch, self._batch = self._batch, _Batch()
        self.news.due = None
        deltas = self._counter_deltas()
        common = self._common()
        calls = [("enqueue", [*common, self.host_cap, *args]) for args, _, _ in batch.adds]
        if batch.acks or deltas:
            args = [*common, self.backoff_cap_ms, len(batch.acks)]
            for values, counts in batch.acks:
                args += [*values, len(counts)]
                args += [value for pair in counts.items() for value in pair]
            args += [value for pair in deltas.items() for value in pair]
            calls.append(("ack", args))
        if then is not None:
            calls.append(then)
        if not calls:
            return None
        try:
            results = await self._link.pipeline(calls)
        except BaseException as error:
            for _, _, future in batch.adds:
                if not future.done():
                    future.set_exception(error)
            raise
        for (_, count, future), result in zip(batch.adds, results, strict=False):
            if isinstance(result, redis_errors.ResponseError):
                self._refused(count, result)
                result = [0] * count
            else:
                self.news.due = int(result.pop())
            if not future.done():
                future.set_result([int(value) for value in result])
        if batch.acks or deltas:
            answer = results[len(batch.adds)]  # ACK's: the stale tickets, the next due
            if isinstance(answer, Exception):
                raise answer
            self._pushed_in(deltas)
            self.news.due = int(answer.pop())
            stale = {int(ticket) for ticket in answer}
            self._acked([int(values[0]) for values, _ in batch.acks], stale)
        self.news.heard()
        if then is None:
            return None
        if isinstance(results[-1], Exception):
            raise results[-1]
        return results[-1]

    def _acked(self, tickets: list[int], stale: set[int]) -> None:
        """The acks are back: a record whose ack held is counted (its counters are
        in Redis already) and written; one whose ack was stale is dropped."""
        for ticket in tickets:
            counts, waiting = self._waiting.pop(ticket, ({}, []))
            if ticket not in stale:
                self._pushed_in(counts)
                for then in waiting:
                    then()
            elif waiting:
                log.warning(
                    "a lease expired before its ack (this member stalled): "
                    "its record is dropped, another visit of the URL stands"
                )

    def _refused(self, count: int, error: Exception) -> None:
        """ENQUEUE refused (Redis at maxmemory): back-pressure, counted and said, never silent."""
        if not isinstance(error, redis_errors.OutOfMemoryError):
            raise error
        if not self._warned_full:
            self._warned_full = True
            log.warning("%s is full (maxmemory): new links are refused and counted", self._link.url)
        self._tally.refused_links += count

    def _counter_deltas(self) -> dict[str, int]:
        flat = flat_counters(self._tally.counters())
        return {
            name: value - self._pushed.get(name, 0)
            for name, value in flat.items()
            if value != self._pushed.get(name, 0)
        }

    def _pushed_in(self, deltas: dict[str, int]) -> None:
        """These counters' deltas are in Redis."""
        for name, delta in deltas.items():
            self._pushed[name] = self._pushed.get(name, 0) + delta
