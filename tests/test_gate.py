"""The link gate (one decision for links, redirects and sitemaps) and the parse stage."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conftest import SiteFactory, read_jsonl, static_site
from crawler import CrawlConfig, crawl
from crawler.loop import parsing
from crawler.loop.gate import DROPPED, EXCLUDED, FOLLOWED, OFFSITE, LinkGate
from crawler.loop.parsing import BIG_PAGE_BYTES, ParseStage
from crawler.net.fetcher import Response
from crawler.stats import Tally

BASE = "http://a.test/dir/page.html"


def gate(**settings: object) -> tuple[LinkGate, Tally]:
    tally = Tally()
    config = CrawlConfig(seeds=("http://a.test/",), **settings)  # type: ignore[arg-type]
    return LinkGate(config, tally), tally


@pytest.mark.parametrize(
    ("link", "verdict"),
    [
        ("other.html", FOLLOWED),
        ("../a/b/a/b/c?q=1", FOLLOWED),
        ("/x/x/x/x/x", DROPPED),  # a trap
        ("mailto:someone@a.test", DROPPED),
        ("http://b.test/", OFFSITE),
        ("/private/x", EXCLUDED),
    ],
)
def test_one_verdict_per_url(link: str, verdict: str) -> None:
    links, tally = gate(deny=("*/private/*",))
    assert links.judge(link, BASE)[1] == verdict
    counted = (tally.dropped_links, tally.offsite_links, tally.excluded_links)
    expected = {
        FOLLOWED: (0, 0, 0),
        DROPPED: (1, 0, 0),
        OFFSITE: (0, 1, 0),
        EXCLUDED: (0, 0, 1),
    }
    assert counted == expected[verdict]


def test_a_pages_links_sorted_as_the_judge_would_and_links_to_itself_left_out() -> None:
    links, _ = gate(deny=("*/private/*",))
    written = [
        "#top",
        "",
        "page.html#s1",
        "other.html",
        "/x/x/x/x/x",
        "http://b.test/",
        "/private/x",
    ]
    written += ["../up.html?b=2&a=1", "mailto:someone@a.test", "other.html"]
    judged = links.sort(written, BASE, own=BASE)
    other, up = "http://a.test/dir/other.html", "http://a.test/up.html?a=1&b=2"
    assert judged.followed == [other, up, other]
    assert (judged.dropped, judged.offsite, judged.excluded) == (2, 1, 1)
    # Against another base (a <base> element), the page's own URL is a link like any other.
    assert links.sort(["#top", "page.html"], "http://a.test/", own=BASE).followed == [
        "http://a.test/",
        "http://a.test/page.html",
    ]
    assert links.sort(["#top"], BASE).followed == [BASE]


def test_sitemaps_are_read_in_scope_whatever_the_page_rules() -> None:
    links, _ = gate(allow=("*/docs/*",))
    assert links.sitemap("/sitemap.xml", BASE) == "http://a.test/sitemap.xml"
    assert links.sitemap("http://b.test/sitemap.xml", BASE) is None
    assert links.follow(["/sitemap.xml", "/docs/x"], BASE) == ["http://a.test/docs/x"]


async def test_a_redirect_obeys_deny_as_a_link_does(serve: SiteFactory, tmp_path: Path) -> None:
    async def moved(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/private/secret")

    routes = static_site({"/": ["/moved"], "/private/secret": []})
    routes["/moved"] = moved
    site = await serve(routes)

    stats = await crawl(
        CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, deny=("*/private/*",))
    )

    assert "/private/secret" not in site.requests
    records = {r["url"].removeprefix(site.url): r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records["/moved"]["status"] == 302
    assert records["/moved"]["final_url"] == site.url + "/private/secret"
    assert records["/moved"]["error"] is None
    assert stats.excluded_links == 1


def _response(body: bytes) -> Response:
    return Response(
        url=BASE,
        status=200,
        content_type="text/html",
        charset="utf-8",
        body=body,
        elapsed_ms=1,
    )


async def test_a_big_page_is_parsed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = parsing.parse_response

    def watched(response: Response, **options: Any) -> object:
        threads.append(threading.current_thread())
        return real(response, **options)

    monkeypatch.setattr(parsing, "parse_response", watched)
    links, tally = gate()
    stage = ParseStage(links, honour_nofollow=True)
    anchors = "".join(f'<a href="/p/{n}">{n}</a>' for n in range(BIG_PAGE_BYTES // 20))
    big = f"<html><body>{anchors}<a href='http://b.test/'>x</a></body></html>".encode()

    small = await stage.parse(_response(b"<a href='/x'>x</a>"))
    parsed = await stage.parse(_response(big))

    assert small.follow == ["http://a.test/x"]
    assert threads[0] is threading.main_thread()
    assert threads[1] is not threading.main_thread()
    assert len(parsed.follow) == BIG_PAGE_BYTES // 20
    assert tally.offsite_links == 1  # counted back on the loop
