"""The Redis frontier against a real redis-server: scripts, leases, politeness, failures."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from conftest import RedisServer, SiteFactory, busy_loop, html_page, read_jsonl, static_site
from crawler.config import CrawlConfig
from crawler.errors import ConfigError, FrontierUnavailable, NothingToDo
from crawler.frontier import redis_commit, redis_link, shared
from crawler.frontier.politeness import BACKOFF_FLOOR, THROTTLE_STATUSES
from crawler.frontier.protocol import Lease
from crawler.frontier.redis_codec import ENTRY_FORMAT, PREFIX, decode, encode
from crawler.frontier.redis_crawl import common_args
from crawler.frontier.redis_link import RedisLink
from crawler.frontier.scripts import SCRIPTS
from crawler.frontier.shared import MAX_ATTEMPTS, SharedFrontier
from crawler.loop.engine import Engine
from crawler.loop.shared_run import SharedRun
from crawler.loop.visit import DEAD_LETTER
from crawler.records import CrawlStats, Entry
from crawler.stats import Tally
from crawler.web.urls import redact_url

SEED = "http://a.test/"


async def _opened(
    url: str, config: CrawlConfig, **options: float | Callable[[Entry], object]
) -> SharedFrontier:
    front = SharedFrontier(url, Tally(), **options)  # type: ignore[arg-type]
    await front.open(config)
    return front


@pytest.fixture
async def fronts(redis_server: RedisServer) -> AsyncIterator[Callable[..., object]]:
    """fronts(config, **options) opens a SharedFrontier; all are closed at teardown."""
    opened: list[SharedFrontier] = []

    async def make(config: CrawlConfig, **options: float) -> SharedFrontier:
        front = await _opened(redis_server.url, config, **options)
        opened.append(front)
        return front

    yield make
    for front in opened:
        await front.aclose(settle=False)


async def lease_within(front: SharedFrontier, seconds: float) -> list[Lease]:
    try:
        async with asyncio.timeout(seconds):
            return await front.lease(8)
    except TimeoutError:
        return []


@given(
    url=st.text(min_size=1, max_size=40),
    depth=st.integers(0, 200),
    referrer=st.none() | st.text(max_size=40),
    kind=st.sampled_from(["page", "sitemap"]),
    leases=st.integers(0, 3),
    hops=st.lists(st.text(max_size=10), max_size=3),
)
def test_entries_survive_encoding(
    url: str, depth: int, referrer: str | None, kind: str, leases: int, hops: list[str]
) -> None:
    entry = Entry(url, depth, referrer or None, kind, leases=leases, hops=tuple(hops))
    if entry.is_continuation():
        assert decode(encode(entry)) == entry
    else:
        assert decode(encode(entry)) == Entry(url, depth, referrer or None, kind)


def test_a_continuation_is_stored_by_field_name() -> None:
    hop = Entry("http://a.test/b", 2, "http://a.test/", origin="http://a.test/a", hops=("x",))
    item = encode(hop)
    _, kind, payload = item.split("\t", 2)
    assert kind == "c"
    assert json.loads(payload) == {
        "url": "http://a.test/b",
        "depth": 2,
        "referrer": "http://a.test/",
        "origin": "http://a.test/a",
        "hops": ["x"],
    }
    assert decode(item) == hop


def test_a_continuation_of_the_first_format_is_read_by_position() -> None:
    # As version 0.1 of the shared frontier stored a retried page (its fields in order).
    item = '0\tc\t["http://a.test/x",1,null,"page",1,1,null,[],120,null]'
    assert decode(item) == Entry("http://a.test/x", 1, attempts=1, leases=1, elapsed_ms=120)


def test_a_continuation_with_unknown_fields_is_refused() -> None:
    item = '0\tc\t{"url":"http://a.test/x","depth":1,"leases":1,"priority":3}'
    with pytest.raises(ConfigError, match="newer version"):
        decode(item)


async def test_a_crawl_of_a_newer_format_is_refused(redis_server: RedisServer) -> None:
    front = await _opened(redis_server.url, CrawlConfig(seeds=(SEED,), ignore_robots=True))
    await front.aclose()
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    assert await redis.hget(PREFIX + "meta", "format") == str(ENTRY_FORMAT)
    await redis.hset(PREFIX + "meta", "format", str(ENTRY_FORMAT + 1))
    await redis.aclose()
    joiner = SharedFrontier(redis_server.url, Tally())
    with pytest.raises(ConfigError, match="format"):
        await joiner.open(CrawlConfig())
    await joiner.aclose(settle=False)


def test_the_scripts_take_the_politeness_rule_from_python() -> None:
    ack = SCRIPTS["ack"]
    assert f"math.max(bo * 2, {round(BACKOFF_FLOOR * 1000)})" in ack
    for status in THROTTLE_STATUSES:
        assert f"status == {status}" in ack
    assert "BACKOFF_FLOOR" not in ack and "THROTTLED" not in ack


def test_a_password_is_never_shown() -> None:
    assert redact_url("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redact_url("redis://me:s3cret@h/1") == "redis://me:***@h/1"
    assert redact_url("redis://10.0.0.5:6379/0") == "redis://10.0.0.5:6379/0"


async def test_two_workers_share_one_seen_set(fronts: Callable[..., object]) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True)
    first = await fronts(config)  # type: ignore[misc]
    second = await fronts(CrawlConfig(ignore_robots=True))  # type: ignore[misc]
    assert first.created and not second.created
    added = await first.add([Entry("http://a.test/x", 1), Entry(SEED, 1)])
    assert [entry.url for entry in added] == ["http://a.test/x"]
    assert await second.add([Entry("http://a.test/x", 1), Entry("http://b.test/", 1)]) == [
        Entry("http://b.test/", 1)
    ]
    leased = await second.lease(10)
    assert sorted(lease.entry.url for lease in leased) == [
        SEED,
        "http://a.test/x",
        "http://b.test/",
    ]
    for lease in leased:
        await second.ack(lease, 200, None)
    assert await second.lease(10) == []
    assert second.is_finished()
    assert await first.lease(10) == []  # finished for every worker


async def test_the_host_gap_holds_across_workers(fronts: Callable[..., object]) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, per_host=1, delay=0.3)
    first = await fronts(config)  # type: ignore[misc]
    second = await fronts(CrawlConfig())  # type: ignore[misc]
    await first.add([Entry(f"http://a.test/{n}", 1) for n in range(3)])
    starts = []
    leases = await first.lease(4)
    starts.append(time.monotonic())
    assert len(leases) == 1  # --per-host 1
    assert await lease_within(second, 0.2) == []  # the host is full: no second lease anywhere
    await first.ack(leases[0], 200, None)
    for worker in (second, first, second):
        (lease,) = await worker.lease(4)
        starts.append(time.monotonic())
        await worker.ack(lease, 200, None)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.28, gaps


def _scripts_sent(front: SharedFrontier, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The scripts ``front`` sends from now on, by name, as its pipelines go out."""
    names: list[str] = []
    send = front._link.pipeline

    async def counted(calls: list[tuple[str, list[object]]]) -> list[object]:
        names.extend(name for name, _ in calls)
        return await send(calls)

    monkeypatch.setattr(front._link, "pipeline", counted)
    return names


