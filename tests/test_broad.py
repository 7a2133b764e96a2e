"""Broad crawls: scope beyond the seeds' hosts (--span-hosts), on loopback hosts
127.0.0.1, 127.0.0.2 and 127.0.0.3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from conftest import Site, SiteFactory, html_page, read_jsonl
from test_cli import assert_one_line_error, run_cli


def _text(body: str) -> web.Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=body)

    return handler


def _page(links: list[str]) -> web.Handler:
    async def handler(request: web.Request) -> web.Response:
        return html_page(request.path, links)

    return handler


async def _three_hosts(serve: SiteFactory) -> tuple[Site, Site, Site]:
    """A links to B, B to C; each has a sitemap, B's robots.txt refuses /private."""
    c = await serve({"/": _page([]), "/sitemap.xml": _text("/never")}, host="127.0.0.3")
    b_links = ["/private", "/b2", c.url + "/"]
    b = await serve(
        {
            "/": _page(b_links),
            "/b2": _page([]),
            "/private": _page([]),
            "/robots.txt": _text("User-agent: *\nDisallow: /private\n"),
            "/sitemap.xml": _text("/never"),
        },
        host="127.0.0.2",
    )
    listed: list[str] = []

    async def sitemap(_: web.Request) -> web.Response:
        return web.Response(text="\n".join(listed))

    a = await serve({"/": _page([b.url + "/"]), "/listed": _page([]), "/sitemap.xml": sitemap})
    listed.append(a.url + "/listed")
    return a, b, c


async def test_span_hosts_follows_links_to_any_host_under_every_rule(
    serve: SiteFactory, tmp_path: Path
) -> None:
    a, b, c = await _three_hosts(serve)

    code, _, err = await run_cli(
        "crawl", a.url + "/", "-o", "wide", "-q", "--span-hosts", cwd=tmp_path
    )

    records = {record["url"]: record for record in read_jsonl(tmp_path / "wide" / "pages.jsonl")}
    assert code == 0, err
    fetched = {url for url, record in records.items() if record["status"] == 200}
    assert fetched == {a.url + "/", a.url + "/listed", b.url + "/", b.url + "/b2", c.url + "/"}
    assert records[b.url + "/private"]["error"] == "robots" and b.count("/private") == 0
    # Sitemaps: the seed's host only; B and C are crawled by their links.
    assert a.count("/sitemap.xml") == 1 and b.count("/sitemap.xml") == c.count("/sitemap.xml") == 0

    code, _, err = await run_cli("crawl", a.url + "/", "-o", "narrow", "-q", cwd=tmp_path)
    narrow = {record["url"] for record in read_jsonl(tmp_path / "narrow" / "pages.jsonl")}
    assert code == 0, err
    assert narrow == {a.url + "/", a.url + "/listed"} and b.count("/") == 1


async def test_a_resumed_crawl_keeps_span_hosts(serve: SiteFactory, tmp_path: Path) -> None:
    a, b, c = await _three_hosts(serve)
    flags = ("-o", "out", "-q", "--per-host", "1", "--concurrency", "1")
    code, _, err = await run_cli(
        "crawl", a.url + "/", *flags, "--span-hosts", "--max-pages", "2", cwd=tmp_path
    )
    assert code == 0, err

    code, _, err = await run_cli("crawl", *flags, "--resume", cwd=tmp_path)

    assert code == 0, err
    assert c.count("/") == 1 and b.count("/b2") == 1


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("*", "to follow links to any host, use --span-hosts"),
        ("*.example.org", "write 'example.org' (its subdomains come with it)"),
        (".example.org", "write 'example.org'"),
        ("exa mple.org", "not a domain name"),
        ("-bad.org", "not a domain name"),
    ],
)
async def test_an_allow_domain_that_is_no_domain_is_refused(
    tmp_path: Path, value: str, says: str
) -> None:
    result = await run_cli("crawl", "http://127.0.0.1:9/", f"--allow-domain={value}", cwd=tmp_path)
    assert_one_line_error(result, 2, says)


