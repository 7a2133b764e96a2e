"""The multiprocessing front: the same crawl with --processes 2, its termination rule,
global limits, a worker killed with kill -9, Ctrl-C, and --resume."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conftest import (
    Handler,
    LoopLag,
    Site,
    SiteFactory,
    html_page,
    read_jsonl,
    reaped,
    start_cli,
    until,
)
from crawler import CrawlConfig, Crawler, PageRecord, crawl
from crawler.procs.wire import owner
from test_cli import run_cli

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
PAGES = 40


class Hosts(list[Site]):
    """The four test sites; ``under_way`` is set each time 20 more pages have been answered."""

    under_way: asyncio.Event


async def serve_hosts(serve: SiteFactory, delay: float = 0.0) -> Hosts:
    """Four hosts; page n of each links to page n+1 of the next host and to a missing page."""
    sites = Hosts()
    sites.under_way = asyncio.Event()
    ports: list[int] = []
    answered = 0

    def handler(index: int) -> Handler:
        async def page(request: web.Request) -> web.StreamResponse:
            number = int(request.match_info["n"])
            if number >= PAGES:
                raise web.HTTPNotFound()
            await asyncio.sleep(delay)
            nonlocal answered
            answered += 1
            if answered % 20 == 0:
                sites.under_way.set()
            following = (index + 1) % len(HOSTS)
            links = [
                f"http://{HOSTS[following]}:{ports[following]}/p/{number + 1}",
                f"/p/{number + 1}",
                "/missing",
            ]
            return html_page(f"{index}-{number}", links)

        return page

    for index, host in enumerate(HOSTS):
        site = await serve({r"/p/{n:\d+}": handler(index)}, host=host)
        sites.append(site)
        ports.append(int(site.url.rsplit(":", 1)[1]))
    return sites


def config(sites: list[Site], out: Path | None, **settings: object) -> CrawlConfig:
    values: dict[str, object] = {"processes": 2, "no_sitemaps": True}
    values.update(settings)
    return CrawlConfig(
        seeds=(sites[0].url + "/p/0",),
        allow_domain=HOSTS,
        output_dir=out,
        **values,  # type: ignore[arg-type]
    )


async def start_front(
    sites: Hosts, cwd: Path, stderr: Any = asyncio.subprocess.PIPE, **options: object
) -> asyncio.subprocess.Process:
    """`crawler crawl --processes 2` over the four hosts, as a user runs it."""
    domains = [arg for host in HOSTS for arg in ("--allow-domain", host)]
    return await start_cli(
        "crawl",
        sites[0].url + "/p/0",
        *domains,
        *("--processes", "2", "--output", "out", "--quiet", "--no-sitemaps"),
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
        **options,
    )


def referrers(folder: Path) -> dict[str, tuple[list[str], int]]:
    """broken.jsonl's /p/ URLs, each with its referrers and their count."""
    return {
        link["url"]: (sorted(link["referrers"]), link["referrer_count"])
        for link in read_jsonl(folder / "broken.jsonl")
        if "/p/" in link["url"]
    }


def test_hosts_are_split_by_a_stable_hash() -> None:
    owners = {owner(f"http://{host}:8080/x", 2) for host in HOSTS}
    assert owners == {0, 1}
    assert owner("http://a.org/x", 2) == owner("http://a.org/y?z", 2)


async def test_two_processes_crawl_every_page_exactly_once(
    serve: SiteFactory, tmp_path: Path
) -> None:
    sites = await serve_hosts(serve)

    single = await crawl(config(sites, tmp_path / "one", processes=1))
    double = await crawl(config(sites, tmp_path / "two"))

    one = {r["url"] for r in read_jsonl(tmp_path / "one" / "pages.jsonl")}
    two = [r["url"] for r in read_jsonl(tmp_path / "two" / "pages.jsonl")]
    assert len(two) == len(set(two)) == single.pages == double.pages
    assert set(two) == one
    assert double.finished and double.pages == 4 * PAGES + 2
    for site in sites:  # both crawls: each page requested once by each
        paths = Counter(path for path in site.requests if path.startswith("/p/"))
        assert set(paths.values()) == {2}, "a page was requested twice in one crawl"
    broken = read_jsonl(tmp_path / "two" / "broken.jsonl")
    assert len(broken) == 4 + 4  # /missing and /p/40 on each host
    # Each /p/40 is linked from its own host's /p/39 and the previous host's,
    # which another process crawled: the front knows both, as one process does.
    assert referrers(tmp_path / "two") == referrers(tmp_path / "one")
    assert all(count == 2 for _, count in referrers(tmp_path / "two").values())
    saved = json.loads((tmp_path / "two" / "stats.json").read_text())
    assert saved["pages"] == double.pages and saved["finished"] is True