async def test_a_waiting_lease_asks_again_only_when_told_of_a_sooner_entry(
    fronts: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_commit, "POLL_SECONDS", 5.0)
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, delay=3.0)
    front = await fronts(config)  # type: ignore[misc]
    (seed,) = await front.lease(8)
    await front.add([Entry("http://a.test/1", 1)])
    sent = _scripts_sent(front, monkeypatch)
    waiting = asyncio.create_task(front.lease(8))  # a.test's gap: 3 s
    for _ in range(200):
        if sent:
            break
        await asyncio.sleep(0.01)
    await front.ack(seed, 200, None)
    await front.add([Entry("http://a.test/2", 1)])  # its round trip: nothing sooner
    await asyncio.sleep(0.2)  # time for a lease it would wake
    assert sent == ["lease", "enqueue", "ack"] and not waiting.done()
    await front.add([Entry("http://b.test/", 1)])  # a host free now
    (lease,) = await asyncio.wait_for(waiting, 2)
    assert lease.host == "b.test"
    assert sent.count("lease") == 2


def test_on_uvloop_a_waiting_lease_asks_again_once_its_due_time_has_come(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop's timers fire up to 1.5 ms early: a lease that asked Redis again before
    its entry was due was told to wait, and asked again (13% of a member's round trips
    in a 500-host crawl)."""
    uvloop = pytest.importorskip("uvloop")
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, delay=0.02)

    async def crawl(pages: int) -> list[str]:
        front = await _opened(redis_server.url, config)
        try:
            with busy_loop():
                (lease,) = await front.lease(8)
                await front.add([Entry(f"http://a.test/{n}", 1) for n in range(pages)])
                sent = _scripts_sent(front, monkeypatch)
                for _ in range(pages):
                    await front.ack(lease, 200, None)
                    (lease,) = await asyncio.wait_for(front.lease(8), 4)
            return sent
        finally:
            await front.aclose(settle=False)

    sent = uvloop.run(crawl(20))
    # Each lease asks once, is told when a.test is due, and asks once more then (or
    # takes it at once, on a machine so busy that the gap has passed).
    assert sent.count("lease") <= 2 * 20


def test_on_uvloop_a_request_told_to_wait_for_the_shared_gap_waits_all_of_it() -> None:
    """SENT's answer (the ms a request must still wait for its host's gap) is slept in
    full: uvloop's timers, whole milliseconds, let it leave up to 1 ms sooner."""
    uvloop = pytest.importorskip("uvloop")
    from crawler.frontier.redis_gap import MemberGap

    class Link:
        async def eval(self, name: str, args: list[object]) -> int:
            return 5  # ms

    gap = MemberGap(Link(), list, pytest.fail)  # type: ignore[arg-type]
    late = Lease(Entry("http://a.test/", 0), "a.test", leased_ms=1)
    waits: list[float] = []

    async def requests(count: int) -> None:
        gap.clock.heard(10**9)
        with busy_loop():
            for _ in range(count):
                started = time.monotonic()
                await asyncio.wait_for(gap.keep(late, 1.0), 4)
                waits.append(time.monotonic() - started)

    uvloop.run(requests(20))
    assert min(waits) >= 0.005, waits