async def _two_hosts(serve: SiteFactory) -> tuple[Site, Site]:
    """A's front page links to 20 pages of its own and 20 of B's; those link nowhere."""
    b = await serve({"/{path:.*}": _page([])}, host="127.0.0.2")
    links = [f"/a/{n}" for n in range(20)] + [f"{b.url}/b/{n}" for n in range(20)]

    async def page(request: web.Request) -> web.Response:
        return html_page(request.path, links if request.path == "/" else [])

    a = await serve({"/{path:.*}": page})
    return a, b


def _pages_asked(site: Site) -> int:
    return sum(path not in ("/robots.txt", "/sitemap.xml") for path in site.requests)


@pytest.mark.parametrize("processes", [1, 2])
async def test_max_pages_per_host_stops_each_host_at_its_budget(
    serve: SiteFactory, tmp_path: Path, processes: int
) -> None:
    a, b = await _two_hosts(serve)
    flags = ("-o", "out", "-q", "--span-hosts", "--processes", str(processes))

    code, _, err = await run_cli(
        "crawl", a.url + "/", *flags, "--max-pages-per-host", "5", cwd=tmp_path
    )

    assert code == 0, err
    assert _pages_asked(a) == _pages_asked(b) == 5
    assert len(read_jsonl(tmp_path / "out" / "pages.jsonl")) == 10  # no record for a skipped page
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["finished"] and stats["queued"] == 0
    assert stats["budget_skipped"] == 41 - 10
    assert stats["budget_hosts"] == sorted(site.url.removeprefix("http://") for site in (a, b))
    report = (tmp_path / "out" / "report.html").read_text()
    assert "31 pages skipped on these hosts" in report


async def test_a_resumed_crawl_keeps_each_hosts_budget(serve: SiteFactory, tmp_path: Path) -> None:
    a, b = await _two_hosts(serve)
    flags = ("-o", "out", "-q", "--span-hosts", "--max-pages-per-host", "5", "--concurrency", "1")
    code, _, err = await run_cli("crawl", a.url + "/", *flags, "--max-pages", "3", cwd=tmp_path)
    assert code == 0, err

    code, _, err = await run_cli("crawl", *flags, "--resume", cwd=tmp_path)

    assert code == 0, err
    assert _pages_asked(a) == _pages_asked(b) == 5
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["pages"] == 10 and stats["budget_skipped"] == 31


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("check",), "--max-pages-per-host is for crawl"),
        (("crawl", "--frontier", "redis://127.0.0.1:9/0"), "not with --frontier"),
        (("crawl", "--max-pages-per-host", "0"), "must be greater than 0"),
    ],
)
async def test_max_pages_per_host_is_refused_where_it_cannot_hold(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    command, *rest = args
    flags = ("--max-pages-per-host", "5") if "--max-pages-per-host" not in rest else ()
    result = await run_cli(command, "http://127.0.0.1:9/", *flags, *rest, cwd=tmp_path)
    assert_one_line_error(result, 2, says)


async def test_one_host_split_between_processes_keeps_its_budget(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """A one-host crawl's URLs are split between the processes: each takes a share of
    the host's budget (3 and 2 of 5), so together they keep it."""
    a, b = await _two_hosts(serve)
    flags = ("-o", "out", "-q", "--processes", "2", "--max-pages-per-host", "5")

    code, _, err = await run_cli("crawl", a.url + "/", *flags, cwd=tmp_path)

    assert code == 0, err
    assert _pages_asked(a) == 5 and _pages_asked(b) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["budget_skipped"] == 21 - 5 and stats["finished"]


async def test_an_incremental_pass_has_each_hosts_budget_again(
    serve: SiteFactory, tmp_path: Path
) -> None:
    a, b = await _two_hosts(serve)
    flags = ("-o", "out", "-q", "--span-hosts", "--max-pages-per-host", "5")
    code, _, err = await run_cli("crawl", a.url + "/", *flags, cwd=tmp_path)
    assert code == 0, err

    code, _, err = await run_cli("crawl", *flags, "--incremental", cwd=tmp_path)

    assert code == 0, err
    assert _pages_asked(a) == _pages_asked(b) == 10
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["pages"] == 10 and stats["finished"]