async def test_the_library_iterates_a_front(serve: SiteFactory) -> None:
    sites = await serve_hosts(serve)

    async with Crawler(config(sites, None)) as crawler:
        urls = [record.url async for record in crawler if isinstance(record, PageRecord)]

    assert len(urls) == len(set(urls)) == crawler.stats().pages == 4 * PAGES + 2


async def test_a_reader_that_falls_behind_holds_the_front_back(serve: SiteFactory) -> None:
    """The library's reader stops reading: the workers stop fetching soon after,
    instead of the parent holding the rest of the crawl in memory."""
    pages = 3000
    sites: list[Site] = []

    def tree(index: int) -> Handler:
        """Page n links to pages 2n+1 and 2n+2 of its host and of the next: a wide site."""

        async def page(request: web.Request) -> web.StreamResponse:
            number = int(request.match_info["n"])
            if number >= pages:
                raise web.HTTPNotFound()
            following = sites[(index + 1) % len(HOSTS)].url
            children = [f"/p/{2 * number + 1}", f"/p/{2 * number + 2}"]
            return html_page(str(number), children + [following + child for child in children])

        return page

    for index, host in enumerate(HOSTS):
        sites.append(await serve({r"/p/{n:\d+}": tree(index)}, host=host))

    def requested() -> int:
        return sum(len(site.requests) for site in sites)

    async with Crawler(config(sites, None)) as front:
        async for _ in front:
            break  # and read no more
        previous = -1
        for _ in range(60):
            await asyncio.sleep(0.5)
            if requested() == previous:
                break
            previous = requested()
        else:
            pytest.fail("the front kept fetching with nobody reading")
    # The reader's backlog (1,000 records), two batches in the parent, what the
    # sockets hold and what was in flight: far from the site's 12,000 pages.
    assert requested() < 4 * pages / 2


async def test_max_pages_holds_across_processes(serve: SiteFactory, tmp_path: Path) -> None:
    sites = await serve_hosts(serve)

    stats = await crawl(config(sites, tmp_path, max_pages=25, concurrency=8))

    assert stats.pages == 25
    assert len(read_jsonl(tmp_path / "pages.jsonl")) == 25
    assert not stats.finished


