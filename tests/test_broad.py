"""Broad crawls: scope beyond the seeds' hosts (--span-hosts), on loopback hosts
127.0.0.1, 127.0.0.2 and 127.0.0.3."""

from __future__ import annotations

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