async def test_with_nothing_due_acks_and_adds_do_not_linger(
    fronts: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_commit, "LINGER_SECONDS", 5.0)
    front = await fronts(CrawlConfig(seeds=(SEED,), ignore_robots=True))  # type: ignore[misc]
    (seed,) = await front.lease(8)
    waiting = asyncio.create_task(front.lease(8))  # nothing due: it waits for news
    await asyncio.sleep(0.05)
    await front.add([Entry("http://a.test/1", 1)])
    await front.ack(seed, 200, None)
    (lease,) = await asyncio.wait_for(waiting, 2)
    await front.ack(lease, 200, None)
    assert await asyncio.wait_for(front.lease(8), 2) == []
    assert front.is_finished()


async def test_throttled_host_backs_off_and_retry_after_holds_it(
    fronts: Callable[..., object],
) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, max_retry_after=5)
    front = await fronts(config)  # type: ignore[misc]
    (seed,) = await front.lease(8)
    await front.add([Entry("http://a.test/1", 1), Entry("http://b.test/", 1)])
    await front.ack(seed, 503, 0.6)
    (other,) = await lease_within(front, 0.3)  # a.test waits; b.test does not
    assert other.host == "b.test"
    await front.ack(other, 200, None)
    started = time.monotonic()
    (lease,) = await lease_within(front, 2)
    assert lease.entry.url == "http://a.test/1"
    assert time.monotonic() - started >= 0.2


async def test_retry_waits_alone_and_continuations_come_first(
    fronts: Callable[..., object],
) -> None:
    front = await fronts(CrawlConfig(seeds=(SEED,), ignore_robots=True))  # type: ignore[misc]
    (lease,) = await front.lease(8)
    again = Entry(SEED, 0, attempts=1, leases=1)
    await front.requeue(lease, again, 500, None, delay=0.4)
    await front.add([Entry("http://a.test/other", 1)])
    (other,) = await front.lease(8)
    assert other.entry.url == "http://a.test/other"  # the host is not held back
    await front.ack(other, 200, None)
    started = time.monotonic()
    (retry,) = await front.lease(8)
    assert retry.entry == again
    assert time.monotonic() - started >= 0.3


