"""The engine end to end against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import logging
from pathlib import Path

import pytest
from aiohttp import web

from conftest import SiteFactory, html_page, read_jsonl, static_site
from crawler import CrawlConfig, Crawler, crawl
from crawler.frontier.memory import MemoryFrontier
from crawler.frontier.protocol import Lease
from crawler.loop.gate import OFFSITE
from crawler.loop.visit import SeedRedirects
from crawler.records import Entry


def ring_site(pages: int) -> dict[str, list[str]]:
    """Page i links to i+1 and to i*7 % n: every page reachable, many duplicate links."""
    site = {"/": ["/p/0", "/p/0#top", "/P/../p/1"]}
    for number in range(pages):
        site[f"/p/{number}"] = [f"/p/{(number + 1) % pages}", f"/p/{number * 7 % pages}", "/"]
    return site


async def test_every_page_is_crawled_exactly_once(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(ring_site(120)))
    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, concurrency=8, per_host=8)

    stats = await crawl(config)

    records = read_jsonl(tmp_path / "pages.jsonl")
    urls = [record["url"] for record in records]
    assert len(urls) == len(set(urls)) == 121
    assert stats.pages == 121
    page_paths = [path for path in site.requests if path != "/robots.txt"]
    assert sorted(page_paths) == sorted(set(page_paths)), "a page was requested twice"
    assert site.count("/robots.txt") == 1
    assert json.loads((tmp_path / "stats.json").read_text())["pages"] == 121


async def test_the_dispatcher_leases_for_the_idle_workers_and_no_more(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = await serve(static_site(ring_site(120)))
    asked: list[tuple[int, int]] = []  # (limit, leases out) at each call
    lease = MemoryFrontier.lease

    async def counted(front: MemoryFrontier, limit: int = 1) -> list[Lease]:
        asked.append((limit, front.in_flight()))
        return await lease(front, limit)

    monkeypatch.setattr(MemoryFrontier, "lease", counted)
    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, concurrency=8, per_host=8)

    assert (await crawl(config)).pages == 121

    assert asked[0] == (8, 0)  # every worker idle: one call for all of them
    assert all(limit >= 1 and limit + out <= 8 for limit, out in asked), asked


async def test_broken_links_are_reported_with_their_referrers(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a", "/b", "/gone"], "/a": ["/gone"], "/b": []}))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))

    broken = read_jsonl(tmp_path / "broken.jsonl")
    assert [link["url"] for link in broken] == [site.url + "/gone"]
    assert broken[0]["status"] == 404
    assert sorted(broken[0]["referrers"]) == [site.url + "/", site.url + "/a"]
    assert broken[0]["referrer_count"] == 2


async def test_max_pages_stops_the_crawl(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(ring_site(50)))

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, max_pages=10))

    assert stats.pages == 10
    assert len(read_jsonl(tmp_path / "pages.jsonl")) == 10


async def test_max_depth_limits_links_followed(serve: SiteFactory, tmp_path: Path) -> None:
    chain = {"/": ["/1"], "/1": ["/2"], "/2": ["/3"], "/3": ["/4"], "/4": []}
    site = await serve(static_site(chain))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, max_depth=2))

    records = read_jsonl(tmp_path / "pages.jsonl")
    assert {record["url"].removeprefix(site.url) for record in records} == {"/", "/1", "/2"}
    assert max(record["depth"] for record in records) == 2


async def test_max_time_stops_scheduling(serve: SiteFactory, tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        number = int(request.match_info["n"])
        return html_page(str(number), [f"/slow/{number + 1}"])

    site = await serve({"/slow/{n}": slow})
    config = CrawlConfig(seeds=(site.url + "/slow/0",), output_dir=tmp_path, max_time=0.5)

    stats = await asyncio.wait_for(crawl(config), timeout=10)

    assert 1 <= stats.pages < 40
    assert stats.queued == 1
    assert json.loads((tmp_path / "stats.json").read_text())["finished"] is False


async def test_redirects_are_followed_inside_one_record(serve: SiteFactory, tmp_path: Path) -> None:
    async def hop(request: web.Request) -> web.StreamResponse:
        number = int(request.match_info["n"])
        raise web.HTTPFound(f"/hop/{number + 1}" if number < 3 else "/target")

    async def loop_a(_: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/loop-b")

    async def loop_b(_: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/loop-a")

    async def away(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("mailto:someone@example.org")

    routes = static_site({"/": ["/hop/0", "/loop-a", "/away"], "/target": ["/"]})
    routes |= {"/hop/{n}": hop, "/loop-a": loop_a, "/loop-b": loop_b, "/away": away}
    site = await serve(routes)

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))

    records = {
        record["url"].removeprefix(site.url): record
        for record in read_jsonl(tmp_path / "pages.jsonl")
    }
    assert set(records) == {"/", "/hop/0", "/loop-a", "/away"}
    assert records["/hop/0"]["final_url"] == site.url + "/target"
    assert records["/hop/0"]["status"] == 200
    assert records["/hop/0"]["redirects"] == 4
    assert records["/hop/0"]["title"] == "/target"
    assert records["/loop-a"]["error"] == "redirect-loop"
    assert records["/away"]["error"] == "bad-redirect"
    assert site.count("/target") == 1


async def test_a_seed_redirected_out_of_scope_is_named_in_a_warning(
    serve: SiteFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seeds that redirect to another host end the crawl there, each named in one line
    (the first three of them); a link that leaves the same way is an offsite link,
    said nowhere."""
    other = await serve(static_site({"/": []}), host="127.0.0.2")

    async def away(_: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(other.url + "/")

    site = await serve(
        static_site({"/": ["/away/link"]})
        | {f"/away/{name}": away for name in ("1", "2", "3", "4", "link")}
    )
    caplog.set_level(logging.WARNING)
    seeds = [site.url + "/", *(f"{site.url}/away/{n}" for n in range(1, 5))]
    await crawl(CrawlConfig(seeds=seeds, output_dir=tmp_path, allow_private=True))

    said = [message for message in caplog.messages if "out of the crawl's scope" in message]
    assert len(said) == 3
    named = [seed for seed in seeds[1:] if any(f"seed {seed} " in line for line in said)]
    assert len(named) == 3
    assert all(f"to {other.url}/ (not followed)" in line for line in said)
    assert all("--allow-domain 127.0.0.2" in line for line in said)
    assert "no more such seeds are named" in said[-1]
    assert other.count("/") == 0
    records = {record["url"] for record in read_jsonl(tmp_path / "pages.jsonl")}
    assert records == {*seeds, site.url + "/away/link"}


def test_a_seed_redirected_to_an_ipv6_address_is_not_told_to_allow_it_as_a_domain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    SeedRedirects().judged(Entry("http://a.test/", 0), "http://[::1]:8080/", OFFSITE)
    (said,) = caplog.messages
    assert "to http://[::1]:8080/ (not followed): give that URL as the seed" in said
    assert "--allow-domain" not in said  # it takes no IPv6 address


async def test_robots_txt_is_obeyed(serve: SiteFactory, tmp_path: Path) -> None:
    async def robots(_: web.Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nDisallow: /secret\n")

    routes = static_site({"/": ["/open", "/secret/page"], "/open": [], "/secret/page": []})
    site = await serve(routes | {"/robots.txt": robots})

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))

    records = {
        record["url"].removeprefix(site.url): record
        for record in read_jsonl(tmp_path / "pages.jsonl")
    }
    assert records["/secret/page"]["error"] == "robots"
    assert records["/secret/page"]["status"] is None
    assert site.count("/secret/page") == 0
    assert records["/open"]["status"] == 200


