"""The in-memory frontier and politeness slots: scheduling without a network."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import busy_loop
from crawler.frontier.memory import MemoryFrontier
from crawler.frontier.politeness import BACKOFF_FLOOR, HostSlot, Politeness
from crawler.frontier.protocol import Lease
from crawler.records import Entry


def frontier(per_host: int = 2, delay: float = 0.0, max_pages: int | None = None) -> MemoryFrontier:
    return MemoryFrontier(Politeness(per_host, delay, robots_first=False), max_pages=max_pages)


async def one(front: MemoryFrontier) -> Lease | None:
    leases = await front.lease()
    return leases[0] if leases else None


async def lease_now(front: MemoryFrontier, wait: float = 0.05):  # type: ignore[no-untyped-def]
    """The next lease if one comes within ``wait`` seconds, else None."""
    try:
        return await asyncio.wait_for(one(front), wait)
    except TimeoutError:
        return None


async def test_duplicates_are_dropped() -> None:
    front = frontier()
    added = await front.add([Entry("http://a.org/", 0), Entry("http://a.org/", 1)])
    assert len(added) == 1
    assert await front.add([Entry("http://a.org/", 0)]) == []
    assert front.pending() == 1


async def test_per_host_limit_holds_until_ack() -> None:
    front = frontier(per_host=2)
    await front.add(Entry(f"http://a.org/{n}", 0) for n in range(4))
    first, second = await one(front), await one(front)
    assert first and second
    assert await lease_now(front) is None
    await front.ack(first, 200, None)
    third = await lease_now(front)
    assert third is not None and third.entry.url == "http://a.org/2"


async def test_gap_between_starts_to_one_host() -> None:
    front = frontier(per_host=4, delay=0.2)
    await front.add(Entry(f"http://a.org/{n}", 0) for n in range(2))
    started = time.monotonic()
    await one(front)
    await one(front)
    assert time.monotonic() - started >= 0.2


async def test_a_waiting_host_does_not_hold_up_others() -> None:
    front = frontier(per_host=1)
    await front.add([Entry("http://slow.org/1", 0), Entry("http://slow.org/2", 0)])
    lease = await one(front)
    assert lease is not None
    await front.ack(lease, 503, 30.0)  # the slow host must now wait 30 s
    await front.add([Entry("http://fast.org/1", 0)])
    other = await lease_now(front, 1.0)
    assert other is not None and other.host == "fast.org"


async def test_max_pages_leases_only_continuations_after_the_limit() -> None:
    front = frontier(per_host=4, max_pages=1)
    await front.add([Entry("http://a.org/1", 0), Entry("http://a.org/2", 0)])
    first = await one(front)
    assert first is not None
    hop = Entry("http://a.org/moved", 0, origin=first.entry.url)
    await front.add([hop], first=True)
    await front.ack(first, 301, None)
    continuation = await lease_now(front)
    assert continuation is not None and continuation.entry == hop
    await front.ack(continuation, 200, None)
    assert await lease_now(front) is None or front.is_finished()
    assert await one(front) is None
    assert front.pending() == 1


async def test_lease_returns_none_when_finished_or_closed() -> None:
    front = frontier()
    assert await one(front) is None
    await front.add([Entry("http://a.org/", 0)])
    front.close()
    assert await one(front) is None


async def test_requeue_puts_the_entry_first() -> None:
    front = frontier(per_host=1)
    await front.add([Entry("http://a.org/1", 0), Entry("http://a.org/2", 0)])
    lease = await one(front)
    assert lease is not None
    await front.requeue(lease, Entry("http://a.org/1", 0, attempts=1, leases=1), 500, None)
    again = await lease_now(front)
    assert again is not None and again.entry.attempts == 1


def test_backoff_doubles_on_throttling_and_decays_on_success() -> None:
    slot = HostSlot(limit=1, delay=0.0)
    for expected in (BACKOFF_FLOOR, BACKOFF_FLOOR * 2, BACKOFF_FLOOR * 4):
        slot.start(0.0)
        slot.finish(0.0, 429, None)
        assert slot.backoff == expected
    slot.start(0.0)
    slot.finish(0.0, 200, None)
    assert slot.backoff == BACKOFF_FLOOR * 2
    slot.start(0.0)
    slot.finish(10.0, 503, 7.0)
    assert slot.not_before == 17.0
    assert slot.ready_at() == 17.0


@pytest.mark.parametrize("robots_first", [True, False])
def test_one_request_at_a_time_until_robots_is_known(robots_first: bool) -> None:
    politeness = Politeness(per_host=4, delay=0.0, robots_first=robots_first)
    assert politeness.slot("a.org").limit == (1 if robots_first else 4)
    politeness.robots_known("a.org", crawl_delay=2.0)
    assert politeness.slot("a.org").limit == 4
    assert politeness.slot("a.org").gap() == 2.0


async def test_a_delayed_retry_does_not_hold_back_its_host() -> None:
    front = frontier(per_host=1)
    await front.add([Entry("http://a.org/1", 0), Entry("http://a.org/2", 0)])
    lease = await one(front)
    assert lease is not None
    retry = Entry("http://a.org/1", 0, attempts=1, leases=1)
    await front.requeue(lease, retry, 500, None, delay=0.3)
    started = time.monotonic()
    second = await lease_now(front)
    assert second is not None and second.entry.url == "http://a.org/2"
    await front.ack(second, 200, None)
    third = await one(front)
    assert third is not None and third.entry == retry
    assert time.monotonic() - started >= 0.3
    await front.ack(third, 200, None)
    assert await one(front) is None


def _looks(front: MemoryFrontier, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times ``front``'s lease looks at its queues from now on."""
    looks: list[float] = []
    release = front._queues.release_delayed
    monkeypatch.setattr(
        front._queues, "release_delayed", lambda now: looks.append(now) or release(now)
    )
    return looks


