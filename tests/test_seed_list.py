"""Seed lists: --input-file FILE (or - for standard input), and the library's seeds
given as any iterable, read lazily; on loopback hosts 127.0.0.1, .2 and .3."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from conftest import Site, SiteFactory, html_page, read_jsonl
from crawler import CrawlConfig, Crawler, PageRecord
from test_cli import assert_one_line_error, run_cli


def _page(links: list[str]) -> web.Handler:
    async def handler(request: web.Request) -> web.Response:
        return html_page(request.path, links)

    return handler


async def _hosts(serve: SiteFactory) -> tuple[Site, Site, Site]:
    """A's and B's pages link to a page of their own and to C, which no seed names."""
    c = await serve({"/{path:.*}": _page([])}, host="127.0.0.3")
    b = await serve({"/": _page(["/b2", c.url + "/"]), "/b2": _page([])}, host="127.0.0.2")
    a = await serve({"/": _page(["/a2", c.url + "/"]), "/a2": _page([])})
    return a, b, c


def _list(a: Site, b: Site) -> str:
    return "\n".join(
        [
            "# the sites to crawl",
            f"\ufeff{a.url}/",
            "",
            f"   {b.url}/   ",
            "ftp://files.example.org/",
            "not a url",
            f"{a.url}/",
        ]
    )


def _fetched(folder: Path) -> set[str]:
    return {r["url"] for r in read_jsonl(folder / "pages.jsonl") if r["status"] == 200}


@pytest.mark.parametrize("processes", [1, 2])
async def test_an_input_file_seeds_the_crawl_and_its_hosts_are_in_scope(
    serve: SiteFactory, tmp_path: Path, processes: int
) -> None:
    a, b, c = await _hosts(serve)
    (tmp_path / "sites.txt").write_text(_list(a, b))

    code, _, err = await run_cli(
        "crawl", "-i", "sites.txt", "-o", "out", "--processes", str(processes), cwd=tmp_path
    )

    assert code == 0, err
    assert _fetched(tmp_path / "out") == {a.url + "/", a.url + "/a2", b.url + "/", b.url + "/b2"}
    assert c.count("/") == 0  # linked, but no seed names its host
    assert a.count("/") == 1  # listed twice, fetched once
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["seeds"] == 2 and stats["seeds_skipped"] == 2 and stats["finished"]
    assert "sites.txt: 2 lines are not http(s) URLs, skipped (line 5: ftp://" in err
    assert "line 6: not a url)" in err and "Traceback" not in err


async def test_standard_input_is_a_seed_list_beside_the_urls_given(
    serve: SiteFactory, tmp_path: Path
) -> None:
    a, b, _ = await _hosts(serve)
    (tmp_path / "sites.txt").write_text(f"{b.url}/\n")

    with (tmp_path / "sites.txt").open("rb") as stdin:
        code, _, err = await run_cli(
            "crawl", a.url + "/", "-i", "-", "-o", "out", "-q", cwd=tmp_path, stdin=stdin
        )

    assert code == 0, err
    assert _fetched(tmp_path / "out") == {a.url + "/", a.url + "/a2", b.url + "/", b.url + "/b2"}


async def test_a_resumed_crawl_keeps_its_seed_lists_hosts_in_scope(
    serve: SiteFactory, tmp_path: Path
) -> None:
    a, b, c = await _hosts(serve)
    (tmp_path / "sites.txt").write_text(f"{a.url}/\n{b.url}/\n")
    flags = ("-o", "out", "-q", "--concurrency", "1", "--per-host", "1")
    code, _, err = await run_cli(
        "crawl", "-i", "sites.txt", *flags, "--max-pages", "1", cwd=tmp_path
    )
    assert code == 0, err

    code, _, err = await run_cli("crawl", *flags, "--resume", cwd=tmp_path)

    assert code == 0, err
    assert _fetched(tmp_path / "out") == {a.url + "/", a.url + "/a2", b.url + "/", b.url + "/b2"}
    assert c.count("/") == 0


async def test_the_next_pass_of_a_listed_crawl_needs_no_list_and_takes_a_longer_one(
    serve: SiteFactory, tmp_path: Path
) -> None:
    a, b, c = await _hosts(serve)
    (tmp_path / "sites.txt").write_text(f"{a.url}/\n")
    code, _, err = await run_cli("crawl", "-i", "sites.txt", "-o", "out", "-q", cwd=tmp_path)
    assert code == 0, err

    code, _, err = await run_cli("crawl", "-o", "out", "-q", "--update", cwd=tmp_path)
    assert code == 0, err
    assert a.count("/") == 2 and b.count("/") == 0

    (tmp_path / "sites.txt").write_text(f"{a.url}/\n{b.url}/\n")
    code, _, err = await run_cli(
        "crawl", "-i", "sites.txt", "-o", "out", "-q", "--update", cwd=tmp_path
    )
    assert code == 0, err
    assert a.count("/") == 3 and b.count("/b2") == 1 and c.count("/") == 0
    assert _fetched(tmp_path / "out") == {a.url + "/", a.url + "/a2", b.url + "/", b.url + "/b2"}


async def test_a_long_list_is_queued_a_batch_at_a_time(serve: SiteFactory, tmp_path: Path) -> None:
    """120,000 lines: the frontier holds 50,000 entries, the state takes the rest."""
    a = await serve({"/{path:.*}": _page([])})
    lines = (f"{a.url}/p/{n}\n" for n in range(120_000))
    (tmp_path / "long.txt").write_text("".join(lines))

    code, _, err = await run_cli(
        "crawl", "-i", "long.txt", "-o", "out", "-q", "--max-pages", "3", cwd=tmp_path
    )

    assert code == 0, err
    with sqlite3.connect(tmp_path / "out" / "state.sqlite") as db:
        query = "SELECT count(*) FROM urls WHERE url LIKE '%/p/%'"
        assert db.execute(query).fetchone()[0] == 120_000
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["pages"] == 3 and stats["queued"] >= 120_000 - 3 - 32  # --concurrency


async def test_the_librarys_seeds_may_be_any_iterable_read_lazily(serve: SiteFactory) -> None:
    a, b, c = await _hosts(serve)
    taken: list[str] = []

    def seeds() -> Iterator[object]:
        for url in (a.url + "/", "mailto:x@example.org", 42, b.url + "/"):
            taken.append(str(url))
            yield url

    config = CrawlConfig(seeds=seeds())  # type: ignore[arg-type]
    assert taken == []  # nothing read until the crawl starts
    async with Crawler(config) as crawl:
        records = [record async for record in crawl if isinstance(record, PageRecord)]

    assert crawl.stats().seeds_skipped == 2
    assert {r.url for r in records if r.status == 200} == {
        a.url + "/",
        a.url + "/a2",
        b.url + "/",
        b.url + "/b2",
    }
    assert c.count("/") == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("-i", "missing.txt"), "--input-file: missing.txt does not exist"),
        (("-i", "."), "--input-file: . is not a file"),
    ],
)
async def test_a_seed_list_that_cannot_be_read_is_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    result = await run_cli("crawl", *args, cwd=tmp_path)
    assert_one_line_error(result, 2, says)
    assert not (tmp_path / "output").exists()
