"""crawler check over several runs: a stopped check resumed, nightly passes with the
cache (--update, --cache-age), an old state.sqlite, and its errors on the command line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from conftest import Site, SiteFactory, html_page, read_jsonl
from crawler import CrawlConfig, Crawler, LinkCheck, PageRecord
from crawler.config import load_toml
from test_cli import assert_one_line_error, run_cli


@pytest.fixture
async def two_hosts(serve: SiteFactory) -> AsyncIterator[tuple[Site, Site]]:
    other = await serve({"/fine": _page("fine"), "/robots.txt": _page("")}, host="127.0.0.2")

    def links(*paths: str) -> list[str]:
        return [*paths, f"{other.url}/fine", f"{other.url}/gone"]

    site = await serve(
        {
            "/": _page("home", links("/a", "/b", "/c", "/d")),
            **{f"/{name}": _page(name, links("/", "/missing")) for name in "abcd"},
            "/logo.png": _png,
        }
    )
    yield site, other


def _page(title: str, links: list[str] = ()) -> web.Handler:  # type: ignore[assignment]
    async def handler(_: web.Request) -> web.Response:
        return html_page(title, links, extra='<img src="/logo.png">')

    return handler


async def _png(_: web.Request) -> web.Response:
    return web.Response(body=b"\x89PNG", content_type="image/png")


async def checked(config: CrawlConfig, stop_after: int | None = None) -> dict[str, LinkCheck]:
    results: dict[str, LinkCheck] = {}
    pages = 0
    async with asyncio.timeout(60), Crawler(config) as crawl:
        async for record in crawl:
            if isinstance(record, LinkCheck):
                results[record.url] = record
            elif isinstance(record, PageRecord) and record.kind == "page":
                pages += 1
                if pages == stop_after:
                    crawl.stop()
    return results


def _summary(results: dict[str, LinkCheck]) -> dict[str, tuple[str, int]]:
    return {url: (check.result, len(check.referrers)) for url, check in results.items()}


async def test_a_stopped_check_resumed_reports_as_one_run(
    two_hosts: tuple[Site, Site], tmp_path: Path
) -> None:
    site, _ = two_hosts
    whole = await checked(CrawlConfig(seeds=[site.url + "/"], check=True, per_host=1))
    base = CrawlConfig(seeds=[site.url + "/"], check=True, output_dir=tmp_path, per_host=1)
    await checked(base, stop_after=2)
    resumed = await checked(CrawlConfig(check=True, output_dir=tmp_path, resume=True))
    assert _summary(resumed) == _summary(whole)
    assert resumed[site.url + "/missing"].result == "broken"
    assert len(resumed[site.url + "/missing"].referrers) == 4  # /a../d, some from the first run
    assert (tmp_path / "checks.jsonl").read_text().count("\n") == len(whole)


async def test_the_nightly_pass_reuses_working_links_for_cache_age(
    two_hosts: tuple[Site, Site], tmp_path: Path
) -> None:
    site, other = two_hosts
    config = CrawlConfig(seeds=[site.url + "/"], check=True, output_dir=tmp_path, update=True)
    first = await checked(config)
    assert first[other.url + "/fine"].result == "ok"
    assert first[other.url + "/gone"].result == "broken"
    assert other.count("/fine") == 1 and other.count("/gone") == 2  # HEAD, then GET
    second = await checked(config)
    assert _summary(second) == _summary(first)
    assert other.count("/fine") == 1  # from the cache: not asked again
    assert other.count("/gone") == 4  # a failing link is asked every pass
    assert site.count("/logo.png") == 1
    again = await checked(CrawlConfig(check=True, output_dir=tmp_path, update=True, cache_age=0))
    assert _summary(again) == _summary(first)
    assert other.count("/fine") == 2 and site.count("/logo.png") == 2


async def test_a_state_from_before_check_is_taken_on(
    two_hosts: tuple[Site, Site], tmp_path: Path
) -> None:
    site, _ = two_hosts
    await checked(CrawlConfig(seeds=[site.url + "/"], output_dir=tmp_path))  # a plain crawl
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        db.execute("DROP TABLE checks")
        db.execute("ALTER TABLE urls DROP COLUMN refs")
    results = await checked(CrawlConfig(check=True, output_dir=tmp_path, update=True))
    # The pages were asked for whole (their links were never checked): all are found.
    assert results[site.url + "/missing"].result == "broken"
    assert len(results[site.url + "/missing"].referrers) == 4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--accept", "600"), "--accept wants status codes and ranges"),
        (("--accept", "200..abc"), "--accept wants status codes and ranges"),
        (("--cache-age", "soon"), "--cache-age wants seconds or a duration"),
        (("--exclude", "re:("), "bad link pattern"),
        (("--processes", "2"), "crawler check runs in one process"),
        (("--format", "xml"), "invalid choice: 'xml'"),
        (("--report", "/nonexistent/dir/links.xml"), "cannot write --report"),
        (("--fail-on-broken",), "unrecognized arguments: --fail-on-broken"),
    ],
)
async def test_bad_check_flags_are_one_line_errors(
    flags: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = await run_cli("check", "http://127.0.0.1:9/", *flags, cwd=tmp_path)
    assert_one_line_error(result, 2, message)
    assert not (tmp_path / "output").exists()


def test_the_check_table_of_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "crawler.toml"
    path.write_text(
        '[crawl]\nformat = "csv"\nmax_pages = 5\n'
        '[check]\nformat = "junit"\naccept = "200..299,403"\ncache_age = "12h"\n'
    )
    crawl = load_toml(path)
    assert crawl == {"format": "csv", "max_pages": 5}
    check = load_toml(path, "check")
    assert check["report_format"] == "junit" and check["format"] == "csv"
    config = CrawlConfig(**{k: v for k, v in check.items() if k != "report_format"})
    assert (config.accept, config.cache_age, config.max_pages) == ("200..299,403", 43200.0, 5)
    path.write_text('[check]\nformt = "junit"\n')
    with pytest.raises(Exception, match=r"unknown setting 'formt' in \[check\]"):
        load_toml(path, "check")


async def test_past_max_pages_the_links_are_checked_not_crawled(
    two_hosts: tuple[Site, Site],
) -> None:
    site, _ = two_hosts
    config = CrawlConfig(seeds=[site.url + "/"], check=True, max_pages=2, per_host=1)
    results: dict[str, LinkCheck] = {}
    kinds: dict[str, str] = {}
    async with asyncio.timeout(60), Crawler(config) as crawl:
        async for record in crawl:
            if isinstance(record, LinkCheck):
                results[record.url] = record
            elif isinstance(record, PageRecord):
                kinds[record.url] = record.kind
    pages = [url for url, kind in kinds.items() if kind == "page"]
    assert len(pages) == 2 and crawl.stats().pages == 2 and crawl.stats().finished
    # The home page's other links are checked (HEAD), not crawled: each has its result.
    home_links = [site.url + path for path in ("/a", "/b", "/c", "/d")]
    assert {results[url].result for url in home_links} == {"ok"}
    # The pages past --max-pages are read for their ids only.
    assert sorted(kind for url, kind in kinds.items() if url in home_links) == ["anchors"] * 3 + [
        "page"
    ]
    assert results[site.url + "/missing"].result == "broken"  # linked from the page crawled
    assert len(results[site.url + "/missing"].referrers) == 1


async def test_a_quiet_night_with_nothing_broken_prints_nothing(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve({"/": _page("home", ["/a"]), "/a": _page("a"), "/logo.png": _png})
    args = ("check", site.url + "/", "-o", str(tmp_path / "out"), "--update", "--quiet")
    assert await run_cli(*args, cwd=tmp_path) == (0, "", "")
    assert await run_cli(*args, cwd=tmp_path) == (0, "", "")  # the next night: still silent
    code, out, _ = await run_cli(*args[:-1], cwd=tmp_path)
    assert code == 0 and out.startswith("3 URLs checked on 2 pages: 3 ok")


async def test_the_warc_file_says_which_requests_were_head(
    two_hosts: tuple[Site, Site], tmp_path: Path
) -> None:
    from warcio.archiveiterator import ArchiveIterator

    site, _ = two_hosts
    warc = tmp_path / "check.warc.gz"
    await checked(CrawlConfig(seeds=[site.url + "/"], check=True, warc=warc))
    with warc.open("rb") as file:
        requests = [
            record.http_headers.protocol + " " + record.rec_headers["WARC-Target-URI"]
            for record in ArchiveIterator(file)
            if record.rec_type == "request"
        ]
    assert f"HEAD {site.url}/logo.png" in requests
    assert f"GET {site.url}/a" in requests


async def test_a_page_of_many_links_is_judged_off_the_event_loop(
    serve: SiteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from crawler.loop import checks
    from crawler.loop.linkbook import LinkBook

    links = [f"/img/{number}.png" for number in range(checks.BIG_LINK_COUNT)]

    async def many(_: web.Request) -> web.Response:
        images = "".join(f'<img src="{link}">' for link in links)
        return web.Response(text=f"<html><body>{images}</body></html>", content_type="text/html")

    site = await serve({"/": many, "/img/{name}": _png})
    threads: list[threading.Thread] = []
    real = LinkBook.resolve

    def watched(self: LinkBook, *args: object) -> object:
        threads.append(threading.current_thread())
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(LinkBook, "resolve", watched)
    config = CrawlConfig(seeds=[site.url + "/"], check=True, concurrency=64, per_host=64)
    results = await checked(config)
    assert threads and threads[0] is not threading.main_thread()
    assert sum(check.result == "ok" for check in results.values()) == len(links) + 1


def _validated(title: str, links: list[str]) -> web.Handler:
    """A page with an ETag that answers 304 to a request that sends it back."""
    etag = f'"{title}-1"'

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        response = html_page(title, links, extra='<p id="here">here</p>')
        response.headers["ETag"] = etag
        return response

    return handler


async def test_three_nights_on_a_site_that_answers_304(serve: SiteFactory, tmp_path: Path) -> None:
    """A 304 to our conditional request is the page unchanged: its links are checked as on
    the first night, and only what is broken is reported, night after night."""
    pages = {"/": ["/a", "/b", "/a#here"], "/a": ["/", "/b#here", "/missing"], "/b": ["/a"]}
    site = await serve({path: _validated(path, links) for path, links in pages.items()})
    out = tmp_path / "out"
    args = ("check", site.url + "/", "-o", str(out), "--update")
    nights = [await run_cli(*args, cwd=tmp_path) for _ in range(3)]
    assert site.count("/a") == 3 and site.count("/missing") >= 3
    for code, text, _ in nights:
        assert code == 1
        text = text.replace(site.url, "")  # its port may hold "404" or "304" (port 40475)
        assert "1 broken" in text and text.count("404") == 1 and "304" not in text
    for night in (2, 3):
        assert nights[night - 1][1].splitlines()[-1] == nights[0][1].splitlines()[-1]
    checks = {line["url"]: line for line in read_jsonl(out / "checks.jsonl")}
    assert checks[site.url + "/a"]["result"] == "ok"
    assert checks[site.url + "/b#here"]["result"] == "ok"
    assert [url for url, check in checks.items() if check["result"] == "broken"] == [
        site.url + "/missing"
    ]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["unchanged"] == 3 and stats["new"] == 0 and stats["broken"] == 1
    changes = {line["url"]: line["change"] for line in read_jsonl(out / "pages.jsonl")}
    assert changes[site.url + "/missing"] != "new"  # 404 every night: not new each night


async def test_a_page_of_many_links_night_after_night(serve: SiteFactory, tmp_path: Path) -> None:
    """A page of more links than are resolved, packed and reported at a time: every link
    gets its result and its line, the first night and the night its page answers 304
    (its links read back from several packed batches), and the reports agree."""
    from crawler.loop import checks

    count = checks.BIG_LINK_COUNT + checks.REPORT_BATCH + 1
    links = [f"/img/{n}.png" if n % 1000 else f"/gone/{n}.png" for n in range(count)]
    body = "<html><body>\n" + "".join(f'<a href="{link}">{link}</a>\n' for link in links)

    async def page(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"1"':
            return web.Response(status=304, headers={"ETag": '"1"'})
        return web.Response(text=body, content_type="text/html", headers={"ETag": '"1"'})

    site = await serve({"/": page, "/img/{name}": _png})
    out = tmp_path / "out"
    gone = {f"{site.url}/gone/{n}.png" for n in range(0, count, 1000)}
    args = ("check", site.url + "/", "-o", str(out), "--update", "--format", "json")
    for _ in range(2):
        code, report, _ = await run_cli(*args, cwd=tmp_path)
        results = {check["url"]: check for check in read_jsonl(out / "checks.jsonl")}
        summary = json.loads(report)["summary"]
        assert code == 1
        assert (summary["urls"], summary["ok"], summary["broken"]) == (count + 1, count - 6, 7)
        assert len(results) == count + 1
        assert {link["url"] for link in read_jsonl(out / "broken.jsonl")} == gone
        for n in (0, 1, checks.BIG_LINK_COUNT, count - 1):
            [referrer] = results[site.url + links[n]]["referrers"]
            assert referrer == {"page": site.url + "/", "line": n + 2}
    assert site.count("/") == 2