async def test_a_waiting_lease_wakes_only_for_an_entry_due_sooner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front = frontier(per_host=2, delay=5.0)
    await front.add([Entry("http://a.org/0", 0), Entry("http://a.org/1", 0)])
    first = await one(front)
    assert first is not None
    looks = _looks(front, monkeypatch)
    waiting = asyncio.create_task(one(front))  # a.org waits out its 5 s gap
    await asyncio.sleep(0.05)
    await front.ack(first, 200, None)  # a.org's next start is no sooner
    await front.add([Entry("http://a.org/2", 1)])
    await asyncio.sleep(0.05)  # time for a look it would take
    assert len(looks) == 1 and not waiting.done()
    await front.add([Entry("http://b.org/", 1)])  # a host free now
    other = await asyncio.wait_for(waiting, 4)
    assert other is not None and other.host == "b.org" and len(looks) == 2
    waiting = asyncio.create_task(one(front))
    await asyncio.sleep(0.05)  # it waits for a.org again
    hop = Entry("http://c.org/", 1, attempts=1, leases=1)
    await front.requeue(other, hop, 500, None, delay=0.2)  # due before a.org
    again = await asyncio.wait_for(waiting, 4)
    assert again is not None and again.entry == hop


def test_on_uvloop_a_waiting_lease_wakes_once_its_due_time_has_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop's timers count whole milliseconds and fire up to 1.5 ms early: a lease
    that woke before its entry was due looked, found nothing and slept again (3.6 looks
    a lease in a 500-host crawl)."""
    uvloop = pytest.importorskip("uvloop")
    front = frontier(per_host=1, delay=0.01)
    looks = _looks(front, monkeypatch)

    async def crawl(pages: int) -> None:
        await front.add(Entry(f"http://a.org/{n}", 0) for n in range(pages))
        with busy_loop():
            for _ in range(pages):
                lease = await asyncio.wait_for(one(front), 4)
                assert lease is not None
                await front.ack(lease, 200, None)

    uvloop.run(crawl(20))
    # The first lease looks once; each other waits out the gap once, then takes its page
    # (or, on a machine so busy that the gap has passed, takes it at its first look).
    assert len(looks) <= 1 + 2 * 19 and front.pending() == 0


def test_on_uvloop_a_request_waiting_for_its_gap_sleeps_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request waiting at the door for its host's gap (Politeness.pace) slept again
    when its timer fired early, and spun where the time left rounded to no timer."""
    uvloop = pytest.importorskip("uvloop")
    politeness = Politeness(1, 0.01, robots_first=False)
    sleeps: list[float] = []
    sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", lambda wait: sleeps.append(wait) or sleep(wait))

    async def requests(count: int) -> None:
        with busy_loop():
            for _ in range(count):
                await asyncio.wait_for(politeness.pace("a.org"), 4)
                politeness.sent("a.org")

    uvloop.run(requests(20))
    assert len(sleeps) <= 19  # one a request but the first (none if the gap has passed)


