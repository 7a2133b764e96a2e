"""What users look at: report.html rendered in a real browser, and the WARC file
read back with warcio and its own command-line tools."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from conftest import SiteFactory, read_jsonl, static_site
from crawler import CrawlConfig, crawl
from test_cli import run_cli

SITE = {"/": ["/a", "/b", "/gone"], "/a": ["/b", "/gone"], "/b": ["/c"], "/c": []}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_CHROMIUM = os.environ.get("CRAWLER_REQUIRE_CHROMIUM") == "1"

# warcio's own command, beside this Python (a venv's, not whatever is first on PATH).
WARCIO = str(Path(sys.executable).parent / "warcio")


async def test_report_html_is_self_contained(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = await serve(static_site(SITE))
    monkeypatch.chdir(tmp_path)  # a relative output folder, as most people give it
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir="out"))

    page = (tmp_path / "out" / "report.html").read_text()

    for chart in ("chart-status", "chart-rate", "chart-time", "chart-depth", "chart-hosts"):
        assert f'id="{chart}"' in page
    assert page.count("<svg") == 5
    for fetched in ("<script", "<link", "src=", "url(", "@import"):  # nothing loads anything
        assert fetched not in page
    link = f'<a href="{site.url}/gone">{site.url}/gone</a>'
    assert link in page and f'<li><a href="{site.url}/a">' in page
    assert f'<dd><a href="{site.url}/">' in page  # the seed, in "What was crawled"
    for section in ("Redirects", "Pages without a title", "Status by site section", "Largest"):
        assert f"<h2>{section}" in page
    assert "Duration" in page and "duration_s" not in page
    assert 'class="axis"' in page and "time since the first page (s)" in page


async def test_report_says_what_changed_since_the_last_pass(
    serve: SiteFactory, tmp_path: Path
) -> None:
    pages = dict(SITE)
    site = await serve(static_site(pages | {"/new-gone": []}))
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))
    # The same site a second time, where /gone is still gone: no change in broken links.
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, update=True))
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Since the last pass</h2>" in page
    assert "New broken links (0)" in page and "Fixed (0)" in page
    assert "Unchanged since the last pass" in page


def chromium(path: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a file, with the flags a closed network needs."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *flags,
        path.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.skipif(CHROMIUM is None and not REQUIRE_CHROMIUM, reason="chromium is not installed")
async def test_report_renders_in_headless_chromium(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "out"))
    report = tmp_path / "out" / "report.html"

    rendered = await asyncio.to_thread(
        chromium, report, tmp_path / "profile", "--virtual-time-budget=2000", "--dump-dom"
    )
    dom = rendered.stdout

    assert dom.count("<svg") == 5
    assert dom.count("<rect") >= 5
    assert "Status codes and errors" in dom and "Pages per host" in dom
    picture = tmp_path / "report.png"
    await asyncio.to_thread(
        chromium,
        report,
        tmp_path / "profile2",
        "--window-size=1000,2200",
        f"--screenshot={picture}",
    )
    assert picture.stat().st_size > 10_000


async def test_warc_records_match_the_pages(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))
    warc = tmp_path / "crawl.warc.gz"

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "out", warc=warc))

    responses: dict[str, int] = {}
    requests = 0
    with warc.open("rb") as stream:
        for record in ArchiveIterator(stream):
            uri = record.rec_headers.get_header("WARC-Target-URI")
            if record.rec_type == "request":
                requests += 1
            elif record.rec_type == "response":
                responses[uri] = int(record.http_headers.get_statuscode())
                if uri == site.url + "/a":
                    assert b"<title>/a</title>" in record.content_stream().read()
    pages = read_jsonl(tmp_path / "out" / "pages.jsonl")
    assert {page["final_url"]: page["status"] for page in pages} == {
        url: status for url, status in responses.items() if not url.endswith((".txt", ".xml"))
    }
    assert requests == len(responses) == len(pages) + 2  # robots.txt and sitemap.xml too
    for tool in ([WARCIO, "check", str(warc)], [WARCIO, "index", str(warc)]):
        result = await asyncio.to_thread(
            subprocess.run, tool, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


async def test_a_torn_warc_tail_is_cut_when_the_file_is_opened_again(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site(SITE))
    warc = tmp_path / "crawl.warc.gz"
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "one", warc=warc))
    whole = warc.read_bytes()
    warc.write_bytes(whole[:-40])  # killed while it wrote its last record

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "two", warc=warc))

    with warc.open("rb") as stream:
        kinds = [record.rec_type for record in ArchiveIterator(stream)]
    pages = len(read_jsonl(tmp_path / "one" / "pages.jsonl")) + 2  # robots.txt, sitemap.xml
    # warcio writes a pair response first: the torn member was the last request.
    assert kinds.count("response") == kinds.count("request") + 1 == 2 * pages
    result = await asyncio.to_thread(
        subprocess.run, [WARCIO, "check", str(warc)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_report_reads_a_csv_crawl(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))

    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, format="csv"))

    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 5
    assert f"{site.url}/gone" in page
    assert ">404<" in page


async def test_many_broken_links_and_referrers_are_capped_where_people_read(
    tmp_path: Path,
) -> None:
    """report.html lists the first SHOWN_BROKEN broken links and SHOWN_REFERRERS pages
    each, then says how many more (a 7,000 px table row, a 22,879-character line
    before); broken.jsonl and `report --broken` keep every link, one line each."""
    from crawler.output.report import SHOWN_BROKEN, SHOWN_REFERRERS
    from crawler.output.report_html import write_report
    from crawler.terminal import broken_line

    out = tmp_path / "out"
    out.mkdir()
    (out / "stats.json").write_text(json.dumps({"pages": 1, "broken": SHOWN_BROKEN + 7}))
    (out / "pages.jsonl").write_text("")
    pages = [f"http://s.test/page/{n}" for n in range(40)]
    links = [
        {"url": f"http://s.test/gone/{n}", "status": 404, "error": None, "referrers": pages,
         "referrer_count": 528}
        for n in range(SHOWN_BROKEN + 7)
    ]  # fmt: skip
    (out / "broken.jsonl").write_text("".join(json.dumps(link) + "\n" for link in links))
    page = write_report(out).read_text()
    assert page.count("http://s.test/gone/") == 2 * SHOWN_BROKEN  # the href and the text
    assert "and 7 more: every one is in broken.jsonl." in page
    assert page.count("<li>") == SHOWN_BROKEN * SHOWN_REFERRERS
    assert "528 pages (and 518 more)" in page
    line = broken_line(links[0])
    assert line.endswith(" and 518 more pages") and line.count("http://s.test/page/") == 10
    code, printed, err = await run_cli("report", "out", "--broken", cwd=tmp_path)
    assert code == 0, err
    assert len(printed.splitlines()) == SHOWN_BROKEN + 7


async def test_a_checks_reports_tell_one_story(serve: SiteFactory, tmp_path: Path) -> None:
    """A check's report.html and `crawler report` say the check's counts (not the
    crawl's), cap every list of referrers, count pages (not links) and every page that
    shares a title, and call themselves a link check."""
    pages = 30
    routes = {
        f"/{n}": [
            *(f"/{child}" for child in (2 * n + 1, 2 * n + 2) if child < pages),
            "/gone.js",
            "/gone.js",  # twice on a page: still one page
            "/1#nowhere",
            *([f"/missing-{n}"] if n < 8 else []),
        ]
        for n in range(pages)
    }
    site = await serve(static_site(routes))
    out = tmp_path / "out"
    code, _, err = await run_cli("check", site.url + "/0", "-o", "out", "-q", cwd=tmp_path)
    assert code == 1, err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["broken"] == 9  # the crawl's: the pages that answered 404
    page = (out / "report.html").read_text()
    assert "<title>Link check report: out</title>" in page
    cards = {k: v for v, k in re.findall(r'<div class="card"><b>([^<]+)</b>([^<]+)</div>', page)}
    assert (cards["Broken"], cards["Pages crawled"]) == ("10", "39")
    assert "30 pages (and 20 more)" in page  # /gone.js: the pages, not the 60 links
    broken = re.search(r'<table id="broken">(.*?)</table>', page)
    assert broken is not None and broken.group(1).count(f'{site.url}/gone.js">') == 1
    assert '<p id="duplicate-titles">None.</p>' in page  # each title is its path
    code, printed, _ = await run_cli("report", "out", cwd=tmp_path)
    assert code == 0
    assert re.search(r"broken links\s+│ 10 ", printed)
    assert "URLs checked on 39 pages: " in printed and "10 broken" in printed
    for line in (await run_cli("report", "out", "--broken", cwd=tmp_path))[1].splitlines():
        assert line.count(site.url) <= 11  # the link and at most ten pages


def test_a_title_shared_by_30_pages_says_30(tmp_path: Path) -> None:
    from crawler.output.report_html import write_report

    (tmp_path / "stats.json").write_text(json.dumps({"pages": 31}))
    records = [
        {"url": f"http://s.test/{n}", "status": 200, "content_type": "text/html",
         "title": "Home" if n < 30 else "Other", "kind": "page"}
        for n in range(31)
    ]  # fmt: skip
    (tmp_path / "pages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = write_report(tmp_path).read_text()
    shared = re.search(r'<table id="duplicate-titles">(.*?)</table>', page)
    assert shared is not None and "<td>Home</td><td>30</td>" in shared.group(1)
    assert shared.group(1).count("http://s.test/") == 2 * 10  # the first ten, href and text
    assert "Other" not in shared.group(1)


def test_the_link_index_counts_every_link_and_names_each_page_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """broken.jsonl's referrers: each page that links to a URL once, every link counted,
    URLs known to work not tracked, and no more URLs tracked than the bound."""
    from crawler.output import links
    from crawler.records import PageRecord

    def record(url: str, status: int) -> PageRecord:
        return PageRecord(url, None, status, 1, None, "text/html", None, 0, 0, 0, "", None)

    monkeypatch.setattr(links, "MAX_TRACKED_URLS", 3)
    index = links.LinkIndex()
    assert index.track(record("http://s.test/fine", 200)) is None
    index.note("http://s.test/a", ["http://s.test/x", "http://s.test/x", "http://s.test/fine"])
    index.note("http://s.test/b", ["http://s.test/x", "http://s.test/y", "http://s.test/z"])
    index.note("http://s.test/c", ["http://s.test/w", "http://s.test/y"])  # w: no room
    x, y, w = (index.track(record(f"http://s.test/{name}", 404)) for name in "xyw")
    assert x is not None and x.referrers == ("http://s.test/a", "http://s.test/b")
    assert x.referrer_count == 3  # /a links to it twice
    assert y is not None and (y.referrers, y.referrer_count) == (
        ("http://s.test/b", "http://s.test/c"),
        2,
    )
    assert w is not None and (w.referrers, w.referrer_count) == ((), 0)
    assert index.export([]).keys() == {"http://s.test/x", "http://s.test/y", "http://s.test/w"}