async def test_a_host_whose_robots_txt_fails_is_not_asked_for_its_sitemaps(
    serve: SiteFactory, tmp_path: Path
) -> None:
    async def robots(_: web.Request) -> web.StreamResponse:
        return web.Response(status=500)

    site = await serve({**static_site({"/": [], "/sitemap.xml": []}), "/robots.txt": robots})

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, retries=0))

    assert stats.error_counts == {"robots-unavailable": 1}
    assert site.requests == ["/robots.txt"]  # RFC 9309: disallow all, sitemaps included


async def test_retries_honour_retry_after(serve: SiteFactory, tmp_path: Path) -> None:
    answers = iter([503, 503, 200])

    async def flaky(_: web.Request) -> web.StreamResponse:
        status = next(answers)
        if status == 503:
            return web.Response(status=503, headers={"Retry-After": "1"})
        return html_page("finally")

    site = await serve({"/": flaky})

    stats = await crawl(
        CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, retries=2, ignore_robots=True)
    )

    [record] = read_jsonl(tmp_path / "pages.jsonl")
    assert record["status"] == 200
    assert stats.retries == 2
    times = [when for path, when in site.arrivals if path == "/"]
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(times))


async def test_scope_is_the_seed_hosts_unless_allowed(serve: SiteFactory, tmp_path: Path) -> None:
    other = await serve(static_site({"/": []}), host="127.0.0.2")
    site = await serve(static_site({"/": [other.url + "/"]}))

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "one"))
    assert stats.pages == 1
    assert stats.offsite_links == 1

    wider = CrawlConfig(
        seeds=(site.url + "/",), output_dir=tmp_path / "two", allow_domain=("127.0.0.2",)
    )
    stats = await crawl(wider)
    assert stats.pages == 2
    assert other.count("/") == 1


