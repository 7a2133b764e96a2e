"""HTML parsing and decoding: pure functions on tricky bytes, no loop."""

from __future__ import annotations

import codecs
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.loop.parsing import page_refs
from crawler.web import parser
from crawler.web.appshell import app_shell
from crawler.web.parser import decode_html, header_directives, parse_html
from crawler.web.refs import PageAnchors, Ref

URL = "http://a.org/dir/page"


def test_title_links_and_base() -> None:
    page = parse_html(
        b"<html><head><base href='/base/'><title>  Two\n words </title></head>"
        b"<body><a href='x'>x</a><area href='y'><iframe src='f'></iframe><a>no href</a>"
        b"<a href=''>empty</a></body></html>",
        URL,
        None,
    )
    assert page.title == "Two words"
    assert page.base == "http://a.org/base/"
    assert page.links == ("x", "y", "f")


def test_nofollow_links_and_meta_robots() -> None:
    page = parse_html(b"<a rel='external nofollow' href='a'></a><a href='b'></a>", URL, None)
    assert page.links == ("b",)
    page = parse_html(b"<meta name='robots' content='NoFollow'><a href='b'></a>", URL, None)
    assert page.nofollow and page.links == ()
    page = parse_html(b"<meta name='robots' content='noindex'><a href='b'></a>", URL, None)
    assert page.noindex and page.links == ("b",)
    page = parse_html(b"<meta name='robots' content='none'><a href='b'></a>", URL, None)
    assert page.noindex and page.nofollow


def test_x_robots_tag_header() -> None:
    assert header_directives("noindex, nofollow") == {"noindex", "nofollow"}
    assert header_directives("googlebot: nofollow") == set()
    assert header_directives(None) == set()


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        ("<p>é</p>".encode(), "utf-8", "é"),
        ("<p>é</p>".encode("latin-1"), "iso-8859-1", "é"),
        ("<meta charset='shift_jis'><p>日本</p>".encode("shift_jis"), None, "日本"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251"><p>Ж</p>'.encode(
                "cp1251"
            ),
            None,
            "Ж",
        ),
        ("<p>é</p>".encode("utf-16"), None, "é"),
        (codecs.BOM_UTF8 + "<p>é</p>".encode(), "latin-1", "é"),
        # The header lies (says UTF-8, bytes are Latin-1): the meta is tried next.
        ("<meta charset='latin-1'><p>é</p>".encode("latin-1"), "utf-8", "é"),
        # An unknown charset name falls through to UTF-8.
        ("<p>é</p>".encode(), "no-such-charset", "é"),
    ],
)
def test_decoding_order(body: bytes, header: str | None, expected: str) -> None:
    assert expected in decode_html(body, header)


# Each title as Chromium shows it (read from its DOM, served with these bytes).
BROWSER_CHARSETS = {
    "latin-1 is windows-1252": ("iso-8859-1", "\u201cHi\u201d \u20ac caf\u00e9", "cp1252"),
    "us-ascii is windows-1252": ("us-ascii", "caf\u00e9 \u201cq\u201d", "cp1252"),
    "gb2312 is gb18030": ("gb2312", "\u9555\u4e2d", "gbk"),
    "shift_jis is windows-31j": ("shift_jis", "\u2460\u65e5", "cp932"),
    "euc-kr is windows-949": ("euc-kr", "\ud4db", "cp949"),
    "big5 is big5-hkscs": ("big5", "\u4e2d\u6587\u7881", "big5hkscs"),
    "tis-620 is windows-874": ("tis-620", "\u0e01\u20ac", "cp874"),
    "iso-8859-8-i, unknown to Python": ("iso-8859-8-i", "\u05d0", "iso-8859-8"),
    "iso-8859-9 is windows-1254": ("iso-8859-9", "\u011f\u2122", "cp1254"),
    "a meta's utf-16 is utf-8": ("utf-16", "caf\u00e9", "utf-8"),
    "utf-7, a label no browser knows": ("utf-7", "+AGEAYgBj-", "ascii"),
    "x-mac-cyrillic, unknown to Python": ("x-mac-cyrillic", "\u0416", "mac-cyrillic"),
}