def test_on_a_loop_with_a_clock_of_its_own_waits_for_a_due_time_end() -> None:
    """A program that embeds the crawler may run a loop whose clock is not
    time.monotonic()'s (a virtual clock from 0): waits for a due time go by its clock,
    not for the hours between the two."""

    class Behind(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return time.monotonic() - 1000.0

    front = frontier(per_host=1, delay=0.05)
    politeness = Politeness(1, 0.05, robots_first=False)

    async def crawl() -> None:
        await front.add(Entry(f"http://a.org/{n}", 0) for n in range(3))
        for _ in range(3):
            lease = await asyncio.wait_for(one(front), 4)
            assert lease is not None
            await front.ack(lease, 200, None)
        for _ in range(3):
            await asyncio.wait_for(politeness.pace("a.org"), 4)
            politeness.sent("a.org")

    with asyncio.Runner(loop_factory=Behind) as runner:
        started = time.monotonic()
        runner.run(crawl())
    assert time.monotonic() - started >= 4 * 0.05  # the gaps were kept


def test_seen_set_keeps_every_key_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    from crawler.web.seen import SeenSet, url_key

    monkeypatch.setattr(SeenSet, "MERGE_AT", 7)
    seen = SeenSet()
    keys = [hash(f"http://a.org/{n}") for n in range(100)]
    for key in keys[:50]:
        seen.add(key)
    seen.update(keys[40:])
    assert len(seen) == 100
    assert all(key in seen for key in keys)
    assert hash("http://a.org/other") not in seen
    # Asked in bulk (a page's links), by URL: from the merged array and the recent set.
    seen.add(url_key("http://a.org/recent"))
    asked = ["http://a.org/3", "http://a.org/other", "http://a.org/recent", "http://a.org/99"]
    assert seen.unseen(asked) == ["http://a.org/other"]
    assert SeenSet().unseen(asked) == asked


def test_seen_set_keeps_keys_that_share_top_bits_and_the_edges_of_64_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crawler.web.seen import SeenSet

    monkeypatch.setattr(SeenSet, "MERGE_AT", 5)
    low, high = -(1 << 63), (1 << 63) - 1
    # Runs in one array, merged into it over several merges; keys each side of
    # where a key's top 12 bits change, and both ends of a signed 64-bit key.
    keys = [(7 << 52) + 3 * n for n in range(40)] + [-(5 << 52) - 3 * n for n in range(40)]
    keys += [
        low,
        low + 1,
        high,
        high - 1,
        -1,
        0,
        1,
        (1 << 52) - 1,
        1 << 52,
        -(1 << 52),
        -(1 << 52) - 1,
    ]
    seen = SeenSet()
    for key in keys[::2] + keys[1::2]:
        seen.add(key)
    assert len(seen) == len(keys)
    assert all(key in seen for key in keys)
    absent = [
        (7 << 52) + 1,
        (7 << 52) + 3 * 40,
        -(5 << 52) + 1,
        2,
        low + 2,
        high - 2,
        (1 << 52) + 1,
    ]
    assert not any(key in seen for key in absent)
    seen.update(keys + absent)
    assert len(seen) == len(keys) + len(absent)


async def test_lease_takes_what_is_ready_up_to_the_limit() -> None:
    front = frontier(per_host=2)
    await front.add(Entry(f"http://{host}.org/{n}", 0) for host in "abc" for n in range(3))
    first = await front.lease(10)
    assert sorted(lease.host for lease in first) == sorted(["a.org", "b.org", "c.org"] * 2)
    assert await lease_now(front) is None  # every host is at its limit of 2
    await front.ack(first[0], 200, None)
    assert [lease.host for lease in await front.lease(10)] == [first[0].host]