async def test_too_large_bodies_are_cut_and_read_as_far_as_they_go(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """A page past --max-bytes is cut there; the links of the part read are followed,
    those past the cut never seen; its record says too-large."""
    big = "<a href='/before'>x</a>" + "x" * 200_000 + "<a href='/after'>y</a>"

    async def huge(_: web.Request) -> web.StreamResponse:
        return web.Response(text=big, content_type="text/html")

    site = await serve({"/": huge, "/before": huge, "/after": huge})

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, max_bytes=10_000))

    records = {record["url"]: record for record in read_jsonl(tmp_path / "pages.jsonl")}
    assert set(records) == {site.url + "/", site.url + "/before"}
    assert {record["error"] for record in records.values()} == {"too-large"}
    assert site.count("/after") == 0


async def test_library_iterates_records_and_writes_no_files(
    serve: SiteFactory, tmp_path: Path, monkeypatch: object
) -> None:
    site = await serve(static_site(ring_site(20)))

    async with Crawler(CrawlConfig(seeds=(site.url + "/",))) as crawler:
        urls = [page.url async for page in crawler]

    assert len(urls) == len(set(urls)) == 21
    assert crawler.stats().pages == 21
    assert crawler.stats().finished


async def test_leaving_the_block_early_stops_the_crawl(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(ring_site(200)))
    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, per_host=2)

    async with Crawler(config) as crawler:
        async for _ in crawler:
            break

    written = read_jsonl(tmp_path / "pages.jsonl")
    assert 1 <= len(written) < 201
    assert json.loads((tmp_path / "stats.json").read_text())["pages"] == len(written)


async def test_save_html_mirrors_pages_inside_the_output(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(
        static_site({"/": ["/a/b", "/a/b/", "/q?x=1", "/q?x=2"], "/a/b": [], "/a/b/": [], "/q": []})
    )

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, save_html=True))

    files = sorted(path for path in (tmp_path / "html").rglob("*") if path.is_file())
    assert len(files) == 5
    assert all(path.resolve().is_relative_to((tmp_path / "html").resolve()) for path in files)
    titles = sorted(path.read_text().split("<title>")[1].split("<")[0] for path in files)
    assert titles == ["/", "/a/b", "/a/b/", "/q", "/q"]


async def test_csv_format(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, format="csv"))

    lines = (tmp_path / "pages.csv").read_text().splitlines()
    assert lines[0].startswith("url,final_url,status,depth")
    assert len(lines) == 3


async def test_csv_cells_never_run_as_formulas(serve: SiteFactory, tmp_path: Path) -> None:
    titles = {"/": '=HYPERLINK("http://evil.test","x")', "/a": "@SUM(1+1)"}

    async def titled(request: web.Request) -> web.StreamResponse:
        return html_page(titles[request.path], ["/a"])

    site = await serve({"/": titled, "/a": titled})
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, format="csv"))

    with (tmp_path / "pages.csv").open(newline="") as file:
        rows = {row["url"].removeprefix(site.url): row for row in csv.DictReader(file)}
    assert rows["/"]["title"] == "'" + titles["/"]
    assert rows["/a"]["title"] == "'@SUM(1+1)"
    assert rows["/"]["status"] == "200"
