"""Extractors and link rules: the library, the command line, and the examples."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SiteFactory, read_jsonl, reaped, run_process, static_site
from crawler import CrawlConfig, Crawler, Item, Page, PageRecord, crawl
from crawler.errors import ConfigError
from crawler.extract import LinkRules
from test_cli import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parent.parent
SITE = {
    "/": ["/docs/a", "/docs/b", "/blog/x"],
    "/docs/a": ["/docs/c"],
    "/docs/b": [],
    "/docs/c": [],
    "/blog/x": [],
}


def titles(page: Page) -> Iterator[dict[str, Any]]:
    yield {"url": page.url, "title": page.soup.title.string if page.soup.title else None}


async def async_titles(page: Page) -> list[dict[str, Any]]:
    await asyncio.sleep(0)
    return [{"url": page.url, "length": len(page.text)}]


def docs_only(page: Page) -> None:
    page.follow = [url for url in page.follow if "/docs/" in url]


def fails_on_b(page: Page) -> list[dict[str, Any]]:
    if page.url.endswith("/docs/b"):
        raise ValueError("cannot handle b")
    return [{"url": page.url}]


@pytest.mark.parametrize("extractor", [titles, async_titles])
async def test_items_reach_the_iterator_and_items_jsonl(
    serve: SiteFactory, tmp_path: Path, extractor: Any
) -> None:
    site = await serve(static_site(SITE))
    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, extract=extractor)

    async with Crawler(config) as crawler:
        seen = [record async for record in crawler]

    items = [record for record in seen if isinstance(record, Item)]
    assert len(items) == 5 and crawler.stats().items == 5
    assert {item.url for item in items} == {
        record.url for record in seen if isinstance(record, PageRecord)
    }
    written = read_jsonl(tmp_path / "items.jsonl")
    assert sorted(item["url"] for item in written) == sorted(item.url for item in items)
    if extractor is titles:
        assert {item["title"] for item in written} == set(SITE)


async def test_an_extractor_chooses_the_links_to_follow(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))

    stats = await crawl(
        CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, extract=docs_only)
    )

    assert stats.pages == 4
    assert site.count("/blog/x") == 0


async def test_an_extractor_that_raises_fails_only_its_page(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site(SITE))

    stats = await crawl(
        CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, extract=fails_on_b)
    )

    records = {r["url"].removeprefix(site.url): r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records["/docs/b"]["error"] == "extractor-failed"
    assert records["/docs/b"]["status"] == 200
    assert stats.pages == 5 and stats.items == 4


async def test_link_rules(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))
    seed = site.url + "/"

    allowed = await crawl(
        CrawlConfig(seeds=(seed,), output_dir=tmp_path / "a", allow=(site.url + "/docs/*",))
    )
    denied = await crawl(
        CrawlConfig(seeds=(seed,), output_dir=tmp_path / "d", deny=("re:/docs/[ab]$",))
    )
    filtered = await crawl(CrawlConfig(seeds=(seed,), link_filter=lambda url: "blog" not in url))

    assert allowed.pages == 4 and allowed.excluded_links == 1
    assert denied.pages == 2  # "/" and /blog/x; /docs/c is only linked from /docs/a
    assert filtered.pages == 4


def test_link_rule_patterns() -> None:
    rules = LinkRules(("https://a.org/docs/*", "re:\\?page=\\d+$"), ("*.pdf",), None)
    assert rules.admits("https://a.org/docs/x/y")
    assert rules.admits("https://a.org/list?page=2")
    assert not rules.admits("https://a.org/docs/x.pdf")
    assert not rules.admits("https://b.org/docs/x")
    with pytest.raises(ConfigError, match="bad link pattern"):
        LinkRules(("re:(",), (), None)


async def test_extract_from_the_command_line(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))
    (tmp_path / "myextractors.py").write_text(
        "def headings(page):\n    yield {'url': page.url, 'h': len(page.soup.find_all('a'))}\n"
    )
    code, _, err = await run_cli(
        "crawl",
        site.url + "/",
        "--output",
        "out",
        "--quiet",
        "--extract",
        "myextractors:headings",
        "--deny",
        "*/blog/*",
        cwd=tmp_path,
    )
    assert code == 0, err
    items = read_jsonl(tmp_path / "out" / "items.jsonl")
    assert len(items) == 4 and {item["h"] for item in items} >= {3}

    result = await run_cli("crawl", site.url + "/", "--extract", "nosuchmodule:x", cwd=tmp_path)
    assert_one_line_error(result, 2, "cannot import extractor module 'nosuchmodule'")
    result = await run_cli("crawl", site.url + "/", "--extract", "myextractors", cwd=tmp_path)
    assert_one_line_error(result, 2, "--extract wants package.module:function")


async def run_example(*args: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    async with reaped(process):
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_example_broken_links(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/ok", "/missing"], "/ok": ["/missing"]}))
    code, out = await run_example(
        str(REPO / "examples" / "broken_links.py"), site.url + "/", cwd=tmp_path
    )
    assert code == 1, out
    assert f"404 {site.url}/missing\n    linked from {site.url}/ line 1\n" in out
    assert f"    linked from {site.url}/ok line 1\n" in out  # every referrer, not the first


async def test_example_scrape_titles(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(
        static_site(
            {"/": ["/page/1", "/other"], "/page/1": ["/page/2"], "/page/2": [], "/other": []}
        )
    )
    code, out = await run_example(
        str(REPO / "examples" / "scrape_titles.py"), site.url + "/", "out", cwd=tmp_path
    )
    assert code == 0, out
    items = read_jsonl(tmp_path / "out" / "items.jsonl")
    assert sorted(item["title"] for item in items) == ["/", "/page/1", "/page/2"]
    assert all(item["headings"] == [] for item in items)


async def test_example_embed(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    code, out = await run_example(str(REPO / "examples" / "embed.py"), site.url + "/", cwd=tmp_path)
    assert code == 0, out
    assert "pages by status: {200: 2}" in out
    assert "heartbeat ran" in out


async def test_an_extractor_given_by_its_file(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site(SITE))
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "mine.py").write_text("def title(page):\n    yield {'u': page.url}\n")
    for spec in ("tools/mine.py:title", str(tmp_path / "tools" / "mine.py") + ":title"):
        code, _, err = await run_cli(
            "crawl", site.url + "/", "-o", "out", "-q", "--extract", spec, cwd=tmp_path
        )
        assert code == 0, err
        assert len(read_jsonl(tmp_path / "out" / "items.jsonl")) == len(SITE)
    result = await run_cli("crawl", site.url + "/", "--extract", "tools/none.py:x", cwd=tmp_path)
    assert_one_line_error(result, 2, "cannot import extractor module 'tools/none.py'")


async def test_the_working_folder_lends_the_extractor_only(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """The crawler as installed (its console script, not python -m, which puts the folder
    first itself): a module the folder holds is never imported in place of a missing
    optional one (bs4 looks for cchardet), nor of an installed one."""
    site = await serve(static_site(SITE))
    planted = "open('PLANTED', 'a').write(__name__ + '\\n')\n"
    for name in ("cchardet", "chardet", "lxml", "aiohttp"):
        (tmp_path / f"{name}.py").write_text(planted)
    (tmp_path / "mine.py").write_text(
        "def links(page):\n    yield {'n': len(page.soup.find_all('a'))}\n"
    )
    script = Path(sys.executable).parent / "crawler"
    code, _, err = await run_process(
        str(script), "crawl", site.url + "/", "-o", "out", "-q", "--extract", "mine:links",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert len(read_jsonl(tmp_path / "out" / "items.jsonl")) == len(SITE)
    assert not (tmp_path / "PLANTED").exists(), (tmp_path / "PLANTED").read_text()
