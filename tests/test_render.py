"""--render: pages that only JavaScript builds, rendered by a real headless browser.

The site is tests/spa_site.py on loopback; the browser is Debian's
chromium-headless-shell (or chromium). Without one these tests skip with a
reason, except under CRAWLER_REQUIRE_CHROMIUM=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from spa_site import SpaSite
from warcio.archiveiterator import ArchiveIterator

from conftest import (
    RedisServer,
    SiteFactory,
    read_jsonl,
    reaped,
    start_cli,
    static_site,
    until,
)
from crawler import CrawlConfig, crawl
from crawler.errors import ConfigError
from crawler.extract import Page
from crawler.net import browser as browser_module
from crawler.net import renderer as renderer_module
from crawler.net.browser import Browser
from crawler.net.tab import Tab
from crawler.values import find_browser
from test_cli import assert_one_line_error, run_cli

BROWSER = find_browser(None)
REQUIRE = os.environ.get("CRAWLER_REQUIRE_CHROMIUM") == "1"
pytestmark = pytest.mark.skipif(
    BROWSER is None and not REQUIRE,
    reason="no headless browser (apt-get install chromium-headless-shell)",
)


@pytest.fixture
async def spa() -> AsyncIterator[tuple[str, SpaSite]]:
    site = SpaSite()
    runner = web.AppRunner(site.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", site
    await runner.cleanup()


@pytest.fixture
def browsers(monkeypatch: pytest.MonkeyPatch) -> list[Browser]:
    """Every browser the crawl starts, as it starts it."""
    started: list[Browser] = []
    start = Browser.start.__func__  # type: ignore[attr-defined]

    async def recorded(cls: type[Browser], path: Path) -> Browser:
        browser: Browser = await start(cls, path)
        started.append(browser)
        return browser

    monkeypatch.setattr(Browser, "start", classmethod(recorded))
    return started


def by_path(records: list[dict[str, object]], base: str) -> dict[str, dict[str, object]]:
    return {str(record["url"]).removeprefix(base): record for record in records}


async def test_always_reaches_every_page_and_link_of_a_single_page_app(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, site = spa
    stats = await crawl(CrawlConfig(seeds=(base + "/",), output_dir=tmp_path, render="always"))

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    # Links inserted after a fetch() of JSON, pushState URLs, a link shown after a
    # 500 ms timer, a script's redirect, a POST's answer: every one reached.
    expected = {"/", "/about", "/team", "/router", "/route/one", "/route/two", "/timer"}
    expected |= {"/after-timer", "/jsredirect", "/redirected", "/private", "/refused"}
    expected |= {"/posted", "/static"}
    assert set(pages) == expected
    assert stats.finished and stats.rendered == len(expected) and stats.render_failed == 0
    for path, record in pages.items():
        assert record["status"] == 200 and record["rendered"] == "always", path
        assert record["render_error"] is None and isinstance(record["render_ms"], int)
        # The page was fetched once, by the crawler: the browser was handed its body.
        assert site.requests.count(path) == 1, path
    assert pages["/"]["links"] == 6 and pages["/"]["render_requests"] == 2
    # A page's script reaches neither the metadata address (the crawler's address
    # rule refused it) nor anything the crawler does not fetch (a WebSocket).
    assert "/leaked" not in pages and site.sockets == 0
    assert site.posts == [b"x=1"]  # the page's POST, with its body, through the fetcher
    report = (tmp_path / "report.html").read_text()
    assert "<dt>Rendered</dt><dd>14 pages in a headless browser, 0 renders failed" in report


async def test_without_rendering_the_app_is_a_page_without_links(
    spa: tuple[str, SpaSite], tmp_path: Path, browsers: list[Browser]
) -> None:
    base, _ = spa
    stats = await crawl(CrawlConfig(seeds=(base + "/",), output_dir=tmp_path))

    (record,) = read_jsonl(tmp_path / "pages.jsonl")
    assert record["links"] == 0 and record["rendered"] is None
    assert stats.pages == 1 and browsers == []


async def test_auto_renders_the_app_shells_and_not_the_plain_pages(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, _ = spa
    stats = await crawl(CrawlConfig(seeds=(base + "/",), output_dir=tmp_path, render="auto"))

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert "/after-timer" in pages and "/route/two" in pages and "/refused" in pages
    assert pages["/static"]["rendered"] is None and pages["/static"]["render_ms"] is None
    assert {pages[path]["rendered"] for path in pages if path != "/static"} == {"empty-mount"}
    assert stats.rendered == len(pages) - 1


async def test_auto_on_a_plain_site_starts_no_browser(
    serve: SiteFactory, tmp_path: Path, browsers: list[Browser]
) -> None:
    links = [f"/p{number}" for number in range(6)]
    site = await serve(static_site({"/": links} | {link: links for link in links}))

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, render="auto"))

    assert stats.pages == 7 and stats.rendered == 0 and browsers == []


@pytest.mark.parametrize(("scroll", "links"), [(0, 10), (5, 60)])
async def test_scrolling_reaches_an_infinite_list(
    spa: tuple[str, SpaSite], tmp_path: Path, scroll: int, links: int
) -> None:
    base, _ = spa
    config = CrawlConfig(
        seeds=(base + "/scroll",),
        output_dir=tmp_path,
        render="always",
        render_scroll=scroll,
        max_depth=0,
    )
    await crawl(config)

    (record,) = read_jsonl(tmp_path / "pages.jsonl")
    assert record["links"] == links


async def test_a_render_that_never_settles_times_out_and_keeps_the_plain_links(
    serve: SiteFactory, tmp_path: Path
) -> None:
    never = asyncio.Event()

    async def page(_: web.Request) -> web.StreamResponse:
        body = '<div id="root"></div><a href="/plain">plain</a><script>fetch("/hang")</script>'
        return web.Response(text=body, content_type="text/html")

    async def hang(_: web.Request) -> web.StreamResponse:
        await never.wait()
        return web.Response(text="")

    site = await serve({"/": page, "/hang": hang} | static_site({"/plain": []}))
    config = CrawlConfig(
        seeds=(site.url + "/",), output_dir=tmp_path, render="auto", render_timeout=1.0
    )
    try:
        stats = await crawl(config)
    finally:
        never.set()

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), site.url)
    assert pages["/"]["status"] == 200 and pages["/"]["error"] is None
    assert pages["/"]["render_error"] == "timeout" and pages["/"]["rendered"] == "empty-mount"
    assert "/plain" in pages and stats.render_failed == 1


async def test_a_killed_browser_is_started_again_and_the_page_rendered(
    spa: tuple[str, SpaSite], tmp_path: Path, browsers: list[Browser]
) -> None:
    base, site = spa
    killed: list[int] = []

    def kill_the_browser_once(path: str) -> None:
        if path == "/about" and not killed:
            killed.append(browsers[-1].pid)
            os.killpg(browsers[-1].pid, signal.SIGKILL)

    site.on_api = kill_the_browser_once
    config = CrawlConfig(
        seeds=(base + "/about",), output_dir=tmp_path, render="always", max_depth=1
    )
    stats = await crawl(config)

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert killed and len(browsers) == 2 and stats.browser_restarts == 1
    assert pages["/about"]["render_error"] is None and pages["/about"]["links"] == 2
    assert set(pages) == {"/about", "/", "/team"}


async def test_a_browser_that_keeps_dying_is_given_up_and_the_crawl_goes_on(
    spa: tuple[str, SpaSite],
    tmp_path: Path,
    browsers: list[Browser],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, _ = spa
    opened = browser_module.Browser.call

    async def dying(self: Browser, method: str, *args: object) -> dict[str, object]:
        if method == "Page.navigate":
            os.killpg(self.pid, signal.SIGKILL)
        return await opened(self, method, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(browser_module.Browser, "call", dying)
    caplog.set_level(logging.WARNING)
    stats = await crawl(
        CrawlConfig(seeds=(base + "/static",), output_dir=tmp_path, render="always")
    )

    assert stats.finished and stats.pages == 6  # /static and the 5 pages it links
    assert stats.browser_restarts == 3 and len(browsers) == 4
    assert sum("rendering given up" in message for message in caplog.messages) == 1
    records = read_jsonl(tmp_path / "pages.jsonl")
    assert {record["render_error"] for record in records} <= {"browser-crashed", None}
    assert all(not browser.alive() for browser in browsers)


def test_always_without_a_browser_is_a_usage_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="apt-get install chromium-headless-shell"):
        CrawlConfig(seeds=("http://127.0.0.1/",), render="always")
    assert CrawlConfig(seeds=("http://127.0.0.1/",), render="auto").render == "auto"


async def test_auto_without_a_browser_says_so_once_and_crawls_plain(
    spa: tuple[str, SpaSite],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, _ = spa
    monkeypatch.setenv("PATH", "/nonexistent")
    caplog.set_level(logging.WARNING)

    stats = await crawl(CrawlConfig(seeds=(base + "/",), output_dir=tmp_path, render="auto"))

    assert stats.pages == 1 and stats.rendered == 0
    assert sum("no headless browser" in message for message in caplog.messages) == 1


async def test_bad_render_flags_are_one_line_usage_errors(tmp_path: Path) -> None:
    seed = "http://127.0.0.1:9/"
    result = await run_cli(
        "crawl", seed, "--render", "always", "--browser", "/no/such", cwd=tmp_path
    )
    assert_one_line_error(result, 2, "/no/such")
    result = await run_cli("crawl", seed, "--render-block", "pictures", cwd=tmp_path)
    assert_one_line_error(result, 2, "pictures")
    result = await run_cli("crawl", seed, "--render", "sometimes", cwd=tmp_path)
    assert result[0] == 2 and "sometimes" in result[2]


async def test_the_warc_file_keeps_the_page_its_requests_and_the_rendered_dom(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, _ = spa
    warc = tmp_path / "crawl.warc.gz"
    config = CrawlConfig(
        seeds=(base + "/about",), output_dir=tmp_path, render="always", max_depth=0, warc=warc
    )
    await crawl(config)

    records = {}
    with warc.open("rb") as file:
        for record in ArchiveIterator(file):
            uri = record.rec_headers.get_header("WARC-Target-URI").removeprefix(base)
            records[(record.rec_type, uri)] = (record.rec_headers, record.content_stream().read())
    assert ("response", "/app.js") in records and ("response", "/api/about.json") in records
    headers, dom = records[("conversion", "/about")]
    response_id = records[("response", "/about")][0].get_header("WARC-Record-ID")
    assert headers.get_header("WARC-Refers-To") == response_id
    assert b'<a href="/team">' in dom and b'<div id="root"></div>' not in dom


async def test_a_crawler_killed_by_sigkill_leaves_no_browser(
    serve: SiteFactory, tmp_path: Path
) -> None:
    never = asyncio.Event()
    started = asyncio.Event()

    async def page(_: web.Request) -> web.StreamResponse:
        body = '<div id="root"></div><script src="/hang.js"></script>'
        return web.Response(text=body, content_type="text/html")

    async def hang(_: web.Request) -> web.StreamResponse:
        started.set()
        await never.wait()
        return web.Response(text="")

    site = await serve({"/": page, "/hang.js": hang})
    temp = tmp_path / "temp"
    temp.mkdir()
    process = await start_cli(
        "crawl",
        site.url + "/",
        "--render",
        "always",
        "--render-timeout",
        "60",
        "-o",
        "out",
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    try:
        async with reaped(process):
            async with asyncio.timeout(30):
                await started.wait()
            assert _browsers_under(temp)
            process.kill()
            await process.wait()
            await until(lambda: not _browsers_under(temp), 10)
    finally:
        never.set()


def _browsers_under(folder: Path) -> list[str]:
    """The processes whose command line names ``folder`` (a browser's profile in it)."""
    found = subprocess.run(
        ["pgrep", "-f", str(folder)], capture_output=True, text=True, check=False
    )
    return found.stdout.split()


async def test_a_crashed_tab_is_replaced_and_its_page_rendered_again(
    spa: tuple[str, SpaSite], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = spa
    crashed: list[str] = []
    evaluate = Tab._evaluate

    async def crash_once(self: Tab, expression: str, *, promise: bool = False) -> object:
        if not crashed:
            crashed.append(self.target)
            # The renderer process of this tab dies (CDP's own way to crash it).
            self._browser.send("Page.crash", None, self._session)
        return await evaluate(self, expression, promise=promise)

    monkeypatch.setattr(Tab, "_evaluate", crash_once)
    config = CrawlConfig(seeds=(base + "/about",), output_dir=tmp_path, render="always")
    stats = await crawl(config)

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert crashed and pages["/about"]["render_error"] is None
    assert pages["/about"]["links"] == 2 and stats.render_failed == 0
    assert stats.browser_restarts == 0


async def test_the_browser_is_replaced_every_few_pages_without_losing_one(
    spa: tuple[str, SpaSite],
    tmp_path: Path,
    browsers: list[Browser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, _ = spa
    monkeypatch.setattr(renderer_module, "RECYCLE_PAGES", 4)

    stats = await crawl(CrawlConfig(seeds=(base + "/",), output_dir=tmp_path, render="always"))

    assert stats.pages == 14 and stats.rendered == 14 and stats.render_failed == 0
    assert len(browsers) >= 2 and stats.browser_restarts == 0
    assert all(not browser.alive() for browser in browsers)


async def test_each_process_of_the_front_renders_with_a_browser_of_its_own(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, _ = spa
    config = CrawlConfig(seeds=(base + "/",), output_dir=tmp_path, render="always", processes=2)
    stats = await crawl(config)

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert {"/after-timer", "/route/two", "/redirected", "/posted", "/team"} <= set(pages)
    assert stats.pages == 14 and stats.rendered == 14


async def test_a_lone_surrogate_and_a_timer_of_code_in_a_string_are_rendered(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, _ = spa
    config = CrawlConfig(
        seeds=(base + "/surrogate",), output_dir=tmp_path, render="always", max_depth=0
    )
    stats = await crawl(config)

    (record,) = read_jsonl(tmp_path / "pages.jsonl")
    assert record["render_error"] is None and str(record["title"]).startswith("half ")
    assert stats.browser_restarts == 0 and record["links"] == 1  # the string timer's


async def test_the_extractor_and_the_mirror_see_the_rendered_dom(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, _ = spa

    def headings(page: Page) -> list[dict[str, object]]:
        heading = page.soup.find("h1")
        return [{"h1": heading.get_text() if heading else None, "follow": len(page.follow)}]

    config = CrawlConfig(
        seeds=(base + "/about",),
        output_dir=tmp_path,
        render="always",
        max_depth=0,
        extract=headings,
        save_html=True,
    )
    await crawl(config)

    (item,) = read_jsonl(tmp_path / "items.jsonl")
    assert item["h1"] == "/about" and item["follow"] == 2
    (mirrored,) = [path for path in (tmp_path / "html").rglob("*") if path.is_file()]
    assert b'<a href="/team">/team</a>' in mirrored.read_bytes()


async def test_a_member_of_a_shared_crawl_renders_its_own_leases(
    spa: tuple[str, SpaSite], tmp_path: Path, redis_server: RedisServer
) -> None:
    base, _ = spa
    config = CrawlConfig(
        seeds=(base + "/",), output_dir=tmp_path, render="always", frontier=redis_server.url
    )
    stats = await crawl(config)

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert {"/after-timer", "/route/two", "/redirected", "/posted", "/team"} <= set(pages)
    assert stats.rendered == stats.pages == 14


@pytest.mark.parametrize("path", ["/bulky", "/bulky-xhr"])
async def test_a_page_built_from_a_big_answer_is_taken_once_the_page_has_read_it(
    spa: tuple[str, SpaSite], tmp_path: Path, path: str
) -> None:
    # The crawler hands the answer over long before the page has it all and parsed.
    base, _ = spa
    config = CrawlConfig(seeds=(base + path,), output_dir=tmp_path, render="always", max_depth=0)
    await crawl(config)

    (page,) = read_jsonl(tmp_path / "pages.jsonl")
    assert page["render_error"] is None and page["links"] == 2


@pytest.mark.parametrize(
    "big",
    [
        "pushes=0&text=y&times=150000",
        "pushes=0&text=%C3%A9&times=60000",
        "pushes=5000&text=y&times=1",
    ],
)
async def test_a_dom_larger_than_max_bytes_is_never_taken_and_the_page_is_read_as_fetched(
    spa: tuple[str, SpaSite], tmp_path: Path, big: str
) -> None:
    # 60,000 "é" are 60,000 characters in the page, and 120,000 bytes of UTF-8;
    # 5,000 URLs gone to by pushState are 165,000 characters.
    base, _ = spa
    big, small = "/sprawl?" + big, "/sprawl?pushes=0&text=y&times=100"
    config = CrawlConfig(
        seeds=(base + big, base + small),
        output_dir=tmp_path,
        render="always",
        max_depth=0,
        max_bytes=100_000,
    )
    stats = await crawl(config)

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert pages[big]["render_error"] == "too-large" and pages[big]["error"] is None
    assert pages[big]["links"] == 1  # the page as fetched
    assert pages[small]["render_error"] is None and pages[small]["links"] == 1
    assert stats.render_failed == 1 and stats.rendered == 1


async def test_dialogs_pop_ups_and_a_script_that_never_yields_stop_nothing(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, site = spa
    seeds = (base + "/hostile", base + "/spin", base + "/about")
    config = CrawlConfig(
        seeds=seeds, output_dir=tmp_path, render="always", render_timeout=2.0, render_tabs=1
    )
    stats = await crawl(config)

    pages = by_path(read_jsonl(tmp_path / "pages.jsonl"), base)
    assert pages["/hostile"]["render_error"] is None and "/confirmed" in pages
    assert "/popup" not in site.requests and "/popup" not in pages
    assert pages["/spin"]["render_error"] == "timeout" and pages["/spin"]["status"] == 200
    # One tab for all: after the spinning page's, the next pages render as ever.
    assert pages["/about"]["render_error"] is None and pages["/about"]["links"] == 2
    assert stats.browser_restarts == 0


async def test_a_crawl_that_rendered_goes_on_rendering_when_resumed_without_the_flag(
    spa: tuple[str, SpaSite], tmp_path: Path
) -> None:
    base, _ = spa
    first = CrawlConfig(seeds=(base + "/",), output_dir=tmp_path, render="always", max_pages=3)
    stopped = await crawl(first)
    assert not stopped.finished

    # As the summary prints it: crawler crawl --output DIR --resume (no --render).
    stats = await crawl(CrawlConfig(output_dir=tmp_path, resume=True))

    records = read_jsonl(tmp_path / "pages.jsonl")
    assert stats.finished and len(records) == stats.pages == 14
    assert {record["rendered"] for record in records} == {"always"}
