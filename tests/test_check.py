"""crawler check: every kind of link, against real servers on four loopback hosts.

The site (127.0.0.1) links to pages that work, are missing or fail, a
redirect chain, images, a srcset, stylesheets (one with a missing url()), a
script, fragments, mailto: and tel:; offsite hosts are 127.0.0.2 (answers
HEAD with 405, has a robots.txt that refuses /private, serves a page with
ids), 127.0.0.3 (answers after the timeout) and 127.0.0.4 (a closed port).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from junitparser import Failure, JUnitXml, Skipped
from markdown_it import MarkdownIt

from conftest import SiteFactory, static_site, until
from crawler import CrawlConfig, Crawler, LinkCheck, PageRecord, check_formats, crawl
from crawler.check_formats import Results, render
from crawler.net import fetcher
from crawler.records import Referrer
from test_cli import run_cli

INDEX = """<html><head><title>Home</title>
<link rel="stylesheet" href="/css/site.css">
<link rel="stylesheet" href="/css/missing.css">
<script src="/js/app.js"></script>
</head><body>
<a href="/ok">ok</a>
<a href="/missing">missing</a>
<a href="/error">error</a>
<a href="/chain">redirect chain</a>
<a href="{dead}/dead">dead host</a>
<a href="{slow}/slow">slow host</a>
<a href="{other}/nohead">refuses HEAD</a>
<a href="{other}/gone">offsite 404</a>
<a href="{other}/private">refused by robots.txt</a>
<img src="/img/ok.png">
<img src="/img/missing.png">
<img src="/img/ok.png" srcset="/img/ok.png 1x, /img/missing-2x.png 2x">
<a href="/about#team">present fragment</a>
<a href="/about#nowhere">missing fragment</a>
<a href="{other}/doc#intro">offsite fragment</a>
<a href="mailto:webmaster@example.org">mail</a>
<a href="tel:+15555550100">phone</a>
<a href="/p1">p1</a> <a href="/p2">p2</a>
</body></html>
"""
ABOUT = """<html><body>
<h2 id="team">Team</h2>
<a href="/missing">missing again</a>
</body></html>
"""
CSS = "body { color: black }\n.hero {\n  background: url('/img/bg-missing.png');\n}\n"


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@dataclass
class Hosts:
    site: str
    other: str
    slow: str
    dead: str
    index: str
    requests: dict[str, list[tuple[str, str]]]


def _page(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _fixed(make: Callable[[], web.Response]) -> web.Handler:
    """A handler that answers every request with a new ``make()``."""

    async def handler(_: web.Request) -> web.Response:
        return make()

    return handler


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


async def _start(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


def _closed_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _logged(name: str, log: dict[str, list[tuple[str, str]]]) -> web.Application:
    @web.middleware
    async def logging(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        log.setdefault(name, []).append((request.method, request.path))
        return await handler(request)

    return web.Application(middlewares=[logging])


@pytest.fixture
async def hosts() -> AsyncIterator[Hosts]:
    log: dict[str, list[tuple[str, str]]] = {}
    other = _logged("other", log)

    @web.middleware
    async def refuse_head(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        if request.method == "HEAD" and request.path == "/nohead":
            return web.Response(status=405)
        return await handler(request)

    other.middlewares.append(refuse_head)
    other.router.add_get(
        "/robots.txt", _fixed(lambda: _text("User-agent: *\nDisallow: /private\n"))
    )
    other.router.add_get("/nohead", _fixed(lambda: _page("<p>fine</p>")))
    other.router.add_get("/doc", _fixed(lambda: _page('<p id="intro">Intro</p>')))
    slow = web.Application()

    async def late(_: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return _page("late")

    slow.router.add_get("/{tail:.*}", late)
    runners = []
    other_runner, other_url = await _start(other, "127.0.0.2")
    slow_runner, slow_url = await _start(slow, "127.0.0.3")
    runners += [other_runner, slow_runner]
    dead_url = f"http://127.0.0.4:{_closed_port('127.0.0.4')}"
    index = INDEX.format(dead=dead_url, slow=slow_url, other=other_url)
    site = _logged("site", log)
    routes = {
        "/": _fixed(lambda: _page(index)),
        "/ok": _fixed(lambda: _page("<p>ok</p>")),
        "/error": _fixed(lambda: web.Response(status=500)),
        "/chain": _fixed(lambda: _redirect(301, "/chain2")),
        "/chain2": _fixed(lambda: _redirect(302, "/final")),
        "/final": _fixed(lambda: _page("<p>final</p>")),
        "/about": _fixed(lambda: _page(ABOUT)),
        "/p1": _fixed(lambda: _page('<a href="/missing">m</a>')),
        "/p2": _fixed(lambda: _page('<p>\n<a href="/missing">m</a></p>')),
        "/css/site.css": _fixed(lambda: web.Response(text=CSS, content_type="text/css")),
        "/js/app.js": _fixed(lambda: web.Response(text="1;", content_type="text/javascript")),
        "/img/ok.png": _fixed(lambda: web.Response(body=b"\x89PNG", content_type="image/png")),
    }
    for path, handler in routes.items():
        site.router.add_get(path, handler)
    site_runner, site_url = await _start(site, "127.0.0.1")
    runners.append(site_runner)
    try:
        yield Hosts(site_url, other_url, slow_url, dead_url, index, log)
    finally:
        for runner in runners:
            await runner.cleanup()


def _text(text: str) -> web.Response:
    return web.Response(text=text)


def config(hosts: Hosts, output: Path | None = None, **settings: object) -> CrawlConfig:
    return CrawlConfig(
        seeds=[hosts.site + "/"],
        check=True,
        output_dir=output,
        timeout=1.0,
        retries=0,
        **settings,  # type: ignore[arg-type]
    )


async def check(settings: CrawlConfig) -> dict[str, LinkCheck]:
    results: dict[str, LinkCheck] = {}
    async with asyncio.timeout(60), Crawler(settings) as crawl:
        async for result in crawl:
            if isinstance(result, LinkCheck):
                assert result.url not in results, f"{result.url} checked twice"
                results[result.url] = result
    return results


async def test_every_kind_of_link_gets_its_result(hosts: Hosts) -> None:
    results = await check(config(hosts))
    site, other, index = hosts.site, hosts.other, hosts.index
    home = site + "/"

    def outcome(url: str) -> tuple[str, int | None, str | None]:
        result = results[url]
        return result.result, result.status, result.error

    assert outcome(site + "/ok") == ("ok", 200, None)
    assert outcome(site + "/missing") == ("broken", 404, None)
    assert outcome(site + "/error") == ("broken", 500, None)
    assert outcome(site + "/chain")[0] == "redirected"
    assert results[site + "/chain"].final_url == site + "/final"
    assert outcome(hosts.dead + "/dead") == ("broken", None, "connection-refused")
    assert outcome(hosts.slow + "/slow") == ("timeout", None, "timeout")
    assert outcome(other + "/nohead") == ("ok", 200, None)
    assert outcome(other + "/gone") == ("broken", 404, None)
    assert outcome(other + "/private") == ("excluded", None, "robots")
    assert outcome(site + "/img/ok.png") == ("ok", 200, None)
    assert outcome(site + "/img/missing.png") == ("broken", 404, None)
    assert results[site + "/img/missing.png"].kind == "image"
    assert outcome(site + "/img/missing-2x.png") == ("broken", 404, None)
    assert outcome(site + "/css/site.css") == ("ok", 200, None)
    assert outcome(site + "/css/missing.css") == ("broken", 404, None)
    assert results[site + "/css/missing.css"].kind == "stylesheet"
    assert outcome(site + "/img/bg-missing.png") == ("broken", 404, None)
    assert results[site + "/img/bg-missing.png"].referrers == (
        Referrer(site + "/css/site.css", line_of(CSS, "url(")),
    )
    assert outcome(site + "/js/app.js") == ("ok", 200, None)
    assert outcome(site + "/about#team") == ("ok", 200, None)
    assert outcome(site + "/about#nowhere") == ("broken", 200, "fragment-missing")
    assert other + "/doc#intro" not in results  # offsite pages are read with --check-fragments
    assert outcome("mailto:webmaster@example.org") == ("unsupported", None, None)
    assert outcome("tel:+15555550100") == ("unsupported", None, None)
    # The same broken link on many pages: one result, every page and line.
    assert set(results[site + "/missing"].referrers) == {
        Referrer(home, line_of(index, 'href="/missing"')),
        Referrer(site + "/about", line_of(ABOUT, 'href="/missing"')),
        Referrer(site + "/p1", 1),
        Referrer(site + "/p2", 2),
    }
    assert results[site + "/img/missing.png"].referrers == (
        Referrer(home, line_of(index, "/img/missing.png")),
    )
    # Each URL once: the HEAD-refusing host saw one HEAD and one GET of its page;
    # the dead and the slow host cost their robots.txt only.
    other_requests = hosts.requests["other"]
    assert other_requests.count(("HEAD", "/nohead")) == 1
    assert other_requests.count(("GET", "/nohead")) == 1
    assert ("HEAD", "/private") not in other_requests and ("GET", "/private") not in other_requests
    assert hosts.requests["site"].count(("GET", "/missing")) == 1
    failing = {url for url, result in results.items() if result.is_failing()}
    assert failing == {
        site + "/missing",
        site + "/error",
        hosts.dead + "/dead",
        hosts.slow + "/slow",
        other + "/gone",
        site + "/img/missing.png",
        site + "/img/missing-2x.png",
        site + "/css/missing.css",
        site + "/img/bg-missing.png",
        site + "/about#nowhere",
    }


async def test_offsite_fragments_accept_exclude_and_ignore_robots(hosts: Hosts) -> None:
    other = hosts.other
    results = await check(
        config(
            hosts,
            check_fragments=True,
            accept="200..299,404",
            exclude=["*/error", f"{hosts.slow}/*"],
            ignore_robots=True,
        )
    )
    assert results[other + "/doc#intro"].result == "ok"
    assert results[other + "/gone"].result == "ok"  # 404 accepted
    assert (results[hosts.site + "/error"].result, results[hosts.site + "/error"].error) == (
        "excluded",
        "excluded",
    )
    assert results[hosts.slow + "/slow"].result == "excluded"
    assert "slow" not in hosts.requests  # never asked
    assert results[other + "/private"].result == "ok"  # robots ignored; 404 accepted
    assert ("GET", "/private") in hosts.requests["other"]
    assert ("GET", "/error") not in hosts.requests["site"]  # excluded: not even crawled
    included = await check(config(hosts, exclude=["*/error"], include=["*/error"]))
    assert included[hosts.site + "/error"].result == "broken"


async def test_the_command_line_report_formats_and_exit_code(hosts: Hosts, tmp_path: Path) -> None:
    site = hosts.site
    args = ("check", site + "/", "-o", str(tmp_path / "out"), "--timeout", "1", "--retries", "0")
    code, out, err = await run_cli(*args, "-q", cwd=tmp_path)
    assert code == 1, err
    assert f"{site}/\n" in out  # grouped by page
    line = line_of(hosts.index, 'href="/missing"')
    assert re.search(rf"\n  404 +{site}/missing  \(line {line}, link\)\n", out)
    assert "fragment-missing" in out
    assert out.rstrip().splitlines()[-1].startswith("25 URLs checked on 8 pages:")
    folder = tmp_path / "out"
    lines = (folder / "checks.jsonl").read_text().splitlines()
    assert len(lines) == 25
    broken = [
        json.loads(line)["url"] for line in (folder / "broken.jsonl").read_text().splitlines()
    ]
    assert f"{site}/about#nowhere" in broken and len(broken) == 10
    report = (folder / "report.html").read_text()
    for section in (
        "Broken links to other sites (3)",
        "Missing images (2)",
        "Missing fragments (1)",
    ):
        assert section in report
    assert "Missing scripts, stylesheets and other requisites (2)" in report

    junit = tmp_path / "links.xml"
    code, out, _ = await run_cli(
        *args, "-q", "--format", "junit", "--report", str(junit), cwd=tmp_path
    )
    assert code == 1 and out == ""
    suites = JUnitXml.fromfile(str(junit))
    cases = {case.name: case for suite in suites for case in suite}
    assert len(cases) == 25
    assert any(isinstance(r, Failure) for r in cases[f"{site}/missing"].result)
    assert any(isinstance(r, Skipped) for r in cases["tel:+15555550100"].result)
    assert not cases[f"{site}/ok"].result
    failures = [case for case in cases.values() if any(isinstance(r, Failure) for r in case.result)]
    assert len(failures) == 10


async def test_markdown_json_and_csv(hosts: Hosts) -> None:
    checks = list((await check(config(hosts))).values())
    html = MarkdownIt().enable("table").render("".join(render(Results.of(checks), "markdown", 8)))
    assert "<h2>Link check: 10 broken links</h2>" in html
    home, missing = hosts.site + "/", hosts.site + "/missing"
    assert f'<h3><a href="{home}">{home}</a></h3>' in html
    assert f'<td>404</td>\n<td><a href="{missing}">{missing}</a></td>' in html
    document = json.loads("".join(render(Results.of(checks), "json", 8)))
    assert document["summary"]["broken"] + document["summary"]["timeout"] == 10
    assert len(document["results"]) == len(checks)
    rows = list(csv.DictReader(io.StringIO("".join(render(Results.of(checks), "csv", 8)))))
    missing = [row for row in rows if row["url"] == f"{hosts.site}/missing"]
    assert len(missing) == 4 and {row["result"] for row in missing} == {"broken"}


async def test_nothing_broken_exits_0(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_get("/", _fixed(lambda: _page('<a href="/a">a</a><img src="/a">')))
    app.router.add_get("/a", _fixed(lambda: _page("<p>a</p>")))
    runner, url = await _start(app, "127.0.0.1")
    try:
        code, out, err = await run_cli("check", url + "/", "-o", str(tmp_path / "o"), cwd=tmp_path)
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert out.startswith("2 URLs checked on 2 pages: 2 ok")


def test_markdown_keeps_urls_whole() -> None:
    url = "http://a.test/x_*y*_z?q=1|2"
    broken = LinkCheck(url, "broken", "link", 404, None, None, (Referrer("mailto:x_y@a", 3),))
    html = MarkdownIt().enable("table").render("".join(render(Results.of([broken]), "markdown", 1)))
    assert 'href="http://a.test/x_*y*_z?q=1%7C2"' in html and "<em>" not in html
    assert "<code>mailto:x_y@a</code>" in html


async def test_a_page_cut_at_max_bytes_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    """Its links up to the cut are checked, it says it was cut, and a fragment not found
    before the cut is "not checked" (page-cut), never missing; an offsite page read for
    its ids likewise (was: the page "ok" with none of its links checked, the fragment
    reported missing)."""
    padding = "<p>" + "x" * 1000 + "</p>\n"
    long_page = '<a href="/gone">gone</a>' + padding * 30 + '<h2 id="late">late</h2>'
    other = web.Application()
    other.router.add_get("/long", _fixed(lambda: _page(padding * 30 + '<p id="far">far</p>')))
    other_runner, other_url = await _start(other, "127.0.0.2")
    app = web.Application()
    home = (
        f'<a href="/long#late">a</a><a href="/long#top">b</a><a href="{other_url}/long#far">c</a>'
    )
    app.router.add_get("/", _fixed(lambda: _page(home)))
    app.router.add_get("/long", _fixed(lambda: _page(long_page)))
    runner, url = await _start(app, "127.0.0.1")
    try:
        code, out, err = await run_cli(
            "check", url + "/", "-o", "o", "--max-bytes", "10000", "--check-fragments",
            "--format", "json", cwd=tmp_path,
        )  # fmt: skip
    finally:
        await runner.cleanup()
        await other_runner.cleanup()
    results = {result["url"]: result for result in json.loads(out)["results"]}
    assert results[url + "/gone"]["result"] == "broken"  # a link before the cut: checked
    assert results[url + "/long"]["error"] == "too-large"
    for cut in (url + "/long#late", other_url + "/long#far"):
        assert (results[cut]["result"], results[cut]["error"]) == ("excluded", "page-cut")
    assert code == 1, err  # /gone only
    cut = Results.of([LinkCheck(url + "/long", "ok", "link", 200, "too-large", None, ())])
    text = "".join(render(cut, "text", 1))
    assert "Cut at --max-bytes" in text and text.rstrip().endswith("1 page cut at --max-bytes")


class DeadNames(AbstractResolver):
    """Names under .invalid do not resolve, after a wait the test ends (``answer``);
    every lookup is counted."""

    lookups: ClassVar[list[str]] = []
    answer: ClassVar[asyncio.Event] = asyncio.Event()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        DeadNames.lookups.append(host)
        async with asyncio.timeout(30):  # bounded: a test that deadlocks fails
            await DeadNames.answer.wait()
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


async def test_dead_hosts_cost_one_lookup_and_hold_up_no_page(
    serve: SiteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page links to the same two dead names, whose lookups answer only once the
    site's own pages are all fetched: a lookup holds no request slot, each name is
    looked up once, and a lookup slower than --timeout is reported dns, not timeout."""
    monkeypatch.setattr(fetcher, "resolver", DeadNames)
    DeadNames.lookups, DeadNames.answer = [], asyncio.Event()
    pages = 40
    routes = {
        f"/{number}": [
            *(f"/{child}" for child in (2 * number + 1, 2 * number + 2) if child < pages),
            f"http://dead-one.invalid/{number}",
            f"http://dead-two.invalid:8080/{number}",
        ]
        for number in range(pages)
    }
    site = await serve(static_site(routes))
    served = asyncio.create_task(until(lambda: len(set(site.requests)) >= pages, 30))
    served.add_done_callback(lambda _: DeadNames.answer.set())
    results = await check(
        CrawlConfig(seeds=[site.url + "/0"], check=True, concurrency=2, per_host=2, timeout=1)
    )
    assert served.done() and not served.cancelled() and served.exception() is None
    assert sorted(DeadNames.lookups) == ["dead-one.invalid", "dead-two.invalid"]
    dead = [result for url, result in results.items() if ".invalid" in url]
    assert len(dead) == 2 * pages
    assert {(result.result, result.error) for result in dead} == {("broken", "dns")}