@pytest.mark.parametrize(
    ("label", "title", "written"), BROWSER_CHARSETS.values(), ids=BROWSER_CHARSETS
)
def test_a_charset_label_is_read_as_browsers_read_it(label: str, title: str, written: str) -> None:
    body = f'<meta charset="{label}"><title>{title}</title>'.encode(written)
    assert parse_html(body, URL, None).title == title
    header = f"<title>{title}</title>".encode(written)
    if label != "utf-16":  # a header's utf-16 is UTF-16
        assert parse_html(header, URL, label).title == title


def test_a_meta_refresh_is_a_link_to_follow() -> None:
    """As wget and Scrapy follow it, and a browser goes there: a site whose home page
    is a refresh to /home is crawled past it."""
    refresh = b'<meta http-equiv="Refresh" content="0; url=/home"><a href=/a>a</a>'
    assert parse_html(refresh, URL, None).links == ("/home", "/a")
    assert parse_html(b'<meta http-equiv=refresh content="30">', URL, None).links == ()
    nofollow = b'<meta name=robots content=nofollow><meta http-equiv=refresh content="0;/x">'
    assert parse_html(nofollow, URL, None).links == ()


def test_links_are_found_in_shift_jis_and_utf16_pages() -> None:
    sjis = "<meta charset='shift_jis'><title>日本語</title><a href='/ページ'>x</a>".encode(
        "shift_jis"
    )
    page = parse_html(sjis, URL, None)
    assert page.title == "日本語" and page.links == ("/ページ",)
    utf16 = "<title>t</title><a href='/ü'>x</a>".encode("utf-16")
    assert parse_html(utf16, URL, None).links == ("/ü",)


def test_broken_and_hostile_html() -> None:
    deep = b"<div>" * 50_000 + b"<a href='/deep'>x</a>"
    assert parse_html(deep, URL, None).links == ("/deep",)
    garbage = bytes(range(256)) * 20 + b"<a href='/g'>\x00x</a>"
    assert parse_html(garbage, URL, "utf-8").links == ("/g",)
    unclosed = b"<html><title>t<a href='/u'>x<a href=/v>y"
    assert parse_html(unclosed, URL, None).title is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([None, "utf-8", "latin-1", "utf-16", "bogus"]))
def test_parser_never_raises(body: bytes, charset: str | None) -> None:
    page = parse_html(body, URL, charset)
    assert isinstance(page.links, tuple)


PIECES = [
    "<a href='/a'>a</a>",
    "<a rel=nofollow href='/n'>n</a>",
    "<area href='/m'>",
    "<title>T <b>i</b></title>",
    "<base href='/b/'>",
    "<meta name=robots content='noindex'>",
    "<iframe src='/f'></iframe>",
    "<img src='/i.png' srcset='/s1.png 1x, /s2.png 2x'>",
    "<picture><source srcset='/p.webp'></picture>",
    "<style>a{b:url(/c.png)}</style>",
    "<p style='background:url(/d.png)' id='x'>t</p>",
    "<a name='anchor'>",
    "<div><span id='deep'><a href='/in'>in</a></span></div>",
    "<table><tr><td background='/bg.png'>",
    "<link rel=stylesheet href='/s.css'>",
    "<script src='/j.js'></script>",
    "<!-- <a href='/comment'> -->",
    "<meta http-equiv=refresh content='0; url=/r'>",
    "\n",
    "text & more",
    "<ul><li>1<li>2</ul>",
    "</div>",
    "<p>",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40), st.sampled_from(["utf-8", "latin-1", None]))