async def test_a_dead_workers_leases_come_back_then_go_to_the_dead_list(
    fronts: Callable[..., object],
) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True)
    survivor = await fronts(config)  # type: ignore[misc]
    for attempt in range(MAX_ATTEMPTS):
        doomed = await fronts(CrawlConfig(), lease_seconds=0.2)  # type: ignore[misc]
        (lease,) = await lease_within(doomed, 2)
        assert lease.entry.url == SEED
        await doomed.aclose(settle=False)  # killed: no ack, no heartbeat
        await asyncio.sleep(0.3)
        await survivor.reclaim()
        counts = await survivor.frontier_counts()
        assert counts["reclaimed"] == attempt + 1
    (given_up,) = await survivor.lease(4)  # once more, marked: its record says so
    assert given_up.given_up and given_up.entry.url == SEED
    await survivor.ack(given_up, None, None)
    assert (await survivor.frontier_counts())["dead"] == 1
    assert await survivor.lease(4) == []  # nothing pending, nothing leased: finished


async def test_heartbeat_keeps_a_slow_lease(fronts: Callable[..., object]) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True)
    holder = await fronts(config, lease_seconds=0.5)  # type: ignore[misc]
    other = await fronts(CrawlConfig())  # type: ignore[misc]
    (lease,) = await holder.lease(4)
    for _ in range(4):
        await asyncio.sleep(0.3)
        await holder._heartbeat()
        await other.reclaim()
    assert (await other.frontier_counts()).get("reclaimed", 0) == 0
    await holder.ack(lease, 200, None)
    await holder.aclose()
    assert (await other.frontier_counts()).get("stale_acks", 0) == 0


async def test_a_late_ack_after_reclaim_is_stale(fronts: Callable[..., object]) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True)
    slow = await fronts(config, lease_seconds=0.1)  # type: ignore[misc]
    other = await fronts(CrawlConfig())  # type: ignore[misc]
    (lease,) = await slow.lease(4)
    await asyncio.sleep(0.2)
    await other.reclaim()
    (again,) = await other.lease(4)
    await slow.ack(lease, 200, None)
    await other.ack(again, 200, None)
    await other.aclose()
    await slow.aclose()
    redis = aioredis.Redis.from_url(slow.url, decode_responses=True)
    counts = await redis.hgetall(PREFIX + "f")
    await redis.aclose()
    assert counts["stale_acks"] == "1" and counts["acked"] == "1"


async def test_max_pages_holds_across_workers(fronts: Callable[..., object]) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, max_pages=3, per_host=10)
    first = await fronts(config)  # type: ignore[misc]
    second = await fronts(CrawlConfig())  # type: ignore[misc]
    await first.add([Entry(f"http://a.test/{n}", 1) for n in range(10)])
    taken = await first.lease(2) + await second.lease(5)
    assert len(taken) == 3
    assert await lease_within(first, 0.3) == []  # the budget is spent: nothing more
    for lease in taken:
        await first.ack(lease, 200, None)
    assert await first.lease(5) == []
    assert first.is_finished()


async def test_a_page_that_goes_back_unstarted_gives_its_budget_back(
    fronts: Callable[..., object],
) -> None:
    """A member stopped while a page was in flight sends it back as a page (engine.py):
    it was not started, so it is leased again within --max-pages and the crawl then
    finishes. It was counted as a continuation still to come: once the budget was spent
    no member could ever call the crawl finished."""
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, max_pages=3, per_host=10)
    front = await fronts(config)  # type: ignore[misc]
    await front.add([Entry(f"http://a.test/{n}", 1) for n in range(10)])
    first, *others = await front.lease(5)
    assert len(others) == 2
    await front.requeue(first, first.entry, None, None)
    (again,) = await lease_within(front, 2)
    assert again.entry == first.entry
    for lease in [again, *others]:
        await front.ack(lease, 200, None)
    assert await lease_within(front, 2) == []
    assert front.is_finished()


async def test_max_pages_bounds_what_is_queued(fronts: Callable[..., object]) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, max_pages=3)
    front = await fronts(config)  # type: ignore[misc]
    added = await front.add([Entry(f"http://a.test/{n}", 1) for n in range(20)])
    assert len(added) == 5  # with the seed, twice --max-pages
    hops = await front.add([Entry("http://a.test/hop", 1, origin="http://a.test/0")], first=True)
    assert len(hops) == 1  # a redirect hop carries a record on: always queued
    counts = await front.frontier_counts()
    assert (counts["admitted"], counts["beyond_max_pages"], counts["pending"]) == (6, 15, 7)