async def test_what_peers_check_is_checked(serve: SiteFactory) -> None:
    """Cases from LinkChecker's and lychee's test data: fragments on pages the crawl
    does not read (past --max-depth), GET forms and formaction, @import without url(),
    and file: links (broken for every visitor); and HTML's top of the page: "#top" in
    any case, percent-encoded or not, needs no element."""

    def page(body: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")

        return handler

    site = await serve(
        {
            "/": page('<a href="/a">a</a>'),
            "/a": page(
                '<a href="/deep#here">here</a><a href="/deep#gone">gone</a>'
                '<a href="/deep#TOP">top</a><a href="/deep#%54op">top</a>'
                '<form action="/search" method="get"><input name="q">'
                '<button formaction="/alt">alt</button></form>'
                '<form action="/post-only" method="post"><button>send</button></form>'
                '<style>@import "/missing.css";</style>'
                '<a href="file:///C:/site/index.html">on my disk</a>'
            ),
            "/deep": page('<p id="here">deep</p>'),
            "/alt": page("alt"),
        }
    )
    results = await check(CrawlConfig(seeds=[site.url + "/"], check=True, max_depth=1))

    def outcome(url: str) -> tuple[str, str, str | None]:
        return results[url].result, results[url].kind, results[url].error

    assert outcome(site.url + "/deep#here") == ("ok", "link", None)
    assert outcome(site.url + "/deep#gone") == ("broken", "link", "fragment-missing")
    # The top of the page: the page's own result says it all.
    assert {site.url + "/deep#TOP", site.url + "/deep#%54op"}.isdisjoint(results)
    assert outcome(site.url + "/search")[:2] == ("broken", "form")
    assert outcome(site.url + "/alt") == ("ok", "form", None)
    assert site.url + "/post-only" not in results and site.count("/post-only") == 0
    assert outcome(site.url + "/missing.css")[:2] == ("broken", "stylesheet")
    assert outcome("file:///C:/site/index.html") == ("broken", "link", "file-url")


async def test_a_sitemap_or_a_stylesheet_given_as_a_start_url_is_read(
    serve: SiteFactory,
) -> None:
    async def sitemap(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        locs = "".join(f"<url><loc>{base}{path}</loc></url>" for path in ("/a", "/b"))
        xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'
        return web.Response(text=xml, content_type="application/xml")

    async def text_sitemap(request: web.Request) -> web.Response:
        return web.Response(text=f"http://{request.host}/b\n", content_type="text/plain")

    async def stylesheet(_: web.Request) -> web.Response:
        return web.Response(text="body { background: url(/gone.png) }", content_type="text/css")

    site = await serve(
        {
            **static_site({"/a": ["/missing"], "/b": []}),
            "/sitemap.xml": sitemap,
            "/sitemap.txt": text_sitemap,
            "/site.css": stylesheet,
        }
    )
    results = await check(
        CrawlConfig(seeds=[site.url + "/sitemap.xml", site.url + "/site.css"], check=True)
    )
    assert results[site.url + "/missing"].result == "broken"  # found on /a, from the sitemap
    assert results[site.url + "/b"].result == "ok"
    assert results[site.url + "/gone.png"].result == "broken"  # read from the stylesheet
    crawled = []
    async with (
        asyncio.timeout(60),
        # Only the seed's sitemap: the host's /sitemap.xml is not read.
        Crawler(CrawlConfig(seeds=[site.url + "/sitemap.txt"], no_sitemaps=True)) as crawl,
    ):
        crawled = [record.url async for record in crawl if isinstance(record, PageRecord)]
    assert crawled == [site.url + "/b"]


def test_the_text_report_groups_many_failing_links_by_page_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows are grouped by page as they were met, each page's in order, however the
    results interleave pages (and past the spool's in-memory size: on disk)."""
    monkeypatch.setattr(check_formats, "_IN_MEMORY", 1024)
    checks = [
        LinkCheck(
            f"https://h/{n}",
            "broken" if n % 3 else "timeout",
            "link",
            404 if n % 3 else None,
            None if n % 3 else "timeout",
            None,
            (Referrer(f"https://h/page{n % 2}", n + 1), Referrer("https://h/all", 7))
            if n % 5
            else (),
        )
        for n in range(400)
    ]
    checks.insert(1, LinkCheck("https://h/fine", "ok", "link", 200, None, None, ()))
    text = "".join(render(Results.of(checks), "text", 3)).splitlines()
    pages = [line for line in text if line and not line.startswith(" ")][:-1]
    assert pages == ["(seed URLs)", "https://h/page1", "https://h/all", "https://h/page0"]
    rows: dict[str, list[str]] = {}
    page = ""
    for line in text[:-1]:
        if line and not line.startswith(" "):
            page = line
        elif line:
            rows.setdefault(page, []).append(line)
    expected = {
        name: [
            f"  {'404' if n % 3 else 'timeout':<7}  https://h/{n}  (line {line}, link)"
            for n in range(400)
            if (n % 5 == 0) == (name == "(seed URLs)")
            and (name in ("(seed URLs)", "https://h/all") or name == f"https://h/page{n % 2}")
            for line in [0 if name == "(seed URLs)" else 7 if name.endswith("all") else n + 1]
        ]
        for name in pages
    }
    assert rows == expected


async def test_a_pages_links_are_asked_in_its_charset_as_a_browser_asks_them(
    serve: SiteFactory,
) -> None:
    """A windows-1252 page's link and image with "é" in their query are asked with
    the byte %E9, as browsers ask them (the path stays UTF-8), crawled or checked."""
    asked: list[str] = []
    page = (
        '<meta charset="iso-8859-1"><a href="/caf\u00e9?q=\u00e9t\u00e9">a</a><img src="/i?\u20ac">'
    )

    async def home(_: web.Request) -> web.StreamResponse:
        return web.Response(body=page.encode("cp1252"), content_type="text/html")

    async def other(request: web.Request) -> web.StreamResponse:
        asked.append(request.raw_path)
        return web.Response(text="<p>ok</p>", content_type="text/html")

    site = await serve({"/": home, "/caf\u00e9": other, "/i": other})
    results = await check(CrawlConfig(seeds=[site.url + "/"], check=True, max_depth=0))
    assert set(results) == {site.url + "/", site.url + "/caf%C3%A9?q=%E9t%E9", site.url + "/i?%80"}
    assert sorted(asked) == ["/caf%C3%A9?q=%E9t%E9", "/i?%80"]
    asked.clear()
    await crawl(CrawlConfig(seeds=[site.url + "/"], no_sitemaps=True))
    assert asked == ["/caf%C3%A9?q=%E9t%E9"]
