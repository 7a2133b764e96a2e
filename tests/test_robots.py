"""robots.txt policy from a fetch outcome (RFC 9309): pure, no loop."""

from __future__ import annotations

import gzip

import pytest

from crawler.web import sitemaps
from crawler.web.robots import MAX_ROBOTS_BYTES, SHARED_BODY_BYTES, policy_from
from crawler.web.sitemaps import MAX_SITEMAP_URLS, parse_sitemap

UA = "crawler/0.1 (test)"
RULES = b"User-agent: *\nDisallow: /private/\nCrawl-delay: 1.5\nSitemap: http://a.org/s.xml\n"


def test_rules_are_obeyed() -> None:
    policy = policy_from(200, RULES, UA)
    assert policy.allows("http://a.org/public")
    assert not policy.allows("http://a.org/private/x")
    assert policy.crawl_delay() == 1.5
    assert policy.sitemaps() == ("http://a.org/s.xml",)


def test_rules_for_our_agent_win() -> None:
    body = b"User-agent: *\nDisallow: /\n\nUser-agent: crawler\nDisallow: /no\n"
    policy = policy_from(200, body, UA)
    assert policy.allows("http://a.org/yes")
    assert not policy.allows("http://a.org/no")


@pytest.mark.parametrize(
    ("status", "failure", "allows", "reason"),
    [
        (404, None, True, None),
        (403, None, True, None),
        (310, None, True, None),
        (500, None, False, "robots-unavailable"),
        (503, None, False, "robots-unavailable"),
        (None, "timeout", False, "timeout"),
        (None, "dns", False, "dns"),
    ],
)
def test_status_semantics(
    status: int | None, failure: str | None, allows: bool, reason: str | None
) -> None:
    policy = policy_from(status, b"User-agent: *\nDisallow: /\n", UA, failure)
    assert policy.allows("http://a.org/x") is allows
    assert policy.refuse_all == reason


def test_hosts_that_serve_the_same_small_robots_txt_share_its_policy() -> None:
    """A broad crawl meets the same few robots.txt on thousands of hosts: one parsed
    policy (about 1 KB) each, not one a host (benchmarks/hosts_memory.py)."""
    assert policy_from(200, bytes(RULES), UA) is policy_from(200, bytes(RULES), UA)
    assert policy_from(200, RULES, UA) is not policy_from(200, RULES + b"\n# another", UA)
    assert policy_from(200, RULES, UA) is not policy_from(200, RULES, "another-agent")
    big = RULES + b"#" * SHARED_BODY_BYTES
    assert policy_from(200, big, UA) is not policy_from(200, big, UA)  # never kept
    assert policy_from(404, b"", UA) is policy_from(410, b"x", UA)


def test_garbage_and_huge_bodies() -> None:
    assert policy_from(200, bytes(range(256)) * 100, UA).allows("http://a.org/x")
    late_rule = b"User-agent: *\n" + b"#" * MAX_ROBOTS_BYTES + b"\nDisallow: /\n"
    assert policy_from(200, late_rule, UA).allows("http://a.org/x")


def test_a_gzip_bomb_sitemap_is_read_to_its_cap_and_no_further() -> None:
    entry = b"<url><loc>http://a.test/p</loc></url>"
    xml = b"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>" + entry * 2_000_000
    bomb = gzip.compress(xml + b"</urlset>", 9)  # 215 KB that inflate to 74 MB

    sitemap = parse_sitemap(bomb)

    # Read as a stream and stopped at the cap: the rest was never inflated.
    assert len(sitemap.pages) == MAX_SITEMAP_URLS and sitemap.error is None


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_sitemap_is_parsed_a_bounded_chunk_at_a_time(gzipped: bool) -> None:
    """lxml builds the tree of all it is fed at once: a 12 MB sitemap fed whole cost
    215 MB before its elements could be dropped."""
    xml = b"<urlset>" + b"".join(b"<url><loc>http://a/%d</loc></url>" % n for n in range(60_000))
    body = gzip.compress(xml) if gzipped else xml

    chunks = [chunk for chunk, _ in sitemaps._chunks(body)]

    assert max(len(chunk) for chunk in chunks) <= sitemaps._CHUNK < len(xml) // 10
    assert b"".join(chunks) == xml
    assert len(parse_sitemap(body).pages) == MAX_SITEMAP_URLS


@pytest.mark.parametrize("gzipped", [False, True])
def test_sitemaps_as_text_and_xml_stream_alike(gzipped: bool) -> None:
    def body(text: bytes) -> bytes:
        return gzip.compress(text) if gzipped else text

    assert parse_sitemap(body(b"http://a/1\r\n\nhttp://a/2")).pages == ("http://a/1", "http://a/2")
    index = b"<sitemapindex><sitemap><loc> http://a/s.xml </loc></sitemap></sitemapindex>"
    assert parse_sitemap(body(index)).sitemaps == ("http://a/s.xml",)
    assert parse_sitemap(body(b"<html><p>no</p></html>")).error == "bad-sitemap"