async def test_joiners_take_the_crawls_settings(fronts: Callable[..., object]) -> None:
    creator = CrawlConfig(seeds=(SEED,), delay=0.5, max_depth=3, allow=("*/docs/*",))
    await fronts(creator)  # type: ignore[misc]
    joined = SharedFrontier((await fronts(CrawlConfig())).url, Tally())  # type: ignore[misc]
    shared = await joined.open(CrawlConfig(concurrency=7))
    await joined.aclose(settle=False)
    assert (shared.delay, shared.max_depth, shared.allow, shared.seeds) == (
        0.5,
        3,
        ("*/docs/*",),
        (SEED,),
    )
    assert shared.concurrency == 7  # a worker's own setting stays its own
    other = SharedFrontier(joined.url, Tally())
    with pytest.raises(ConfigError, match="another crawl"):
        await other.open(CrawlConfig(seeds=("http://other.test/",)))
    await other.aclose(settle=False)


async def test_no_crawl_to_join_and_finished_crawl(redis_server: RedisServer) -> None:
    front = SharedFrontier(redis_server.url, Tally())
    with pytest.raises(ConfigError, match="no crawl"):
        await front.open(CrawlConfig())
    await front.aclose(settle=False)
    front = await _opened(redis_server.url, CrawlConfig(seeds=(SEED,), ignore_robots=True))
    (lease,) = await front.lease(4)
    await front.ack(lease, 200, None)
    assert await front.lease(4) == []
    await front.aclose()
    again = SharedFrontier(redis_server.url, Tally())
    with pytest.raises(NothingToDo):
        await again.open(CrawlConfig(seeds=(SEED,)))
    await again.aclose(settle=False)


async def test_seeds_are_normalised_and_foreign_keys_refused(redis_server: RedisServer) -> None:
    front = await _opened(
        redis_server.url, CrawlConfig(seeds=("HTTP://A.test",), ignore_robots=True)
    )
    (lease,) = await front.lease(4)
    assert lease.entry.url == SEED
    await front.aclose(settle=False)
    redis = aioredis.Redis.from_url(redis_server.url)
    await redis.flushdb()
    await redis.hset(PREFIX + "meta", "settings", "not json")
    await redis.aclose()
    other = SharedFrontier(redis_server.url, Tally())
    with pytest.raises(ConfigError, match="not a crawl"):
        await other.open(CrawlConfig())
    await other.aclose(settle=False)


async def test_an_evicting_redis_is_refused(redis_server: RedisServer) -> None:
    redis = aioredis.Redis.from_url(redis_server.url)
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    await redis.aclose()
    front = SharedFrontier(redis_server.url, Tally())
    with pytest.raises(ConfigError, match="noeviction"):
        await front.open(CrawlConfig(seeds=(SEED,)))
    await front.aclose(settle=False)


async def test_a_full_redis_refuses_new_links_and_says_so(redis_server: RedisServer) -> None:
    tally = Tally()
    front = SharedFrontier(redis_server.url, tally)
    await front.open(CrawlConfig(seeds=(SEED,), ignore_robots=True))
    redis = aioredis.Redis.from_url(redis_server.url)
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory", used)
    (lease,) = await front.lease(4)
    assert await front.add([Entry(f"http://a.test/{n}", 1) for n in range(5)]) == []
    assert tally.refused_links == 5
    await front.ack(lease, 200, None)  # acks still go through: they free memory
    await redis.config_set("maxmemory", 0)
    await redis.aclose()
    assert await front.lease(4) == []
    await front.aclose()


async def test_a_full_host_queue_refuses_links_until_it_drains(
    fronts: Callable[..., object],
) -> None:
    config = CrawlConfig(seeds=(SEED,), ignore_robots=True, per_host=10)
    front = await fronts(config, host_cap=3)  # type: ignore[misc]
    links = [Entry(f"http://a.test/{n}", 1) for n in range(4)]
    added = await front.add(links)
    assert len(added) == 2  # the seed and two links fill the queue of 3
    assert front._tally.refused_links == 2
    for lease in await front.lease(10):
        await front.ack(lease, 200, None)
    # Refused URLs were not marked seen: a later link brings them back.
    assert [entry.url for entry in await front.add(links)] == ["http://a.test/2", "http://a.test/3"]


