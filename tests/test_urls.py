"""URL normalisation, scope and traps: pure functions, no loop."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crawler.web.charsets import query_in, written_in
from crawler.web.urls import (
    Scope,
    _parsed_absolute,
    _plain_absolute,
    domain_key,
    host_of,
    is_trap,
    normalize,
    owner_of,
    resolver,
)


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
        # A "%" that starts no escape stays as it is, as browsers leave it.
        ("http://example.org/100%", "http://example.org/100%"),
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
        # Browsers skip any number of slashes after a special scheme.
        ("http:///nohost", "http://nohost/"),
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


# What browsers request for these links (the WHATWG URL Standard, as the
# web-platform-tests URL data has it), under the crawler's dedup rules.
# benchmarks/wpt_urls.py measures the whole http(s) part of that data.
BROWSER_CASES = {
    "backslash is a slash": ("\\x", "http://example.org/foo/bar", "http://example.org/x"),
    "backslashes after the scheme": ("http:\\\\foo.com\\", None, "http://foo.com/"),
    "backslash in a path": ("/a\\b", "http://example.org/", "http://example.org/a/b"),
    "other scheme, no slashes": (
        "https:example.com/",
        "http://example.org/",
        "https://example.com/",
    ),
    "same scheme, one slash": (
        "http:/example.com/",
        "http://example.org/",
        "http://example.org/example.com/",
    ),
    "three slashes": ("///test", "http://example.org/", "http://test/"),
    "scheme-relative": ("//foo/bar", "http://example.org/x", "http://foo/bar"),
    "a lone percent": ("foo%", "http://example.org/", "http://example.org/foo%"),
    "an invalid escape": ("%2z", "http://example.org/", "http://example.org/%2z"),
    "an invalid escape in the query": ("?%GH", "http://example.org/", "http://example.org/?%GH"),
    "IPv4 as one hex number": ("http://0xffffffff/", None, "http://255.255.255.255/"),
    "IPv4 with a hex part": ("http://192.0x00A80001/", None, "http://192.168.0.1/"),
    "IPv4 of hex dots": ("http://0x.0x.0/", None, "http://0.0.0.0/"),
    "IPv4 as a 32-bit number": ("http://256/", None, "http://0.0.1.0/"),
    "IPv4 out of range": ("http://256.256.256.256/", None, None),
    "IPv4 with an octal 8": ("http://1.2.3.08/", None, None),
    "a name ending in a number": ("http://foo.0x4/", None, None),
    "IPv6 with an IPv4 tail": ("http://[::127.0.0.1]/", None, "http://[::7f00:1]/"),
    "IPv6 zeros compressed": ("http://[1:0::]/", None, "http://[1::]/"),
    "IDNA 2008 sharp s": ("http://faß.example/", None, "http://xn--fa-hia.example/"),
    "a percent-encoded host": ("http://%e2%98%83/", None, "http://xn--n3h/"),
    "a soft hyphen in a host": ("http://ex\u00adample.org/", None, "http://example.org/"),
    "a forbidden host code point": ("http://a<b.org/", None, None),
    "userinfo with odd characters": ("http://&a:foo(b]c@d:2/", None, "http://d:2/"),
    "userinfo without slashes": ("http:a:b@www.example.com", None, "http://www.example.com/"),
    "an apostrophe in the query": ("?x='", "http://example.org/", "http://example.org/?x=%27"),
    "DEL in the query": ("?x=\x7f", "http://example.org/", "http://example.org/?x=%7F"),
    "tabs and newlines anywhere": ("http://example\t.\norg", None, "http://example.org/"),
}


@pytest.mark.parametrize(("href", "base", "expected"), BROWSER_CASES.values(), ids=BROWSER_CASES)
def test_links_resolve_as_browsers_resolve_them(
    href: str, base: str | None, expected: str | None
) -> None:
    assert normalize(href, base) == expected


# A link's query on a page in a character set other than UTF-8, as Chromium's
# a.href gives it: in that set, and a character it lacks as "&#N;"; the path and
# the fragment stay UTF-8, and so does a URL that is not special (mailto:).
QUERY_CHARSETS = {
    "windows-1252": (
        "cp1252",
        "/s?q=\u201cHi\u201d \u20ac caf\u00e9",
        "/s?q=%93Hi%94%20%80%20caf%E9",
    ),
    "a path stays UTF-8": ("cp1252", "/caf\u00e9?q=\u00e9", "/caf%C3%A9?q=%E9"),
    "the fragment stays UTF-8": ("cp1252", "/a#\u00e9?q=\u00e9", "/a"),
    "bytes of ASCII kept": ("gb18030", "/s?q=\u9555\u4e2d", "/s?q=%E9F%D6%D0"),
    "windows-31j": ("cp932", "/s?q=\u2460\u65e5", "/s?q=%87@%93%FA"),
    "ISO-2022-JP's escapes": ("iso2022_jp", "/s?q=\u65e5\u672c", "/s?q=%1B$BF|K\\%1B(B"),
    "characters the set lacks": (
        "cp932",
        "/s?q=\u65e5\u00e9\U0001f600",
        "/s?q=%93%FA%26%23233%3B%26%23128512%3B",
    ),
    "an absolute link": ("cp1251", "http://b.org/?q=\u041f", "http://b.org/?q=%CF"),
}


@pytest.mark.parametrize(("codec", "href", "expected"), QUERY_CHARSETS.values(), ids=QUERY_CHARSETS)
def test_a_query_is_written_in_the_pages_charset_as_browsers_write_it(
    codec: str, href: str, expected: str
) -> None:
    page = "http://a.org/dir/page"
    assert written_in(resolver(page), codec)(href) == normalize(expected, page)
    assert query_in("mailto:a@b.org?subject=\u00e9", codec) == "mailto:a@b.org?subject=\u00e9"


# Where the crawler parts from what a browser requests, on purpose (its dedup rules).
DELIBERATE = {
    # A host of dots is the DNS root: no site to request (browsers keep "http:///").
    "a host of dots": ("http://./", None),
    "a host of two dots": ("http://../", None),
    # One resource, two spellings: the dedup key drops what does not change it.
    "userinfo dropped": ("http://user:pass@a.org/", "http://a.org/"),
    "trailing dot dropped": ("http://a.org./", "http://a.org/"),
    "empty query dropped": ("http://a.org/x?", "http://a.org/x"),
    "unreserved escapes decoded": ("http://a.org/%7Euser", "http://a.org/~user"),
    "other escapes upper-cased": ("http://a.org/a%2fb", "http://a.org/a%2Fb"),
    "query parameters sorted": ("http://a.org/?b=1&a=2", "http://a.org/?a=2&b=1"),
    "fragment dropped": ("http://a.org/x#part", "http://a.org/x"),
}


@pytest.mark.parametrize(("href", "expected"), DELIBERATE.values(), ids=DELIBERATE)
def test_deliberate_departures_from_browsers(href: str, expected: str | None) -> None:
    assert normalize(href) == expected


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Example.ORG.", "example.org"),
        ("faß.de", "xn--fa-hia.de"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("a b.org", None),
        ("a.org/path", None),
        ("", None),
    ],
)
def test_allow_domain_is_normalised_as_hosts_are(domain: str, expected: str | None) -> None:
    assert domain_key(domain) == expected


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
@example("http://0..")  # the host without its dots is an IPv4 number: parsed again
def test_normalize_is_idempotent_on_url_like_text(text: str) -> None:
    url = normalize(text)
    if url is not None:
        assert normalize(url) == url
        assert host_of(url) == host_of(normalize(url) or "")


@given(
    st.from_regex(
        r"https?://[a-zA-Z0-9.\-]{1,12}(:[0-9]{0,6})?(/[a-zA-Z0-9._~!$&'()*+,;=:@/%?#-]{0,20})?",
        fullmatch=True,
    )
)
@example("http://127.0.0.1:12000/p/0.html")
@example("http://0177.0.0.1/")
@example("http://a.org:80/x")
@example("http://xn--a.org/")
def test_the_plain_absolute_shortcut_is_the_full_parse(text: str) -> None:
    """An absolute URL the shortcut takes (most of a broad crawl's links) comes out as
    the full parse (ada, then the crawl's rules) makes it."""
    plain = _plain_absolute(text)
    if plain is not None:
        assert plain == _parsed_absolute(text, True) == _parsed_absolute(text, False)


BASES = st.sampled_from(
    [
        "http://a.org/",
        "http://a.org/x/y.html",
        "http://a.org/x/y/",
        "https://b.org:8443/p/q?z=1&a=2",
        "http://[::1]:8080/d/e",
        "http://a.org",
    ]
)


@given(
    origin=st.sampled_from(
        [
            *("", "", "http://a.org", "https://b.org:8443", "http://[::1]:8080", "HTTP://a.org"),
            *("http://a.org:80", "http://A.org", "https://b.org:443", "http://a.org."),
        ]
    ),
    text=st.text(alphabet="./?#%:@ab09-_~'!$&()*+,;= \\\"<>{}é", max_size=24),
    base=BASES,
)
@example(origin="", text="..", base="http://a.org/x/y/")
@example(origin="", text="./", base="http://a.org/x/y.html")
@example(origin="", text="?", base="https://b.org:8443/p/q?z=1&a=2")
@example(origin="", text="a:b", base="http://a.org/x/y.html")
@example(origin="", text="", base="http://a.org")
@example(origin="", text="a #x", base="http://a.org/x/y.html")  # a space before "#": %20
@example(origin="http://a.org", text="//b.org/x", base="http://a.org/")
@example(origin="http://a.org", text="/../x/./y", base="http://a.org/")
def test_resolve_is_normalize_for_any_link(origin: str, text: str, base: str) -> None:
    """Any link, relative or absolute (to the page's origin or another, written as
    normalised or not), resolves to what normalize() makes of it."""
    link = origin + text
    page = normalize(base)
    assert page is not None
    assert resolver(page)(link) == normalize(link, page)
    assert resolver(page, sort_query=False)(link) == normalize(link, page, sort_query=False)
