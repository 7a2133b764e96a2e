"""robots.txt policy from a fetch outcome (RFC 9309): pure, no loop."""

from __future__ import annotations

import pytest

from crawler.web.robots import MAX_ROBOTS_BYTES, policy_from

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


def test_garbage_and_huge_bodies() -> None:
    assert policy_from(200, bytes(range(256)) * 100, UA).allows("http://a.org/x")
    late_rule = b"User-agent: *\n" + b"#" * MAX_ROBOTS_BYTES + b"\nDisallow: /\n"
    assert policy_from(200, late_rule, UA).allows("http://a.org/x")
