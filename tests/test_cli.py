"""The command line as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from conftest import SiteFactory, html_page, read_jsonl, reaped, run_process, start_cli, static_site
from crawler.output.files import OutputLock

Result = tuple[int, str, str]


async def run_cli(*args: str, cwd: Path, wait: float = 60.0, **options: Any) -> Result:
    return await run_process(sys.executable, "-m", "crawler", *args, cwd=cwd, wait=wait, **options)


def assert_one_line_error(result: Result, code: int, text: str) -> None:
    returncode, _, err = result
    assert returncode == code
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert text in err


async def test_bad_flag_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = await run_cli("crawl", "--max-pagez", "3", "http://127.0.0.1/", cwd=tmp_path)
    assert_one_line_error(result, 2, "unrecognized arguments: --max-pagez")
    assert "did you mean --max-pages?" in result[2]


async def test_bad_values_and_files_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(
        await run_cli("crawl", "--max-pages", "0", "http://127.0.0.1/", cwd=tmp_path),
        2,
        "--max-pages must be greater than 0",
    )
    assert_one_line_error(await run_cli("crawl", "ftp://x/", cwd=tmp_path), 2, "not an http(s) URL")
    assert_one_line_error(
        await run_cli("crawl", "--timeout", "inf", "http://127.0.0.1/", cwd=tmp_path),
        2,
        "--timeout must be a finite number, not inf",
    )
    assert_one_line_error(
        await run_cli("crawl", "example.org/docs", cwd=tmp_path),
        2,
        "did you mean http://example.org/docs?",
    )
    assert_one_line_error(await run_cli("crawl", cwd=tmp_path), 2, "no seed URLs")
    (tmp_path / "config.toml").write_text("[crawl]\nmax_pages = 'many'\n")
    assert_one_line_error(
        await run_cli("crawl", "http://127.0.0.1/", cwd=tmp_path),
        2,
        f"max_pages (in {tmp_path / 'config.toml'}) must be a whole number",
    )
    (tmp_path / "config.toml").write_text("[crawl]\nmax_page = 3\n")
    assert_one_line_error(
        await run_cli("crawl", "http://127.0.0.1/", cwd=tmp_path),
        2,
        "unknown setting 'max_page' in [crawl] (did you mean max_pages?)",
    )
    (tmp_path / "config.toml").write_text("[crawl\n")
    assert_one_line_error(
        await run_cli("crawl", "http://127.0.0.1/", cwd=tmp_path), 2, "not valid TOML"
    )


async def test_crawl_writes_output_and_exit_codes(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/a", "/missing"], "/a": []}))

    code, out, err = await run_cli("crawl", site.url + "/", "--output", "out", cwd=tmp_path)
    assert code == 0, err
    assert "crawl summary" in out
    assert "pages/s" in err and "queue" in err  # the status line, stderr being no terminal
    assert len(read_jsonl(tmp_path / "out" / "pages.jsonl")) == 3
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["broken"] == 1

    code, out, err = await run_cli(
        "crawl",
        site.url + "/",
        "--output",
        "out",
        "--fail-on-broken",
        "--quiet",
        "--log-file",
        "crawl.log",
        cwd=tmp_path,
    )
    # The broken links, the new ones first: this crawl's against the one before it.
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "broken links: 1 (0 new since the last pass, 0 fixed)",
        f"still 404 {site.url}/missing <- {site.url}/",
    ]
    assert (tmp_path / "out" / "previous" / "pages.jsonl").exists()
    log = (tmp_path / "crawl.log").read_text()
    assert f"new crawl into out: {site.url}/" in log
    assert f"broken: 404 {site.url}/missing (linked from {site.url}/)" in log
    assert "finished: 3 pages, 1 broken" in log

    code, out, _ = await run_cli("report", "out", cwd=tmp_path)
    assert code == 0
    assert "crawl summary" in out and "report: out/report.html" in out
    assert f"404 {site.url}/missing <- {site.url}/" in out
    code, out, _ = await run_cli("report", "out", "--broken", cwd=tmp_path)
    assert (code, out) == (0, f"404 {site.url}/missing <- {site.url}/\n")
    assert_one_line_error(
        await run_cli("report", "nowhere", cwd=tmp_path), 2, "no crawl in nowhere"
    )
    # URLs are printed as they are: an IPv6 host's brackets are no markup.
    broken = tmp_path / "out" / "broken.jsonl"
    broken.write_text(broken.read_text().replace(site.url, "http://[::1]:8080"))
    code, out, _ = await run_cli("report", "out", "--broken", cwd=tmp_path)
    assert (code, out) == (0, "404 http://[::1]:8080/missing <- http://[::1]:8080/\n")


async def test_config_file_is_read_and_flags_win(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/1"], "/1": ["/2"], "/2": []}))
    (tmp_path / "config.toml").write_text(
        f'[crawl]\nseeds = ["{site.url}/"]\nmax_depth = 1\noutput = "fromfile"\nquiet = true\n'
    )
    code, out, _ = await run_cli("crawl", cwd=tmp_path)
    assert code == 0 and out == ""
    assert len(read_jsonl(tmp_path / "fromfile" / "pages.jsonl")) == 2
    code, _, _ = await run_cli("crawl", "--max-depth", "2", "--output", "flag", cwd=tmp_path)
    assert code == 0
    assert len(read_jsonl(tmp_path / "flag" / "pages.jsonl")) == 3


async def test_a_locked_output_folder_exits_3(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": []}))
    (tmp_path / "out").mkdir()
    lock = OutputLock(tmp_path / "out")
    lock.acquire()
    try:
        result = await run_cli("crawl", site.url + "/", "--output", "out", cwd=tmp_path)
    finally:
        lock.release()
    assert_one_line_error(result, 3, "is in use by pid")
    code, _, _ = await run_cli("crawl", site.url + "/", "--output", "out", "--quiet", cwd=tmp_path)
    assert code == 0


async def test_sigint_stops_cleanly_with_130(serve: SiteFactory, tmp_path: Path) -> None:
    answered = 0
    under_way = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal answered
        await asyncio.sleep(0.1)
        answered += 1
        if answered >= 5:
            under_way.set()
        number = int(request.match_info["n"])
        return html_page(str(number), [f"/{number + 1}", f"/{number + 2}"])

    site = await serve({r"/{n:\d+}": slow})
    process = await start_cli("crawl", site.url + "/0", "--output", "out", "--quiet", cwd=tmp_path)
    async with reaped(process):
        pages = tmp_path / "out" / "pages.jsonl"
        async with asyncio.timeout(30):
            await under_way.wait()
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 130, err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["pages"] == len(read_jsonl(pages)) >= 3


async def test_demo_crawls_the_bundled_site(tmp_path: Path) -> None:
    code, out, err = await run_cli("demo", "--pages", "40", cwd=tmp_path, wait=120)
    assert code == 0, err
    assert "demo site: http://127.0.0.1:" in err
    assert "crawl summary" in out
    records = read_jsonl(tmp_path / "output" / "demo" / "pages.jsonl")
    urls = {record["url"].split("/", 3)[3] for record in records}
    assert {f"page/{n}" for n in range(1, 41)} <= urls
    assert "private/report" in urls
    broken = read_jsonl(tmp_path / "output" / "demo" / "broken.jsonl")
    assert broken and all(link["referrers"] for link in broken)


async def test_demo_serve_prints_its_url_and_serves(tmp_path: Path) -> None:
    process = await start_cli("demo", "--serve", "--pages", "5", cwd=tmp_path, stderr=None)
    async with reaped(process):
        assert process.stdout is not None
        async with asyncio.timeout(30):
            url = (await process.stdout.readline()).decode().strip()
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(url + "robots.txt") as answer:
            assert answer.status == 200
            assert "Disallow: /private/" in await answer.text()
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await process.wait()
    assert process.returncode == 0


async def start_stuck_crawl(
    serve: SiteFactory, tmp_path: Path, *flags: str
) -> asyncio.subprocess.Process:
    """A crawl whose only page never answers; returns once the request is under way."""
    under_way = asyncio.Event()

    async def stuck(_: web.Request) -> web.StreamResponse:
        under_way.set()
        await asyncio.sleep(60)
        return html_page("late")

    site = await serve({"/": stuck})
    process = await start_cli(
        "crawl",
        site.url + "/",
        *("--output", "out", "--ignore-robots", "--no-sitemaps", "--timeout", "120", *flags),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(30):
            await under_way.wait()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return process


async def test_a_second_ctrl_c_quits_at_once(serve: SiteFactory, tmp_path: Path) -> None:
    process = await start_stuck_crawl(serve, tmp_path)
    async with reaped(process):
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        async with asyncio.timeout(10):
            line = await process.stderr.readline()
        assert b"stopping" in line
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(3):
            await process.wait()
    assert process.returncode == 130


async def test_sigterm_cancels_a_stuck_request_within_seconds(
    serve: SiteFactory, tmp_path: Path
) -> None:
    process = await start_stuck_crawl(serve, tmp_path, "--quiet")
    async with reaped(process):
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()
    assert process.returncode == 143
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["finished"] is False
    code, _, err = await run_cli(
        "crawl", "--resume", "--output", "out", "--quiet", "--max-time", "1", cwd=tmp_path
    )
    assert code == 0, err


async def test_an_interrupted_demo_starts_over(tmp_path: Path) -> None:
    demo = tmp_path / "output" / "demo"
    demo.mkdir(parents=True)
    from crawler.output.state import CrawlState

    CrawlState.create(demo / "state.sqlite", {"seeds": ["http://127.0.0.1:9/"]}).close()

    code, _, err = await run_cli("demo", "--pages", "5", cwd=tmp_path, wait=120)

    assert code == 0, err
    assert len(read_jsonl(demo / "pages.jsonl")) > 5


async def test_a_site_that_is_down_fails_and_says_why(serve: SiteFactory, tmp_path: Path) -> None:
    """A host answering 5xx to everything (robots.txt too) is down, not excluded; a seed
    that cannot be fetched is named on stderr, and no seed fetched is exit 8."""

    async def down(_: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    site = await serve({"/": down, "/robots.txt": down, "/a": down})
    fine = await serve(static_site({"/": ["/gone"]}), host="127.0.0.2")
    refused = f"http://127.0.0.1:{_closed_port()}/"
    for command in (("check",), ("crawl", "--fail-on-broken")):
        code, _, err = await run_cli(*command, site.url + "/", "-q", "--retries", "0", cwd=tmp_path)
        assert code == 8, err
        assert err.splitlines() == [
            f"crawler: WARNING: seed {site.url}/ not fetched: its robots.txt answered 5xx: "
            "the site is down (RFC 9309: fetch nothing)",
            "crawler: error: no seed could be fetched (1 of 1: see the lines above, or pages.jsonl)",
        ]
    assert site.count("/") == 0  # RFC 9309: a 5xx robots.txt still means fetch nothing
    stats = json.loads((tmp_path / "output" / "stats.json").read_text())
    assert (stats["broken"], stats["seeds"], stats["seeds_failed"]) == (1, 1, 1)
    code, out, err = await run_cli(
        "check", site.url + "/", refused, fine.url + "/nothere", cwd=tmp_path
    )
    assert code == 8 and "Traceback" not in err
    assert f"seed {refused} not fetched: its host refused the connection" in err
    assert f"seed {fine.url}/nothere not fetched: answered 404 Not Found" in err
    assert "3 broken" in out
    # One seed fetched: the crawl did its work, its broken links say the rest.
    code, _, err = await run_cli("crawl", refused, fine.url + "/", "-q", cwd=tmp_path)
    assert code == 0 and f"seed {refused} not fetched" in err
    code, _, _ = await run_cli("check", refused, fine.url + "/", "-q", cwd=tmp_path)
    assert code == 1


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_verbose_is_a_debug_log_of_every_url_on_stderr(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a", "/missing"], "/a": []}))
    code, _, err = await run_cli("crawl", site.url + "/", "-o", "out", "-v", cwd=tmp_path)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "DEBUG" in line]
    assert sorted(line.split(" (")[0] for line in lines) == [
        f"crawler: DEBUG: 200 page {site.url}/",
        f"crawler: DEBUG: 200 page {site.url}/a",
        f"crawler: DEBUG: 404 page {site.url}/missing",
    ]
    assert "in flight" not in err  # no progress line between them
    code, _, err = await run_cli("crawl", site.url + "/", "-o", "again", cwd=tmp_path)
    assert code == 0 and "DEBUG" not in err


async def test_allow_and_deny_take_paths_as_wget_does_and_refuse_what_matches_nothing(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(
        static_site({"/": ["/deep/a", "/deep/b", "/deeper", "/top"], "/deep/a": [], "/deep/b": []})
    )
    code, out, err = await run_cli("crawl", site.url + "/", "--deny", "/deep/", cwd=tmp_path)
    assert code == 0, err
    crawled = {record["url"] for record in read_jsonl(tmp_path / "output" / "pages.jsonl")}
    assert crawled == {site.url + path for path in ("/", "/deeper", "/top")}
    assert "links not followed (--allow/--deny) │ 2" in out
    code, _, _ = await run_cli("crawl", site.url + "/", "--allow", "/deep", "-o", "b", cwd=tmp_path)
    crawled = {record["url"] for record in read_jsonl(tmp_path / "b" / "pages.jsonl")}
    assert crawled == {site.url + path for path in ("/", "/deep/a", "/deep/b")}
    assert_one_line_error(
        await run_cli("crawl", site.url + "/", "--allow", "deep/*", cwd=tmp_path),
        2,
        "link pattern 'deep/*' can match no URL: a glob matches the whole URL ('*deep/**')",
    )
