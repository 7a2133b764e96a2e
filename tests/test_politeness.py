"""Politeness end to end, measured on the server side: robots.txt, Crawl-delay,
back-off, Retry-After, nofollow and sitemaps against real loopback servers."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from conftest import Handler, RedisServer, SiteFactory, html_page, read_jsonl, static_site
from crawler import CrawlConfig, crawl
from crawler.frontier.politeness import HostSlot


def robots_route(text: str, status: int = 200) -> dict[str, Handler]:
    async def robots(_: web.Request) -> web.StreamResponse:
        return web.Response(text=text, status=status)

    return {"/robots.txt": robots}


def by_path(site_url: str, directory: Path) -> dict[str, dict[str, object]]:
    records = read_jsonl(directory / "pages.jsonl")
    return {str(record["url"]).removeprefix(site_url): record for record in records}


async def test_crawl_delay_spaces_every_request_to_the_host(
    serve: SiteFactory, tmp_path: Path
) -> None:
    pages = {"/": ["/1", "/2", "/3"], "/1": [], "/2": [], "/3": []}
    site = await serve(static_site(pages) | robots_route("User-agent: *\nCrawl-delay: 0.3\n"))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, per_host=4))

    times = [when for _, when in site.arrivals]
    assert len(times) == 6  # robots.txt, /sitemap.xml (404) and four pages
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.28, gaps


async def test_delay_flag_spaces_requests(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/1", "/2"], "/1": [], "/2": []}))

    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, delay=0.2, no_sitemaps=True)
    await crawl(config)

    times = [when for _, when in site.arrivals]
    assert len(times) == 4
    assert all(later - earlier >= 0.18 for earlier, later in itertools.pairwise(times))


async def test_a_throttled_host_backs_off_while_another_keeps_flowing(
    serve: SiteFactory, tmp_path: Path
) -> None:
    async def overloaded(_: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    healthy = await serve(
        static_site({"/": [f"/{n}" for n in range(15)]} | {f"/{n}": [] for n in range(15)}),
        host="127.0.0.2",
    )
    busy = await serve(static_site({"/": ["/a", "/b"]}) | {"/a": overloaded, "/b": overloaded})
    config = CrawlConfig(
        seeds=(busy.url + "/", healthy.url + "/"),
        output_dir=tmp_path,
        retries=1,
        per_host=1,
        no_sitemaps=True,
        ignore_robots=True,
    )

    stats = await crawl(config)

    assert stats.pages == 1 + 2 + 1 + 15
    failing = [when for path, when in busy.arrivals if path in ("/a", "/b")]
    assert len(failing) == 4  # two URLs, two attempts each
    gaps = [later - earlier for earlier, later in itertools.pairwise(failing)]
    assert min(gaps) >= 0.45, gaps  # the back-off floor, doubling from there
    assert max(when for _, when in healthy.arrivals) < max(failing)
    records = read_jsonl(tmp_path / "pages.jsonl")
    assert sorted(r["status"] for r in records if r["url"].endswith(("/a", "/b"))) == [503, 503]
    assert stats.retries == 2


async def test_robots_404_allows_everything(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/x"], "/x": []}))

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))

    assert stats.ok == 2
    assert site.count("/robots.txt") == 1


async def test_robots_500_refuses_the_host_after_a_few_tries(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/x"], "/x": []}) | robots_route("oops", status=500))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, retries=1))

    assert site.count("/robots.txt") == 2
    assert site.count("/") == 0
    assert by_path(site.url, tmp_path)["/"]["error"] == "robots-unavailable"


async def test_robots_timeout_refuses_the_host(serve: SiteFactory, tmp_path: Path) -> None:
    async def stuck(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(text="")

    site = await serve(static_site({"/": []}) | {"/robots.txt": stuck})

    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, timeout=0.3, retries=0)
    await crawl(config)

    assert site.count("/") == 0
    assert by_path(site.url, tmp_path)["/"]["error"] == "timeout"


async def test_robots_body_is_read_up_to_500_kib(serve: SiteFactory, tmp_path: Path) -> None:
    padding = "# " + "x" * 100 + "\n"
    text = "User-agent: *\nDisallow: /early\n" + padding * 50_000 + "Disallow: /late\n"
    assert len(text) > 5_000_000
    pages = {"/": ["/early", "/late"], "/early": [], "/late": []}
    site = await serve(static_site(pages) | robots_route(text))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))

    records = by_path(site.url, tmp_path)
    assert records["/early"]["error"] == "robots"
    assert records["/late"]["status"] == 200


async def test_retry_after_as_an_http_date(serve: SiteFactory, tmp_path: Path) -> None:
    import time
    from email.utils import formatdate

    answers = iter([True, False])

    async def later(_: web.Request) -> web.StreamResponse:
        if next(answers):
            when = formatdate(time.time() + 2, usegmt=True)
            return web.Response(status=429, headers={"Retry-After": when})
        return html_page("ok")

    site = await serve({"/": later})

    config = CrawlConfig(
        seeds=(site.url + "/",), output_dir=tmp_path, ignore_robots=True, no_sitemaps=True
    )
    await crawl(config)

    times = [when for _, when in site.arrivals]
    assert len(times) == 2
    assert times[1] - times[0] >= 1.0  # the HTTP date has one-second resolution


async def test_nofollow_noindex_and_x_robots_tag(serve: SiteFactory, tmp_path: Path) -> None:
    async def tagged(_: web.Request) -> web.StreamResponse:
        response = html_page("tagged", ["/via-header"])
        response.headers["X-Robots-Tag"] = "nofollow"
        return response

    async def noindex(_: web.Request) -> web.StreamResponse:
        return html_page(
            "noindex", ["/after-noindex"], extra='<meta name="robots" content="noindex">'
        )

    async def home(_: web.Request) -> web.StreamResponse:
        return html_page(
            "home", ["/tagged", "/noindex"], extra='<a rel="nofollow" href="/via-rel">x</a>'
        )

    routes = static_site({"/via-header": [], "/after-noindex": [], "/via-rel": []})
    site = await serve(routes | {"/": home, "/tagged": tagged, "/noindex": noindex})

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "polite"))
    records = by_path(site.url, tmp_path / "polite")
    assert set(records) == {"/", "/tagged", "/noindex", "/after-noindex"}
    assert records["/noindex"]["noindex"] is True

    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "all", ignore_nofollow=True)
    await crawl(config)
    assert {"/via-header", "/via-rel"} <= set(by_path(site.url, tmp_path / "all"))


async def test_sitemap_index_with_a_gzipped_child(serve: SiteFactory, tmp_path: Path) -> None:
    namespace = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'

    async def index(request: web.Request) -> web.StreamResponse:
        base = f"http://{request.host}"
        xml = f"<sitemapindex {namespace}><sitemap><loc>{base}/child.xml.gz</loc></sitemap></sitemapindex>"
        return web.Response(text=xml, content_type="application/xml")

    async def child(request: web.Request) -> web.StreamResponse:
        base = f"http://{request.host}"
        xml = f"<urlset {namespace}><url><loc>{base}/orphan</loc></url><url><loc>http://elsewhere.invalid/</loc></url></urlset>"
        return web.Response(body=gzip.compress(xml.encode()), content_type="application/gzip")

    routes = static_site({"/": [], "/orphan": []}) | {"/index.xml": index, "/child.xml.gz": child}
    site = await serve(routes | robots_route("User-agent: *\nSitemap: /index.xml\n"))

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))

    records = by_path(site.url, tmp_path)
    assert set(records) == {"/", "/orphan"}
    assert records["/orphan"]["referrer"] == site.url + "/child.xml.gz"
    assert stats.sitemaps == 2 and stats.sitemap_urls == 1
    assert site.count("/sitemap.xml") == 1

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "off", no_sitemaps=True))
    assert set(by_path(site.url, tmp_path / "off")) == {"/"}


async def test_robots_txt_redirects_are_followed(serve: SiteFactory, tmp_path: Path) -> None:
    async def moved(_: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/elsewhere/robots.txt")

    async def real(_: web.Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nDisallow: /secret\n")

    routes = static_site({"/": ["/secret", "/open"], "/secret": [], "/open": []})
    site = await serve(routes | {"/robots.txt": moved, "/elsewhere/robots.txt": real})

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, no_sitemaps=True))

    records = by_path(site.url, tmp_path)
    assert records["/secret"]["error"] == "robots"
    assert site.count("/secret") == 0 and site.count("/elsewhere/robots.txt") == 1


def _held_sends(
    monkeypatch: pytest.MonkeyPatch, held: Callable[[object, str], bool]
) -> list[float]:
    """Requests for which ``held(fetcher, url)`` are held up 0.45 s between their lease
    and their send (a queue, a busy loop); returns the list the send times of every
    request go into, as the fetcher sends them: what the crawler controls."""
    from crawler.net import fetcher

    real, fetch = fetcher.Fetcher._request, fetcher.Fetcher.fetch
    sent: list[float] = []

    async def sending(self: fetcher.Fetcher, url: str, *args: object) -> object:
        sent.append(time.monotonic())
        return await real(self, url, *args)  # type: ignore[arg-type]

    async def held_up(self: fetcher.Fetcher, url: str, **kwargs: object) -> object:
        if held(self, url):
            await asyncio.sleep(0.45)
        return await fetch(self, url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fetcher.Fetcher, "_request", sending)
    monkeypatch.setattr(fetcher.Fetcher, "fetch", held_up)
    return sent


def _gaps(sent: list[float]) -> list[float]:
    times = sorted(sent)
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_the_gap_is_kept_between_requests_as_they_leave(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request held up between its lease and its send (a queue, a busy loop: here a
    sleep) must not leave right before or after the next one: the gap is kept between
    the requests as they are sent (robots.txt's included), measured where the fetcher
    sends them, which is what the crawler controls."""
    sent = _held_sends(monkeypatch, lambda _, url: url.endswith(("/1", "/3")))
    pages = {f"/{n}": [f"/{m}" for m in range(8)] for n in range(8)}
    site = await serve(static_site(pages))
    config = CrawlConfig(seeds=(site.url + "/0",), output_dir=tmp_path, per_host=4, delay=0.3)

    stats = await crawl(config)

    assert stats.finished and stats.pages == 8
    gaps = _gaps(sent)
    assert len(sent) == 10 and min(gaps) >= 0.29, gaps  # robots.txt, sitemap.xml, 8 pages


