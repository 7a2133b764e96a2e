"""The first week of real use, through the command line: the nightly job as cron runs
it, the config file, an extractor from the folder you are in, and the summary."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

import pytest
from aiohttp import web

from conftest import SiteFactory, html_page, read_jsonl, static_site
from crawler.terminal import page_rows
from test_cli import assert_one_line_error, run_cli

# The installed console script, by its absolute path, as a crontab calls it.
SCRIPT = Path(sys.executable).parent / "crawler"


class ChangingSite:
    """A site whose pages change between nights: {path: links}; others are 404."""

    def __init__(self) -> None:
        self.pages: dict[str, list[str]] = {}

    def routes(self, paths: list[str]) -> dict[str, web.Handler]:  # type: ignore[name-defined]
        async def page(request: web.Request) -> web.StreamResponse:
            links = self.pages.get(request.path)
            if links is None:
                return web.Response(status=404, text="gone")
            return html_page(request.path, links)

        return {path: page for path in paths}


async def night(line: str, home: Path) -> tuple[int, str, str]:
    """One night: ``line`` as cron runs it (an empty environment, PATH=/usr/bin:/bin)."""
    process = await asyncio.create_subprocess_exec(
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"HOME={home}",
        "/bin/sh",
        "-c",
        line,
        cwd=home,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_nightly_job_as_cron_runs_it(serve: SiteFactory, tmp_path: Path) -> None:
    site = ChangingSite()
    paths = ["/", "/a", "/b", "/c", "/d", "/about", "/old", "/new", "/missing", "/missing2"]
    server = await serve(site.routes(paths))
    folder = tmp_path / "crawls" / "example"
    folder.parent.mkdir()
    line = (
        f"{shlex.quote(str(SCRIPT))} crawl {server.url}/ --output {shlex.quote(str(folder))}"
        " --update --quiet --fail-on-broken --max-time 1 --delay 0.2 --no-sitemaps"
        f" --log-file {shlex.quote(str(tmp_path / 'example.log'))}"
    )
    url = server.url

    async def until_the_pass_ends() -> tuple[int, str, str, int]:
        """Nights until one ends the pass: each cut night prints nothing and exits 0."""
        for nights in range(1, 9):
            code, out, err = await night(line, tmp_path)
            stats = json.loads((folder / "stats.json").read_text())
            if stats["finished"]:
                return code, out, err, nights
            assert (code, out, err) == (0, "", ""), f"night {nights} of the pass"
        raise AssertionError("the pass did not end in 8 nights")

    # Pass 1: a new crawl, cut by --max-time, continued night after night.
    site.pages = {
        "/": ["/a", "/b", "/c", "/d", "/about"],
        "/a": ["/missing"],
        "/b": [],
        "/c": [],
        "/d": [],
        "/about": ["/old"],
        "/old": [],
    }
    code, out, err, nights = await until_the_pass_ends()
    assert nights >= 2  # --max-time cut the first night(s)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "broken links: 1 (1 new since the last pass, 0 fixed)",
        f"new 404 {url}/missing <- {url}/a",
    ]

    # Pass 2: /missing fixed, /old removed (still linked), /a links to a new broken one.
    site.pages["/missing"] = []
    site.pages["/a"] = ["/missing", "/missing2", "/new"]
    site.pages["/new"] = []
    del site.pages["/old"]
    code, out, err, _ = await until_the_pass_ends()
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == "broken links: 2 (2 new since the last pass, 1 fixed)"
    assert sorted(lines[1:3]) == [
        f"new 404 {url}/missing2 <- {url}/a",
        f"new 404 {url}/old <- {url}/about",
    ]
    assert lines[3:] == [f"fixed {url}/missing"]
    records = {r["url"]: r for r in read_jsonl(folder / "pages.jsonl")}
    assert records[f"{url}/new"]["change"] == "new"
    assert records[f"{url}/old"]["change"] == "removed"
    assert (folder / "previous" / "broken.jsonl").exists()

    # Pass 3: everything fixed: nothing to report, so nothing is printed.
    site.pages["/about"] = []
    site.pages["/a"] = ["/new"]
    code, out, err, _ = await until_the_pass_ends()
    assert (code, out, err) == (0, "", "")
    log = (tmp_path / "example.log").read_text()
    assert "resume into" in log and "incremental into" in log


async def test_a_site_generators_config_toml_is_not_ours(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": []}))
    hugo = 'baseURL = "https://example.org/"\ntitle = "My site"\n[params]\ncolor = "red"\n'
    (tmp_path / "config.toml").write_text(hugo)
    code, _, err = await run_cli("crawl", site.url + "/", "-o", "out", "-q", cwd=tmp_path)
    assert (code, err) == (0, "")
    # crawler.toml is ours, whatever config.toml says.
    (tmp_path / "crawler.toml").write_text("[crawl]\nmax_pages = 0\n")
    assert_one_line_error(
        await run_cli("crawl", site.url + "/", "-o", "out2", cwd=tmp_path),
        2,
        f"max_pages (in {tmp_path / 'crawler.toml'}) must be greater than 0",
    )
    assert not (tmp_path / "out2").exists()  # a run that fails at start leaves no folder


async def test_an_extractor_from_the_folder_you_are_in(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    (tmp_path / "titles.py").write_text(
        "def extract(page):\n    yield {'title': page.soup.title.string}\n"
    )
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "crawl",
        site.url + "/",
        "-o",
        "out",
        "-q",
        "--extract",
        "titles:extract",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 0, err
    assert sorted(item["title"] for item in read_jsonl(tmp_path / "out" / "items.jsonl")) == [
        "/",
        "/a",
    ]
    code, out, _ = await run_cli(
        "crawl", site.url + "/", "-o", "shown", "--extract", "titles:extract", cwd=tmp_path
    )
    assert code == 0 and "items extracted" in out and "extractor failures" in out
    assert_one_line_error(
        await run_cli("crawl", site.url + "/", "-o", "none", "--extract", "nosuch:f", cwd=tmp_path),
        2,
        "cannot import extractor module 'nosuch'",
    )
    assert not (tmp_path / "none").exists()


async def test_an_unfinished_crawl_says_so_and_how_to_go_on(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(
        static_site({"/": [f"/p{n}" for n in range(20)], **{f"/p{n}": [] for n in range(20)}})
    )
    code, out, _ = await run_cli(
        "crawl", site.url + "/", "-o", "out", "--max-time", "0.5", "--delay", "0.1", cwd=tmp_path
    )
    assert code == 0
    assert "crawl summary: unfinished" in out
    assert "still queued" in out
    assert "crawler crawl --output out --resume" in out
    code, out, _ = await run_cli("crawl", "-o", "out", "--update", cwd=tmp_path)
    assert code == 0 and "crawl summary" in out and "unfinished" not in out
    code, out, _ = await run_cli("crawl", "-o", "out", "--update", cwd=tmp_path)
    assert code == 0 and "unchanged since the last pass" in out


def test_the_summary_rows_add_up_to_the_pages() -> None:
    stats = {
        "pages": 10,
        "ok": 4,
        "status_counts": {"200": 4, "404": 2, "503": 1},
        "error_counts": {"timeout": 1, "robots": 1, "too-large": 1},
        "robots_refused": 1,
    }
    rows = dict(page_rows(stats))
    assert sum(rows.values()) == 10
    assert rows["other errors"] == 1 and rows["network errors"] == 1


async def test_version_and_help(tmp_path: Path) -> None:
    code, out, _ = await run_cli("--version", cwd=tmp_path)
    assert code == 0 and out.startswith("crawler ")
    code, out, _ = await run_cli("crawl", "--help", cwd=tmp_path)
    assert code == 0
    assert "(default: 32)" in out and "examples:" in out and "-o DIR, --output DIR" in out


async def test_the_library_takes_lists_and_str_paths(serve: SiteFactory, tmp_path: Path) -> None:
    from crawler import CrawlConfig, crawl
    from crawler.errors import ConfigError

    site = await serve(static_site({"/": ["/a"], "/a": []}))
    config = CrawlConfig(seeds=[site.url + "/"], output_dir=str(tmp_path / "out"), allow=[])
    assert config.seeds == (site.url + "/",) and config.output_dir == tmp_path / "out"
    stats = await crawl(config)
    assert stats.pages == 2 and (tmp_path / "out" / "pages.jsonl").exists()
    with pytest.raises(ConfigError, match="seeds must be a list of strings"):
        CrawlConfig(seeds=site.url + "/")
    with pytest.raises(ConfigError, match=r"did you mean http://example\.org/"):
        CrawlConfig(seeds=["example.org/"])


async def test_a_new_crawl_into_a_finished_folder_starts_clean(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    (tmp_path / "titles.py").write_text("def extract(page):\n    yield {'url': page.url}\n")
    first = ("--extract", "titles:extract", "--format", "csv", "--save-html")
    code, _, err = await run_cli("crawl", site.url + "/", "-o", "out", "-q", *first, cwd=tmp_path)
    assert code == 0, err
    code, _, err = await run_cli("crawl", site.url + "/", "-o", "out", "-q", cwd=tmp_path)
    assert code == 0, err
    out = tmp_path / "out"
    for stale in ("items.jsonl", "pages.csv", "html"):
        assert not (out / stale).exists(), stale
        assert (out / "previous" / stale).exists(), stale
    assert len(read_jsonl(out / "pages.jsonl")) == 2