async def test_scripts_come_back_after_a_script_flush(fronts: Callable[..., object]) -> None:
    front = await fronts(CrawlConfig(seeds=(SEED,), ignore_robots=True))  # type: ignore[misc]
    redis = aioredis.Redis.from_url(front.url)
    await redis.script_flush()  # as after a restart of Redis
    await redis.aclose()
    (lease,) = await front.lease(4)
    assert lease.entry.url == SEED


@pytest.mark.parametrize(
    ("gone", "said"),
    [
        ("killed", "did not answer"),
        # Connected but silent (stopped, a dead link): each call is cut at CALL_SECONDS.
        ("stopped", "no answer in"),
    ],
)
async def test_redis_gone_stops_the_worker_in_bounded_time(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, gone: str, said: str
) -> None:
    monkeypatch.setattr(redis_link, "CALL_SECONDS", 0.3)
    front = SharedFrontier(redis_server.url, Tally(), outage_seconds=1.0)
    await front.open(CrawlConfig(seeds=(SEED,), ignore_robots=True))
    if gone == "killed":
        redis_server.stop()
    else:
        redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(FrontierUnavailable, match=said):
            await front.lease(4)
        assert time.monotonic() - started < 6
        await front.aclose(settle=False)
    finally:
        if gone == "stopped":
            redis_server.process.send_signal(signal.SIGCONT)


async def test_a_member_told_to_stop_stops_whenever_the_cancel_comes(
    redis_server: RedisServer,
) -> None:
    """A cancel that comes as a Redis command is sent ends the task that sent it.
    (redis-py's socket_timeout sends under asyncio.wait_for, which swallows such a
    cancel on Python 3.11: a stopping member's chores went on forever.)"""
    link = RedisLink(redis_server.url)
    heartbeat = [*common_args(CrawlConfig(seeds=(SEED,))), 1000]

    async def chore() -> None:
        while True:
            await link.eval("heartbeat", heartbeat)

    try:
        for step in range(300):  # cancels spread over a round trip, ~0.1 ms apart
            task = asyncio.create_task(chore())
            await asyncio.sleep((step % 30) / 10_000)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, f"cancel {step} was swallowed: the task went on"
    finally:
        await link.aclose()


async def test_a_chore_that_lost_its_cancel_is_cancelled_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a library does with a cancel, a member's chores end when it closes."""
    monkeypatch.setattr(shared, "RECLAIM_SECONDS", 0.001)
    monkeypatch.setattr(shared, "RECANCEL_SECONDS", 0.1)
    lost = 0

    async def losing_a_cancel(_: SharedFrontier) -> None:
        nonlocal lost
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if lost:
                raise
            lost += 1  # dropped, as asyncio.wait_for on Python 3.11 may

    monkeypatch.setattr(SharedFrontier, "reclaim", losing_a_cancel)
    front = await _opened(redis_server.url, CrawlConfig(seeds=(SEED,)))
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        await front.aclose(settle=False)
    assert lost == 1


# The engine over the shared frontier.

SITE = {f"/p{n}": [f"/p{(n * 7 + k) % 60}" for k in range(1, 5)] for n in range(60)}
SITE["/"] = ["/p0", "/p1", "/missing"]


async def test_engine_crawls_the_same_pages_as_in_memory(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    site = await serve(static_site(SITE))
    local = await Engine(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "m")).run()
    before = len(site.requests)
    config = CrawlConfig(
        seeds=(site.url + "/",), output_dir=tmp_path / "r", frontier=redis_server.url
    )
    shared = await Engine(config).run()
    assert shared.finished and shared.pages == local.pages == 62
    assert (shared.ok, shared.broken, shared.status_counts) == (
        local.ok,
        local.broken,
        local.status_counts,
    )
    records = read_jsonl(tmp_path / "r" / "pages.jsonl")
    assert sorted(r["url"] for r in records) == sorted(
        r["url"] for r in read_jsonl(tmp_path / "m" / "pages.jsonl")
    )
    assert sorted(site.requests[before:]) == sorted(site.requests[:before])
    assert read_jsonl(tmp_path / "r" / "broken.jsonl")[0]["url"].endswith("/missing")