async def worker_pids(parent: int) -> list[int]:
    pgrep = await asyncio.create_subprocess_exec(
        "pgrep", "-f", "multiprocessing.spawn", "-P", str(parent), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await pgrep.communicate()
    return [int(pid) for pid in out.split()]


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_killed_worker_ends_the_crawl_with_exit_4_and_resume_finishes(
    serve: SiteFactory, tmp_path: Path
) -> None:
    sites = await serve_hosts(serve, delay=0.05)
    await crawl(config(sites, tmp_path / "whole", processes=1))
    expected = {r["url"] for r in read_jsonl(tmp_path / "whole" / "pages.jsonl")}
    for site in sites:
        site.requests.clear()
    sites.under_way.clear()
    process = await start_front(sites, tmp_path)
    async with reaped(process):
        async with asyncio.timeout(30):
            await sites.under_way.wait()
        victim = (await worker_pids(process.pid))[0]
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(60):
            _, err = await process.communicate()
    assert process.returncode == 4, err
    assert b"died with exit code -9" in err and b"Traceback" not in err

    code, _, err2 = await run_cli(
        "crawl", "--resume", "--output", "out", "--processes", "2", "--quiet", cwd=tmp_path
    )
    assert code == 0, err2
    urls = [r["url"] for r in read_jsonl(tmp_path / "out" / "pages.jsonl")]
    assert set(urls) == expected
    assert len(urls) - len(set(urls)) <= 8, "only pages in flight at the kill may repeat"


async def test_workers_stop_when_their_parent_is_killed(serve: SiteFactory, tmp_path: Path) -> None:
    sites = await serve_hosts(serve, delay=0.05)
    # stderr not a pipe: a pipe closed with the parent could end the workers itself.
    process = await start_front(sites, tmp_path, stderr=asyncio.subprocess.DEVNULL)
    async with reaped(process):
        async with asyncio.timeout(30):
            await sites.under_way.wait()
        workers = await worker_pids(process.pid)
        assert len(workers) == 2
        process.kill()
        await process.wait()
    # Each worker's channel ends: it stops its crawl and exits, orphaned.
    await until(lambda: not any(map(running, workers)), seconds=10)


async def test_ctrl_c_stops_every_process(serve: SiteFactory, tmp_path: Path) -> None:
    sites = await serve_hosts(serve, delay=0.05)
    process = await start_front(sites, tmp_path, start_new_session=True)
    async with reaped(process):
        async with asyncio.timeout(30):
            await sites.under_way.wait()
        os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole group
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 130, err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["pages"] == len(read_jsonl(tmp_path / "out" / "pages.jsonl")) > 0
    assert stats["finished"] is False


async def test_sigterm_to_the_process_group_stops_gracefully_and_resume_finishes(
    serve: SiteFactory, tmp_path: Path
) -> None:
    sites = await serve_hosts(serve, delay=0.05)
    await crawl(config(sites, tmp_path / "whole", processes=1))
    expected = {r["url"] for r in read_jsonl(tmp_path / "whole" / "pages.jsonl")}
    sites.under_way.clear()
    process = await start_front(sites, tmp_path, start_new_session=True)
    async with reaped(process):
        async with asyncio.timeout(30):
            await sites.under_way.wait()
        os.killpg(process.pid, signal.SIGTERM)  # as systemd and timeout do: the whole group
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 143, err
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["finished"] is False

    code, _, err = await run_cli(
        "crawl", "--resume", "--output", "out", "--processes", "2", "--quiet", cwd=tmp_path
    )
    assert code == 0, err
    urls = [r["url"] for r in read_jsonl(tmp_path / "out" / "pages.jsonl")]
    assert len(urls) == len(set(urls)) and set(urls) == expected


async def test_sigterm_while_the_workers_start_stops_gracefully(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """systemd or timeout may signal the group while the workers are still importing:
    they must not die of it (from birth they leave SIGINT and SIGTERM to the parent)."""
    sites = await serve_hosts(serve, delay=0.05)
    process = await start_front(sites, tmp_path, start_new_session=True)
    async with reaped(process):
        for _ in range(1000):  # bounded: 2 workers show within seconds
            if len(await worker_pids(process.pid)) == 2:
                break
        os.killpg(process.pid, signal.SIGTERM)
        async with asyncio.timeout(60):
            _, err = await process.communicate()
    assert process.returncode == 143, err
    assert b"died" not in err and b"Traceback" not in err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["finished"] is False


@pytest.mark.parametrize("pages_read", [0, 1])
async def test_leaving_a_front_early_returns_promptly(serve: SiteFactory, pages_read: int) -> None:
    sites = await serve_hosts(serve, delay=0.05)

    async with asyncio.timeout(30):
        async with Crawler(config(sites, None)) as crawler:
            if pages_read:
                async for _ in crawler:
                    break

    assert crawler.stats().pages < 4 * PAGES


async def test_an_extractor_runs_in_every_process(serve: SiteFactory, tmp_path: Path) -> None:
    sites = await serve_hosts(serve)

    stats = await crawl(config(sites, tmp_path, extract="test_extract:titles"))

    items = read_jsonl(tmp_path / "items.jsonl")
    ok = [r for r in read_jsonl(tmp_path / "pages.jsonl") if r["status"] == 200]
    assert stats.items == len(items) == len(ok)
    assert {item["url"] for item in items} == {r["url"] for r in ok}


async def test_save_html_in_every_process(serve: SiteFactory, tmp_path: Path) -> None:
    sites = await serve_hosts(serve)

    await crawl(config(sites, tmp_path, save_html=True))

    ok = [r for r in read_jsonl(tmp_path / "pages.jsonl") if r["status"] == 200]
    files = [path for path in (tmp_path / "html").rglob("*") if path.is_file()]
    assert len(files) == len(ok)


async def test_a_single_host_is_split_between_processes_politely(
    serve: SiteFactory, tmp_path: Path
) -> None:
    in_flight, most = 0, 0
    arrivals: list[float] = []

    async def page(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, most
        arrivals.append(asyncio.get_running_loop().time())
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.03)
        in_flight -= 1
        number = int(request.match_info["n"])
        return html_page(str(number), [f"/p/{(number * 7 + k) % 40}" for k in range(1, 6)])

    async def robots(_: web.Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nDisallow: /private\n")

    site = await serve({r"/p/{n:\d+}": page, "/robots.txt": robots})
    config = CrawlConfig(
        seeds=(site.url + "/p/0",), output_dir=tmp_path, processes=2, per_host=2, delay=0.1
    )
    async with LoopLag() as lag:  # how late this loop's server may stamp an arrival
        stats = await crawl(config)
    assert stats.finished and stats.pages == 40
    urls = [r["url"] for r in read_jsonl(tmp_path / "pages.jsonl")]
    assert len(urls) == len(set(urls)) == 40
    pages = [path for path in site.requests if path.startswith("/p/")]
    assert len(pages) == len(set(pages)) == 40
    assert site.count("/robots.txt") == 1  # fetched by one process, sent to the other
    assert most <= 2  # --per-host holds for both processes together
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.08 - lag.worst, (min(gaps), lag.worst)
    split = {owner(f"{site.url}/p/{n}", 2, split=True) for n in range(40)}
    assert split == {0, 1}


async def test_an_incremental_crawl_follows_the_links_a_front_stored(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """A front's state.sqlite keeps each page's URLs and links, as one process's
    does: a later --incremental run whose pages all answer 304 still finds every
    page, and who links to the missing one."""

    async def page(request: web.Request) -> web.StreamResponse:
        number = int(request.match_info["n"])
        if number >= PAGES:
            raise web.HTTPNotFound()
        etag = f'"{number}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        links = [f"/p/{number + 1}", f"/p/{PAGES}"] if number == PAGES - 2 else [f"/p/{number + 1}"]
        response = html_page(str(number), links)
        response.headers["ETag"] = etag
        return response

    site = await serve({r"/p/{n:\d+}": page})
    first = await crawl(
        CrawlConfig(seeds=(site.url + "/p/0",), output_dir=tmp_path, processes=2, no_sitemaps=True)
    )
    again = await crawl(CrawlConfig(output_dir=tmp_path, incremental=True, no_sitemaps=True))
    assert first.pages == again.pages == PAGES + 1  # and the missing /p/40
    assert again.unchanged == PAGES and again.removed == 0
    # /p/38 and /p/39 link to it: they answered 304, their links came from the state.
    [missing] = read_jsonl(tmp_path / "broken.jsonl")
    assert missing["referrer_count"] == 2


async def test_a_script_without_a_main_guard_is_told_why_its_workers_died(
    serve: SiteFactory, tmp_path: Path
) -> None:
    sites = await serve_hosts(serve)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from crawler import CrawlConfig, run\n"
        f"run(CrawlConfig(seeds=({sites[0].url + '/p/0'!r},), processes=2))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    async with reaped(process), asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode != 0
    assert (
        b'before it started (a script that runs a crawl with processes > 1 must do so under `if __name__ == "__main__":`)'
        in err
    )


async def test_concurrency_is_the_total_across_processes(serve: SiteFactory) -> None:
    """--concurrency 3 with two processes: never more than 3 requests in flight in all
    (each process takes its share; before, each took all 3)."""
    in_flight, most = 0, 0

    async def page(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return html_page(request.path, [f"/p/{n}" for n in range(12)])

    sites = [await serve({"/{path:.*}": page}, host=host) for host in HOSTS]
    config = CrawlConfig(
        seeds=tuple(site.url + "/" for site in sites),
        processes=2,
        concurrency=3,
        per_host=4,
        ignore_robots=True,
        no_sitemaps=True,
    )

    stats = await crawl(config)

    assert stats.finished and stats.pages == len(HOSTS) * 13
    assert most <= 3


def test_each_process_takes_its_share_of_the_concurrency() -> None:
    from crawler.procs.wire import share

    assert [share(32, index, 3) for index in range(3)] == [11, 11, 10]
    assert [share(1, index, 2) for index in range(2)] == [1, 1]
