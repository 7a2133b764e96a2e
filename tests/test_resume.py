"""Crash safety: kill -9 and SIGTERM mid-crawl, --resume, torn lines, bad state files,
and --incremental after the site changed. Real servers, real processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sqlite3
import tempfile
from pathlib import Path

import pytest
from aiohttp import web

from conftest import SiteFactory, html_page, read_jsonl, start_cli, static_site
from crawler import CrawlConfig, Crawler, PageRecord, crawl
from crawler.output.state import CrawlState
from test_cli import assert_one_line_error, run_cli

PAGES = 150


def big_site() -> dict[str, list[str]]:
    site = {"/": [f"/p/{n}" for n in range(0, PAGES, 10)]}
    for number in range(PAGES):
        site[f"/p/{number}"] = [
            f"/p/{(number * 3 + 1) % PAGES}",
            f"/p/{(number + 1) % PAGES}",
            "/gone",
        ]
    return site


async def serve_counting(serve: SiteFactory, after: int) -> tuple[str, asyncio.Event]:
    """The big site; the event is set once ``after`` pages have been answered."""
    routes = static_site(big_site())
    reached = asyncio.Event()
    answered = 0

    def counted(handler):  # type: ignore[no-untyped-def]
        async def wrapper(request: web.Request) -> web.StreamResponse:
            nonlocal answered
            await asyncio.sleep(0.01)
            answered += 1
            if answered >= after:
                reached.set()
            return await handler(request)

        return wrapper

    site = await serve({path: counted(handler) for path, handler in routes.items()})
    return site.url, reached


async def start_crawl(url: str, cwd: Path, *extra: str) -> asyncio.subprocess.Process:
    return await start_cli(
        "crawl",
        url + "/",
        *("--output", "out", "--quiet", "--per-host", "4", *extra),
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def stop(process: asyncio.subprocess.Process, signum: int) -> int:
    process.send_signal(signum)
    async with asyncio.timeout(30):
        return await process.wait()


def urls_of(path: Path) -> list[str]:
    return [record["url"] for record in read_jsonl(path)]


@pytest.mark.parametrize("kill_after", [3, 40, 120])
async def test_kill_9_then_resume_covers_every_page_once(
    serve: SiteFactory, tmp_path: Path, kill_after: int
) -> None:
    url, reached = await serve_counting(serve, kill_after)
    whole = await crawl(CrawlConfig(seeds=(url + "/",), output_dir=tmp_path / "whole"))
    expected = set(urls_of(tmp_path / "whole" / "pages.jsonl"))
    assert len(expected) == whole.pages == PAGES + 2
    reached.clear()

    process = await start_crawl(url, tmp_path)
    try:
        async with asyncio.timeout(30):
            await reached.wait()
    finally:
        code = await stop(process, signal.SIGKILL)
    assert code == -signal.SIGKILL

    code, _, err = await run_cli("crawl", "--resume", "--output", "out", "--quiet", cwd=tmp_path)
    assert code == 0, err
    urls = urls_of(tmp_path / "out" / "pages.jsonl")
    assert len(urls) == len(set(urls)), "a page was recorded twice"
    assert set(urls) == expected
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["pages"] == len(urls) and stats["finished"] is True
    broken = read_jsonl(tmp_path / "out" / "broken.jsonl")
    assert [link["url"] for link in broken] == [url + "/gone"]
    assert broken[0]["referrer_count"] >= 1


async def test_sigterm_saves_state_and_resume_finishes(serve: SiteFactory, tmp_path: Path) -> None:
    url, reached = await serve_counting(serve, 20)
    process = await start_crawl(url, tmp_path)
    try:
        async with asyncio.timeout(30):
            await reached.wait()
    finally:
        code = await stop(process, signal.SIGTERM)
    assert code == 143
    first = urls_of(tmp_path / "out" / "pages.jsonl")
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["finished"] is False

    assert_one_line_error(
        await run_cli("crawl", url + "/", "--output", "out", cwd=tmp_path),
        2,
        "holds an unfinished crawl: continue it with --resume",
    )
    code, _, err = await run_cli("crawl", "--resume", "--output", "out", "--quiet", cwd=tmp_path)
    assert code == 0, err
    urls = urls_of(tmp_path / "out" / "pages.jsonl")
    assert urls[: len(first)] == first
    assert len(urls) == len(set(urls)) == PAGES + 2

    code, _, err = await run_cli("crawl", "--resume", "--output", "out", cwd=tmp_path)
    assert code == 0 and "finished; nothing to resume" in err


async def test_max_time_then_resume_next_night(serve: SiteFactory, tmp_path: Path) -> None:
    url, _ = await serve_counting(serve, 1)
    config = CrawlConfig(seeds=(url + "/",), output_dir=tmp_path, max_time=0.3, per_host=1)
    first = await crawl(config)
    assert not first.finished and 0 < first.pages < PAGES

    second = await crawl(CrawlConfig(output_dir=tmp_path, resume=True, per_host=8))

    assert second.finished and second.pages == PAGES + 2
    assert len(set(urls_of(tmp_path / "pages.jsonl"))) == PAGES + 2


async def test_a_torn_last_line_is_repaired(serve: SiteFactory, tmp_path: Path) -> None:
    url, _ = await serve_counting(serve, 1)
    await crawl(CrawlConfig(seeds=(url + "/",), output_dir=tmp_path, max_pages=10))
    pages = tmp_path / "pages.jsonl"
    with pages.open("a") as file:
        file.write('{"url": "http://torn.invalid/", "sta')

    await crawl(CrawlConfig(output_dir=tmp_path, resume=True))

    urls = urls_of(pages)
    assert len(urls) == len(set(urls)) == PAGES + 2
    assert "http://torn.invalid/" not in urls


async def test_resume_appends_records_the_pages_file_lacks(
    serve: SiteFactory, tmp_path: Path
) -> None:
    url, _ = await serve_counting(serve, 1)
    await crawl(CrawlConfig(seeds=(url + "/",), output_dir=tmp_path, max_pages=20))
    pages = tmp_path / "pages.jsonl"
    lines = pages.read_text().splitlines(keepends=True)
    pages.write_text("".join(lines[:12]))  # as if the process died between commit and write

    await crawl(CrawlConfig(output_dir=tmp_path, resume=True))

    urls = urls_of(pages)
    assert urls[:20] == [json.loads(line)["url"] for line in lines]
    assert len(urls) == len(set(urls)) == PAGES + 2


@pytest.mark.parametrize("content", ["garbage", "foreign", "empty-db"])
async def test_bad_state_files_exit_2_and_are_left_alone(tmp_path: Path, content: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    state = out / "state.sqlite"
    if content == "garbage":
        state.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(state) as connection:
            if content == "foreign":
                connection.execute("CREATE TABLE accounts (id INTEGER)")
    before = hashlib.sha256(state.read_bytes()).hexdigest()

    code, _, err = await run_cli("crawl", "--resume", "--output", "out", cwd=tmp_path)
    assert_one_line_error((code, "", err), 2, "left untouched")
    code, _, err = await run_cli("crawl", "http://127.0.0.1:9/", "--output", "out", cwd=tmp_path)
    assert_one_line_error((code, "", err), 2, "left untouched")
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before


async def test_resume_without_state_exits_2(tmp_path: Path) -> None:
    result = await run_cli("crawl", "--resume", "--output", "nowhere", cwd=tmp_path)
    assert_one_line_error(result, 2, "no crawl state in nowhere")
    assert not (tmp_path / "nowhere").exists()


async def test_incremental_recrawl_finds_new_changed_unchanged_removed(
    serve: SiteFactory, tmp_path: Path
) -> None:
    content = {
        "/": ["/same", "/edited", "/doomed", "/no-etag"],
        "/same": [],
        "/edited": [],
        "/doomed": [],
        "/no-etag": ["/same"],
    }
    titles = {path: path for path in content}

    async def page(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path not in content:
            raise web.HTTPNotFound()
        response = html_page(titles[path], content[path])
        if path != "/no-etag":
            etag = '"' + hashlib.sha1(response.text.encode()).hexdigest() + '"'  # type: ignore[union-attr]
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            response.headers["ETag"] = etag
        return response

    site = await serve({"/{path:.*}": page})
    first = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))
    assert first.pages == 5 and first.new == 0

    titles["/edited"] = "edited again"
    content["/edited"] = ["/brand-new"]
    content["/brand-new"] = []
    titles["/brand-new"] = "new"
    del content["/doomed"]

    stats = await crawl(CrawlConfig(output_dir=tmp_path, incremental=True))

    records = {r["url"].removeprefix(site.url): r for r in read_jsonl(tmp_path / "pages.jsonl")}
    changes = {path: record["change"] for path, record in records.items()}
    assert changes == {
        "/": "unchanged",
        "/same": "unchanged",
        "/no-etag": "unchanged",
        "/edited": "changed",
        "/doomed": "removed",
        "/brand-new": "new",
    }
    assert records["/same"]["status"] == 304
    assert (stats.new, stats.changed, stats.unchanged, stats.removed) == (1, 1, 3, 1)
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert (saved["new"], saved["changed"], saved["unchanged"], saved["removed"]) == (1, 1, 3, 1)


async def test_links_are_kept_for_pages_with_a_validator_and_a_304_is_only_an_answer_to_one(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """A page's links are kept in state.sqlite for the 304 of a later pass, which only a
    page that sent an ETag or Last-Modified can answer; a server that answers 304 to a
    request without validators gets a record of what it said, not the last pass's links."""
    passes = {"count": 0}

    async def page(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/":
            response = html_page("home", ["/tagged", "/liar"])
            response.headers["ETag"] = '"home"'
            if request.headers.get("If-None-Match") == '"home"':
                return web.Response(status=304, headers={"ETag": '"home"'})
            return response
        if path == "/liar" and passes["count"] == 2:
            return web.Response(status=304)  # though nothing was asked conditionally
        links = {"/tagged": ["/a"], "/liar": ["/b"]}.get(path, [])
        return html_page(path, links)

    site = await serve({"/{path:.*}": page})
    passes["count"] = 1
    await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path))
    with sqlite3.connect(tmp_path / "state.sqlite") as state:
        kept = dict(state.execute("SELECT url, links IS NOT NULL FROM urls"))
    assert kept[site.url + "/"] == 1  # it sent an ETag
    assert kept[site.url + "/tagged"] == 0 and kept[site.url + "/liar"] == 0

    passes["count"] = 2
    await crawl(CrawlConfig(output_dir=tmp_path, incremental=True))
    records = {r["url"].removeprefix(site.url): r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records["/"]["status"] == 304 and records["/"]["change"] == "unchanged"
    assert records["/tagged"]["change"] == "unchanged" and "/a" in records
    assert records["/liar"]["status"] == 304 and records["/liar"]["change"] is None


async def test_incremental_needs_a_finished_crawl(tmp_path: Path) -> None:
    result = await run_cli("crawl", "--incremental", "--output", "out", cwd=tmp_path)
    assert_one_line_error(result, 2, "no crawl state in out")


async def test_a_frontier_larger_than_memory_spills_and_loses_nothing(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("crawler.frontier.memory.MEMORY_ENTRIES", 16)
    url, _ = await serve_counting(serve, 1)

    first = await crawl(
        CrawlConfig(seeds=(url + "/",), output_dir=tmp_path, max_pages=40, per_host=8)
    )
    assert first.pages == 40 and not first.finished
    second = await crawl(CrawlConfig(output_dir=tmp_path, resume=True, per_host=8))

    urls = urls_of(tmp_path / "pages.jsonl")
    assert second.finished
    assert len(urls) == len(set(urls)) == PAGES + 2


async def test_one_page_of_more_links_than_memory_holds_spills_the_rest(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's links are queued a batch at a time, so the frontier spills what it cannot
    hold (it decides a batch at a time): a page of 600,000 links held them all."""
    from crawler.frontier.memory import MemoryFrontier

    monkeypatch.setattr("crawler.frontier.memory.MEMORY_ENTRIES", 16)
    monkeypatch.setattr("crawler.frontier.protocol.QUEUE_BATCH", 8)
    held: list[int] = []
    take_in = MemoryFrontier._take_in

    def watched(self: MemoryFrontier, *args: object) -> object:
        taken = take_in(self, *args)  # type: ignore[arg-type]
        held.append(self._pending - self._spilled)
        return taken

    monkeypatch.setattr(MemoryFrontier, "_take_in", watched)
    leaves = [f"/leaf/{n}" for n in range(200)]

    async def page(request: web.Request) -> web.Response:
        return html_page("/", leaves if request.path == "/" else [])

    site = await serve({"/{path:.*}": page})

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, per_host=8))

    urls = urls_of(tmp_path / "pages.jsonl")
    assert stats.finished and len(urls) == len(set(urls)) == len(leaves) + 1
    assert max(held) <= 16 + 8


async def test_the_library_spills_too_and_cleans_up(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No output folder: the overflow goes to a temporary file, deleted at the end."""
    monkeypatch.setattr("crawler.frontier.memory.MEMORY_ENTRIES", 16)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    url, _ = await serve_counting(serve, 1)
    urls: list[str] = []

    async with Crawler(CrawlConfig(seeds=(url + "/",), per_host=8)) as crawler:
        async for record in crawler:
            if isinstance(record, PageRecord):
                urls.append(record.url)
                spills = list(tmp_path.glob("crawler-spill-*/spill.sqlite"))
                assert len(spills) <= 1

    assert crawler.stats().finished
    assert len(urls) == len(set(urls)) == PAGES + 2
    assert spills and not spills[0].exists()  # it spilled, and the file is gone


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_crawl_killed_as_it_finished_resumes_to_finished(
    serve: SiteFactory, tmp_path: Path, processes: int
) -> None:
    url, _ = await serve_counting(serve, 1)
    flags = ("--output", "out", "--quiet", "--processes", str(processes))
    code, _, err = await run_cli("crawl", url + "/", *flags, cwd=tmp_path)
    assert code == 0, err
    requests = len(urls_of(tmp_path / "out" / "pages.jsonl"))
    state = CrawlState.open(tmp_path / "out" / "state.sqlite")
    state.set_meta("status", "stopped")  # every URL done, the end not written: killed there
    state.close()

    code, _, err = await run_cli("crawl", "--resume", *flags, cwd=tmp_path)

    assert code == 0, err
    urls = urls_of(tmp_path / "out" / "pages.jsonl")
    assert len(urls) == len(set(urls)) == requests  # nothing fetched again
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["finished"] is True


async def test_a_nightly_pass_given_another_sites_urls_refuses_in_one_line(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """--update (or --resume, --incremental) with URLs that are not the folder's crawl's:
    one line naming both, nothing fetched (was: the old site recrawled in silence)."""
    first = await serve(static_site({"/": []}))
    other = await serve(static_site({"/": []}), host="127.0.0.2")
    code, _, err = await run_cli("crawl", first.url + "/", "-o", "out", "-q", cwd=tmp_path)
    assert code == 0, err
    for mode in ("--update", "--incremental"):
        result = await run_cli("crawl", other.url + "/", "-o", "out", "-q", mode, cwd=tmp_path)
        assert_one_line_error(result, 2, f"holds the crawl of {first.url}/, not of {other.url}/")
    assert other.requests == []
    for given in ([first.url + "/"], [first.url], []):  # the same site, or no URL: on it goes
        code, _, err = await run_cli("crawl", *given, "-o", "out", "-q", "--update", cwd=tmp_path)
        assert code == 0, err