async def test_two_engines_share_a_crawl_and_robots_txt(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    site = await serve(static_site({**SITE, "/robots.txt": []}))
    seeds = (site.url + "/",)
    engines = [
        Engine(CrawlConfig(seeds=seeds, output_dir=tmp_path / name, frontier=redis_server.url))
        for name in ("a", "b")
    ]
    first, second = await asyncio.gather(*(engine.run() for engine in engines))
    assert first.finished and second.finished and first.pages == 62
    urls = [r["url"] for name in "ab" for r in read_jsonl(tmp_path / name / "pages.jsonl")]
    assert len(urls) == len(set(urls)) == 62
    pages = [path for path in site.requests if path != "/sitemap.xml"]
    assert len(pages) == len(set(pages))  # each page and robots.txt requested once in all
    assert site.count("/robots.txt") == 1


async def test_a_visit_whose_lease_expired_leaves_no_record_and_no_count(
    serve: SiteFactory,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member that stalls past its lease: the URL goes to another visit, and the
    late one's ack (stale) neither counts the page again nor writes its record."""
    monkeypatch.setattr(shared, "LEASE_SECONDS", 0.3)
    monkeypatch.setattr(shared, "HEARTBEAT_SECONDS", 60.0)  # no heartbeat: leases expire
    monkeypatch.setattr(shared, "RECLAIM_SECONDS", 0.1)
    routes = static_site({"/": ["/slow", "/a", "/b"], "/a": [], "/b": []})
    visits = 0

    async def slow(_: web.Request) -> web.StreamResponse:
        nonlocal visits
        visits += 1
        if visits == 1:  # the first visit outlives its lease
            await asyncio.sleep(1.0)
        return html_page("slow")

    site = await serve({**routes, "/slow": slow})
    seeds = (site.url + "/",)
    engines = [
        Engine(
            CrawlConfig(
                seeds=seeds,
                output_dir=tmp_path / name,
                frontier=redis_server.url,
                ignore_robots=True,
                no_sitemaps=True,
            )
        )
        for name in ("a", "b")
    ]
    first, second = await asyncio.gather(*(engine.run() for engine in engines))
    assert site.count("/slow") >= 2
    urls = [r["url"] for name in "ab" for r in read_jsonl(tmp_path / name / "pages.jsonl")]
    assert sorted(urls) == sorted(site.url + path for path in ("/", "/slow", "/a", "/b"))
    assert first.pages == second.pages == 4 and first.ok == 4
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    counts = await redis.hgetall(PREFIX + "f")
    await redis.aclose()
    assert int(counts["stale_acks"]) >= 1


async def test_a_dead_letter_gets_a_record(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    engine = Engine(
        CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, frontier=redis_server.url)
    )
    host = site.url.removeprefix("http://")
    # An entry whose lease expired MAX_ATTEMPTS - 1 times already, leased by a worker that died.
    await redis.hset(
        PREFIX + "lease:data", "999", f"{host}\n{MAX_ATTEMPTS - 1}\tp\t1\t{site.url}/x\t"
    )
    await redis.zadd(PREFIX + "leases", {"999": 0})
    stats = await engine.run()
    await redis.aclose()
    records = {r["url"]: r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records[site.url + "/x"]["error"] == DEAD_LETTER
    assert stats.error_counts == {DEAD_LETTER: 1}


async def test_a_leased_url_out_of_the_crawls_scope_is_never_fetched(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    elsewhere = await serve(static_site({"/metadata": []}), host="127.0.0.2")
    config = CrawlConfig(
        seeds=(site.url + "/",), output_dir=tmp_path, frontier=redis_server.url, no_sitemaps=True
    )
    # Someone with access to Redis queues a URL of another host into the crawl.
    intruder = await _opened(redis_server.url, config)
    await intruder.add([Entry(elsewhere.url + "/metadata", 1, site.url + "/")])
    await intruder.aclose()

    stats = await Engine(config).run()

    records = {r["url"]: r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records[elsewhere.url + "/metadata"]["error"] == "out-of-scope"
    assert elsewhere.requests == []
    assert stats.pages == 3 and stats.finished


async def test_a_joiner_takes_only_the_settings_that_define_the_crawl(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    creator = await _opened(redis_server.url, CrawlConfig(seeds=(SEED,), max_pages=7))
    await creator.aclose()
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    stored = json.loads(await redis.hget(PREFIX + "meta", "settings"))
    stored.update(extract="os:system", save_html=True, output_dir="/etc", warc="/tmp/x")
    await redis.hset(PREFIX + "meta", "settings", json.dumps(stored))
    await redis.aclose()

    joiner = SharedFrontier(redis_server.url, Tally())
    config = await joiner.open(CrawlConfig(output_dir=tmp_path))
    await joiner.aclose(settle=False)

    assert config.max_pages == 7
    assert config.extract is None and not config.save_html and config.warc is None
    assert config.output_dir == tmp_path


def test_secrets_in_query_parameters_are_redacted_too() -> None:
    assert (
        redact_url("redis://h:6379/0?password=s3cret&db=1") == "redis://h:6379/0?password=***&db=1"
    )
    assert redact_url("http://a.org/x?api_key=k&token=t&page=2") == (
        "http://a.org/x?api_key=***&token=***&page=2"
    )


async def test_a_seeds_credentials_never_reach_redis_or_the_folder(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    seed = site.url.replace("http://", "http://me:hunter2@") + "/"
    config = CrawlConfig(seeds=(seed,), output_dir=tmp_path, frontier=redis_server.url)

    stats = await Engine(config).run()

    assert stats.pages == 2
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    meta = await redis.hgetall(PREFIX + "meta")
    await redis.aclose()
    assert "hunter2" not in json.dumps(meta) and "me:***@" in meta["settings"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path


async def test_keys_lost_mid_crawl_are_an_outage_never_a_finish(
    fronts: Callable[..., object], redis_server: RedisServer
) -> None:
    """FLUSHDB (or eviction after a policy change) while the crawl runs: LEASE finds no
    crawl and says so (exit 5), where it found nothing pending and called it finished."""
    front = await fronts(CrawlConfig(seeds=(SEED, SEED + "a", SEED + "b"), ignore_robots=True))
    assert await lease_within(front, 5)  # the crawl runs
    redis = aioredis.Redis.from_url(redis_server.url)
    await redis.flushdb()
    await redis.aclose()
    with pytest.raises(FrontierUnavailable, match="keys are gone from Redis"):
        await front.lease(4)
    assert not front.is_finished()


@pytest.mark.parametrize(
    "item", ["garbage", "0\tp\tnot json", "0\tc\t{broken", "x\tp\t[1, 2]", "0\tp\t7\t"]
)
async def test_an_unreadable_entry_is_a_dead_letter_and_the_crawl_goes_on(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path, item: str
) -> None:
    """Someone (or a bug) put an entry no member can read into a host's queue: it becomes
    a dead-letter record, and every other page is crawled (was: every member exit 7)."""
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    config = CrawlConfig(
        seeds=(site.url + "/",), output_dir=tmp_path, frontier=redis_server.url, no_sitemaps=True
    )
    creator = await _opened(redis_server.url, config)
    await creator.aclose()
    host = site.url.removeprefix("http://")
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await redis.lpush(PREFIX + "q:" + host, item)
    await redis.hincrby(PREFIX + "f", "pending", 1)
    await redis.aclose()

    stats = await Engine(config).run()

    records = {r["url"]: r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records[f"http://{host}/#unreadable-frontier-entry"]["error"] == DEAD_LETTER
    assert records[site.url + "/a"]["status"] == 200
    assert stats.finished


async def test_a_seed_list_left_halfway_is_queued_by_the_next_member_given_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The member that created a crawl from a list stopped before queuing it (its
    ``listing`` key expired): the next member given the list queues it; one given none
    takes the list's hosts into its scope."""
    listing = tmp_path / "list.txt"
    listing.write_text("http://127.0.0.2:9/a\nhttp://127.0.0.3:9/b\n")
    config = CrawlConfig(input_file=listing, frontier=redis_server.url)
    creator = await _opened(redis_server.url, config)
    assert creator.created and await creator.seed_list.state() == ""
    await creator.aclose(settle=False)
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    assert await redis.delete(PREFIX + "listing") == 1
    runs = [SharedRun(config), SharedRun(CrawlConfig(frontier=redis_server.url))]
    try:
        for run in runs:
            opened = await run.open(Tally(), lambda: False)
            assert {"127.0.0.2", "127.0.0.3"} <= set(opened.config.seed_hosts)
        assert (await runs[0]._frontier.frontier_counts())["pending"] == 2  # type: ignore[union-attr]
        assert (
            await redis.hget(PREFIX + "meta", "list")
            == hashlib.sha256(listing.read_bytes()).hexdigest()
        )
        assert await redis.exists(PREFIX + "listing") == 0
    finally:
        for run in runs:
            await run.close(CrawlStats())
        await redis.aclose()