def test_a_big_page_streamed_reads_as_its_tree_does(pieces: list[str], charset: str | None) -> None:
    """Pages from STREAM_BYTES up are parsed as a stream, each element dropped once read
    (bounded memory); what is read is the same as from the whole tree (order aside for
    elements inside one another: a stream sees an element when it ends)."""
    body = ("<html><head></head><body>" + "".join(pieces) + "é</body></html>").encode(
        charset or "utf-8"
    )
    for refs in (page_refs, PageAnchors, None):
        whole = parse_html(body, URL, charset, refs=refs)
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(parser, "STREAM_BYTES", 0)
            streamed = parse_html(body, URL, charset, refs=refs)
        assert (streamed.title, streamed.base, streamed.nofollow, streamed.noindex) == (
            whole.title,
            whole.base,
            whole.nofollow,
            whole.noindex,
        )
        assert Counter(streamed.links) == Counter(whole.links)
        assert Counter(streamed.refs) == Counter(whole.refs)
        assert sorted(streamed.anchors.split("\0")) == sorted(whole.anchors.split("\0"))


@pytest.mark.parametrize(
    ("unclosed", "times", "padding"),
    [
        ("<font color=red>", 300, 0),  # old pages that never close a tag
        ("<table><tr><td>", 100, 0),  # layout tables in tables
        ("<div>", 3_000, 0),  # deeper than libxml2 builds at all: read again
        ("<span>", 2_000, 600_000),  # a big page, read as a stream
    ],
)
def test_a_page_deeper_than_libxml2_builds_keeps_every_link(
    unclosed: str, times: int, padding: int
) -> None:
    # libxml2 stopped at 256 open elements: every link after the 253rd was lost.
    links = "\n".join(f"{unclosed}<a href='/p/{n}'>{n}</a>" for n in range(times))
    body = f"<html><head><title>deep</title></head><body>\n{links}\n<a href='/last'>last</a>"
    page = parse_html((body + " " * padding).encode(), URL, None, refs=page_refs)
    assert page.title == "deep" and len(page.links) == times + 1 and page.links[-1] == "/last"
    assert [ref.written for ref in page.refs] == list(page.links)
    assert [ref.line for ref in page.refs] == list(range(2, times + 3))  # where each is


def test_a_big_page_of_many_links_is_read_whole() -> None:
    links = "".join(f"<a href='/p/{n}'>{n}</a>\n" for n in range(40_000))
    body = f"<html><head><title>big</title></head><body>{links}<a href='/last'></a></body></html>".encode()
    assert len(body) >= parser.STREAM_BYTES
    page = parse_html(body, URL, None, refs=page_refs)
    assert page.title == "big" and len(page.links) == 40_001 and page.links[-1] == "/last"
    assert page.refs[-1] == Ref("/last", 40_001, "link")


@pytest.mark.parametrize(
    ("body", "links", "reason"),
    [
        (b'<div id="root"></div><script src="/app.js"></script>', 0, "empty-mount"),
        (b"<div id=app> </div>" + b"<a href=x>x</a>" * 6, 6, "empty-mount"),
        (b"<app-root></app-root><script src=main.js></script>", 0, "empty-mount"),
        (b'<div id="root"><h1>Server-rendered</h1></div>' + b"<a href=x>x</a>" * 6, 6, None),
        (b"<noscript>You need to enable JavaScript to run this app.</noscript>", 0, "noscript"),
        (b"<script src=bundle.js></script><p>Loading</p>", 0, "only-scripts"),
        (b"<p>" + b"Plain words to read. " * 10 + b"</p><a href=a>a</a>", 1, None),
        # Five links and no mount point: not read again, whatever else it holds.
        (b"<noscript>enable JavaScript</noscript>" + b"<a href=x>x</a>" * 5, 5, None),
        (b"<div id=rooted></div><div id=Root></div>" + b"<a href=x>x</a>" * 5, 5, None),
        (b"", 0, None),
        (b"\x00\xff\xfe", 0, None),
    ],
)
def test_app_shells_are_told_by_their_evidence(body: bytes, links: int, reason: str | None) -> None:
    assert app_shell(body, links) == reason