async def test_the_gap_is_kept_between_members_requests_as_they_leave(
    serve: SiteFactory, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two members of a shared crawl: every request of one member is held up after its
    lease, and the other leases the host a gap later. The late request must not leave
    right beside the other's: it moves the host's next start in Redis, and waits a gap
    after a lease another member took meanwhile (before: gaps down to 0.13 s)."""
    from crawler.loop.engine import Engine

    members: list[object] = []

    def held(fetcher: object, url: str) -> bool:
        if fetcher not in members:
            members.append(fetcher)
        return fetcher is members[0] and not url.endswith("/robots.txt")

    sent = _held_sends(monkeypatch, held)
    pages = {f"/{n}": [f"/{m}" for m in range(8)] for n in range(8)}
    site = await serve(static_site(pages))
    configs = [
        CrawlConfig(
            seeds=(site.url + "/0",),
            output_dir=tmp_path / name,
            frontier=redis_server.url,
            per_host=4,
            delay=0.3,
            no_sitemaps=True,
        )
        for name in ("a", "b")
    ]

    first, second = await asyncio.gather(*(Engine(config).run() for config in configs))
    assert second.finished

    assert first.finished and first.pages == 8
    gaps = _gaps(sent)
    assert len(sent) == 9 and min(gaps) >= 0.29, gaps  # robots.txt and 8 pages


def test_a_request_that_leaves_late_moves_the_next_one() -> None:
    """The gap counts from when a request leaves, as Politeness.pace takes it: a request
    whose timer fired late (a busy loop) pushes the next one back too, where a moment
    reserved ahead would have let the next one leave right behind it."""
    slot = HostSlot(limit=2, delay=0.3)
    assert slot.send_wait(10.0) == 0  # leaves
    assert slot.send_wait(10.1) == pytest.approx(0.2)  # the second waits for 10.3...
    assert slot.send_wait(10.45) == 0  # ...its wake-up came late: it leaves at 10.45
    assert slot.send_wait(10.6) == pytest.approx(0.15)  # a third: not before 10.75
    assert slot.send_wait(10.75) == 0


def test_a_request_whose_connection_came_late_moves_the_next_one() -> None:
    """Politeness.sent, when aiohttp has the request's connection: a connect (or a busy
    loop) between pace() and the write pushes the next request back by as much."""
    slot = HostSlot(limit=2, delay=0.5)
    assert slot.send_wait(10.0) == 0
    slot.sent(10.08)  # its connection was made 80 ms later: it leaves now
    assert slot.send_wait(10.5) == pytest.approx(0.08)
    assert slot.send_wait(10.58) == 0
    slot.sent(10.58)  # a kept connection: no change
    assert slot.send_wait(11.0) == pytest.approx(0.08)
