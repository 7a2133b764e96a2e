"""URL normalisation, scope and traps: pure functions, no loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.web.urls import Scope, host_of, is_trap, normalize, owner_of, remove_dot_segments


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://example.org", "http://example.org/"),
        ("HTTP://Example.ORG:80/a", "http://example.org/a"),
        ("https://example.org:443/a", "https://example.org/a"),
        ("https://example.org:8443/a", "https://example.org:8443/a"),
        ("http://example.org/a#frag", "http://example.org/a"),
        ("http://example.org/a/./b/../c", "http://example.org/a/c"),
        ("http://example.org/a/b/..", "http://example.org/a/"),
        ("http://example.org/%7Euser/%41", "http://example.org/~user/A"),
        ("http://example.org/a%2fb", "http://example.org/a%2Fb"),
        ("http://example.org/a b", "http://example.org/a%20b"),
        ("http://example.org/é", "http://example.org/%C3%A9"),
        ("http://example.org/100%", "http://example.org/100%25"),
        ("http://example.org/?b=2&a=1&a=0", "http://example.org/?a=0&a=1&b=2"),
        ("http://example.org/?", "http://example.org/"),
        ("http://example.org./", "http://example.org/"),
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("  http://example.org/\n", "http://example.org/"),
        ("mailto:a@example.org", None),
        ("javascript:alert(1)", None),
        ("ftp://example.org/", None),
        ("data:text/html,hi", None),
        ("file:///etc/passwd", None),
        ("http://example.org:99999/", None),
        ("http:///nohost", None),
        ("http://exa mple.org/", None),
        ("http://[::1/", None),
    ],
)
def test_normalize(raw: str, expected: str | None) -> None:
    assert normalize(raw) == expected


def test_query_order_is_kept_when_asked() -> None:
    assert normalize("http://a.org/?b=2&a=1", sort_query=False) == "http://a.org/?b=2&a=1"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("b", "http://a.org/x/b"),
        ("../b", "http://a.org/b"),
        ("/b?q", "http://a.org/b?q"),
        ("//other.org/p", "http://other.org/p"),
        ("?q=1", "http://a.org/x/y?q=1"),
        ("#top", "http://a.org/x/y"),
        ("", "http://a.org/x/y"),
    ],
)
def test_normalize_joins_relative_links(href: str, expected: str) -> None:
    assert normalize(href, "http://a.org/x/y") == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a/b/c/./../../g", "/a/g"), ("/..", "/"), ("/a/.", "/a/"), ("/a/b", "/a/b")],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


def test_scope_by_host_and_domain() -> None:
    scope = Scope(frozenset({"a.org"}), frozenset({"b.org"}))
    assert scope.allows("a.org")
    assert not scope.allows("sub.a.org")
    assert scope.allows("b.org") and scope.allows("deep.sub.b.org")
    assert not scope.allows("notb.org")
    assert host_of("http://a.org:8080/x") == "a.org"


def test_traps() -> None:
    assert is_trap("http://a.org/" + "x" * 3000)
    assert is_trap("http://a.org/a/a/a/a/")
    assert not is_trap("http://a.org/a/b/a/c/a/")


def test_owner_is_stable_across_processes() -> None:
    assert owner_of("example.org", 4) == 1  # the same in every process and run
    assert {owner_of(f"h{n}.org", 3) for n in range(30)} == {0, 1, 2}


@given(st.text(max_size=200))
def test_normalize_never_raises_and_is_idempotent(text: str) -> None:
    url = normalize(text, "http://example.org/dir/page")
    if url is not None:
        assert url.startswith(("http://", "https://"))
        assert normalize(url) == url


@given(st.from_regex(r"https?://[a-zA-Z0-9.\-]{1,20}(:[0-9]{1,5})?(/[ -~]{0,40})?", fullmatch=True))
def test_normalize_is_idempotent_on_url_like_text(text: str) -> None:
    url = normalize(text)
    if url is not None:
        assert normalize(url) == url
        assert host_of(url) == host_of(normalize(url) or "")
