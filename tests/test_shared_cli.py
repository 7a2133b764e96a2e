"""Workers of one shared crawl as separate `crawler crawl --frontier` processes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from conftest import (
    LoopLag,
    RedisServer,
    Site,
    SiteFactory,
    html_page,
    reaped,
    start_cli,
    until,
)
from test_cli import assert_one_line_error, run_cli

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PAGES = 30
DELAY = 0.2


def records(folder: Path) -> list[dict[str, Any]]:
    """pages.jsonl's complete lines (a worker killed mid-line leaves a torn one)."""
    path = folder / "pages.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines]


async def three_hosts(
    serve: SiteFactory, answering: set[int] | None = None, seconds: float = 0.0
) -> list[Site]:
    """PAGES pages on each host; each page links to pages on every host. Each
    answer takes ``seconds``, while the client's port is in ``answering``."""
    sites: list[Site] = []

    async def page(request: web.Request) -> web.StreamResponse:
        number = int(request.match_info.get("n", "0"))
        links = [f"{site.url}/p{(number * 3 + k) % PAGES}" for site in sites for k in (1, 2, 3)]
        if answering is not None and request.transport is not None:
            port = request.transport.get_extra_info("peername")[1]
            answering.add(port)
            await asyncio.sleep(seconds)
            answering.discard(port)
        return html_page(request.path, links)

    for host in HOSTS:
        sites.append(await serve({"/": page, r"/p{n:\d+}": page}, host=host))
    return sites


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (Linux: /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


async def start_worker(folder: str, frontier: str, *urls: str, cwd: Path) -> Any:
    return await start_cli(
        "crawl",
        *urls,
        *("--frontier", frontier, "--output", folder, "--delay", str(DELAY)),
        *("--concurrency", "4", "--quiet"),
        cwd=cwd,
    )


async def test_three_workers_one_killed_cover_the_site_politely(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    answering: set[int] = set()
    sites = await three_hosts(serve, answering, seconds=0.15)
    seeds = [site.url + "/" for site in sites]
    workers = [await start_worker("w0", redis_server.url, *seeds, cwd=tmp_path)]
    async with LoopLag() as lag, reaped(workers[0]):
        await until((tmp_path / "w0" / "frontier.json").exists, 20)
        workers += [await start_worker(f"w{n}", redis_server.url, cwd=tmp_path) for n in (1, 2)]
        async with reaped(workers[1]), reaped(workers[2]):
            total = len(HOSTS) * (PAGES + 1)
            holding: list[Any] = []

            def half_way_and_held() -> bool:
                """Half the site fetched, and the server answering a worker (it holds a lease)."""
                if sum(len(site.requests) for site in sites) >= total // 2:
                    holding[:] = [w for w in workers if local_ports(w.pid) & answering]
                return bool(holding)

            await until(half_way_and_held, 60, step=0.01)
            victim = holding[0]
            victim.send_signal(signal.SIGKILL)
            survivors = [worker for worker in workers if worker is not victim]
            async with asyncio.timeout(90):
                results = [await worker.communicate() for worker in survivors]
    assert [worker.returncode for worker in survivors] == [0, 0], results
    found = [r["url"] for name in ("w0", "w1", "w2") for r in records(tmp_path / name)]
    expected = {f"{site.url}/p{n}" for site in sites for n in range(PAGES)}
    expected |= set(seeds)
    assert set(found) == expected
    # Only the killed worker's leases (at most its 4 in flight) were fetched again.
    requested = [(site.url, path) for site in sites for path in site.requests]
    repeated = [key for key, count in collections.Counter(requested).items() if count > 1]
    assert 1 <= len(repeated) <= 4, repeated
    for site in sites:
        assert site.count("/robots.txt") == 1
        starts = sorted(when for _, when in site.arrivals)
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        # The server stamps an arrival when this loop gets to it: late by up to its lag.
        assert min(gaps) >= DELAY - lag.worst - 0.005, (site.url, min(gaps), lag.worst)
    folder = tmp_path / f"w{workers.index(survivors[0])}"
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["finished"] and stats["pages"] >= len(expected)


async def test_a_stopped_worker_resumes_the_shared_crawl(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    sites = await three_hosts(serve)
    seeds = [site.url + "/" for site in sites]
    common = ["--frontier", redis_server.url, "--output", "out", "--delay", str(DELAY)]
    code, _, err = await run_cli("crawl", *seeds, *common, "--max-time", "1", cwd=tmp_path)
    assert code == 0, err
    done = records(tmp_path / "out")
    assert 0 < len(done) < len(HOSTS) * (PAGES + 1)
    assert not json.loads((tmp_path / "out" / "stats.json").read_text())["finished"]
    code, _, err = await run_cli("crawl", *common, "--resume", cwd=tmp_path)
    assert code == 0, err
    urls = [r["url"] for r in records(tmp_path / "out")]
    assert len(urls) == len(set(urls)) == len(HOSTS) * (PAGES + 1)
    code, _, err = await run_cli("crawl", *common, cwd=tmp_path)
    assert code == 0 and "finished" in err


async def test_redis_gone_mid_crawl_exits_5_and_keeps_the_records(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    sites = await three_hosts(serve)
    worker = await start_worker("out", redis_server.url, sites[0].url + "/", cwd=tmp_path)
    async with reaped(worker):
        await until(lambda: len(records(tmp_path / "out")) >= 5, 30)
        redis_server.stop()
        async with asyncio.timeout(60):
            _, stderr = await worker.communicate()
    assert worker.returncode == 5
    assert "did not answer" in stderr.decode().splitlines()[-1]
    assert "Traceback" not in stderr.decode()
    assert len(records(tmp_path / "out")) >= 5
    assert (tmp_path / "out" / "stats.json").exists()


async def test_frontier_flag_errors(redis_server: RedisServer, tmp_path: Path) -> None:
    joined = await run_cli("crawl", "--frontier", redis_server.url, cwd=tmp_path)
    assert_one_line_error(joined, 2, "no crawl in")
    bad = await run_cli("crawl", "http://a.test/", "--frontier", "http://x/", cwd=tmp_path)
    assert_one_line_error(bad, 2, "redis://")
    both = await run_cli(
        "crawl", "http://a.test/", "--frontier", redis_server.url, "--processes", "2", cwd=tmp_path
    )
    assert_one_line_error(both, 2, "--processes")


async def test_a_frontier_url_that_cannot_work_is_one_line_at_once(
    redis_server: RedisServer, serve: SiteFactory, tmp_path: Path
) -> None:
    """Not Redis, a database Redis does not have, credentials it refuses, a user it does
    not let run the crawl, a read-only replica: a setting to fix (exit 2), said at
    once; not an internal error, nor 20 s of retries."""
    site = await serve({})
    redis = aioredis.Redis.from_url(redis_server.url)
    await redis.acl_setuser(
        "reader", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@read"]
    )
    await redis.config_set("requirepass", "sekret")
    await redis.aclose()
    port = redis_server.port
    wrong = [
        (site.url.replace("http://", "redis://") + "/0", "does not answer as Redis does"),
        (f"redis://:sekret@127.0.0.1:{port}/99", "DB index is out of range"),
        (f"redis://:wrong@127.0.0.1:{port}/0", "Redis refused this client"),
        (f"redis://127.0.0.1:{port}/0", "Redis refused this client"),
        (f"redis://reader:pw@127.0.0.1:{port}/0", "must be allowed to run scripts"),
    ]
    for url, message in wrong:
        result = await run_cli("crawl", site.url + "/", "--frontier", url, cwd=tmp_path, wait=8)
        assert_one_line_error(result, 2, message)
        assert "sekret" not in result[2] and "wrong" not in result[2]

    admin = aioredis.Redis.from_url(f"redis://:sekret@127.0.0.1:{port}/0")
    await admin.replicaof("127.0.0.1", "1")  # a replica (of nothing there): read-only
    await admin.aclose()
    url = f"redis://:sekret@127.0.0.1:{port}/0"
    result = await run_cli("crawl", site.url + "/", "--frontier", url, cwd=tmp_path, wait=8)
    assert_one_line_error(result, 2, "a read-only replica")


async def test_a_shared_crawl_made_from_a_seed_list_covers_the_hosts_it_names(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The first member queues its list (``-i``); a second, given the same list, joins
    it. The list's hosts are the scope: the host it does not name gets no request."""
    sites = await three_hosts(serve)
    listed = sites[1:]
    (tmp_path / "list.txt").write_text(
        f"# two of the three hosts\n{listed[0].url}/p5\n\nnot a url\n{listed[1].url}/\n"
    )
    first = await start_worker("w0", redis_server.url, "-i", "list.txt", cwd=tmp_path)
    async with reaped(first):
        await until((tmp_path / "w0" / "frontier.json").exists, 20)
        second = await start_worker("w1", redis_server.url, "-i", "list.txt", cwd=tmp_path)
        async with reaped(second), asyncio.timeout(90):
            results = [await worker.communicate() for worker in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], results
    found = [r["url"] for name in ("w0", "w1") for r in records(tmp_path / name)]
    expected = {f"{site.url}/p{n}" for site in listed for n in range(PAGES)}
    assert set(found) == expected | {listed[1].url + "/"}
    assert len(found) == len(set(found))
    assert sites[0].requests == []
    stats = json.loads((tmp_path / "w0" / "stats.json").read_text())
    assert stats["seeds_skipped"] == 1


async def test_a_member_must_bring_the_crawls_own_seed_list_or_none(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("http://127.0.0.2:9/a\n")
    (tmp_path / "b.txt").write_text("http://127.0.0.2:9/b\n")
    common = ("--frontier", redis_server.url, "--max-time", "1", "--quiet")
    made = await run_cli("crawl", "-i", "a.txt", *common, "--output", "w0", cwd=tmp_path)
    assert made[0] == 0, made
    other = await run_cli("crawl", "-i", "b.txt", *common, "--output", "w1", cwd=tmp_path)
    assert_one_line_error(other, 2, "made from another seed list")
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    await client.aclose()
    seeded = await run_cli("crawl", "http://127.0.0.2:9/", *common, "-o", "w2", cwd=tmp_path)
    assert seeded[0] == 0, seeded
    listed = await run_cli("crawl", "-i", "a.txt", *common, "--output", "w3", cwd=tmp_path)
    assert_one_line_error(listed, 2, "made from seed URLs, not from a seed list")
