"""web/refs.py: the links and requisites crawler check reads from a page, pure."""

from __future__ import annotations

import pytest

from crawler.loop.parsing import page_refs
from crawler.web.parser import STREAM_BYTES, parse_html, refresh_target
from crawler.web.refs import PageAnchors, Ref, Refs, css_refs, srcset_urls


@pytest.mark.parametrize(
    ("srcset", "urls"),
    [
        ("a.png", ["a.png"]),
        ("a.png 1x, b.png 2x", ["a.png", "b.png"]),
        ("a.png 480w,b.png 800w", ["a.png", "b.png"]),
        ("a.png,b.png", ["a.png,b.png"]),  # as browsers: a URL is all non-whitespace
        ("a.png, b.png", ["a.png", "b.png"]),  # a trailing comma ends it
        ("  a.png  1x ,\n b.png 2x  ", ["a.png", "b.png"]),
        ("data:image/png;base64,AAAA 1x, b.png 2x", ["data:image/png;base64,AAAA", "b.png"]),
        ("a.png (min-width: 2px, 3px) 1x, b.png", ["a.png", "b.png"]),
        ("", []),
        (",,,", []),
    ],
)
def test_srcset(srcset: str, urls: list[str]) -> None:
    assert srcset_urls(srcset) == urls


def test_css_urls_with_their_lines_and_no_comment() -> None:
    css = (
        "a{b:url(one.png)}\n/* url(commented.png)\n */\nb{c:url( \"two.png\" )}\nd{e:URL('three')}"
    )
    assert css_refs(css, 10) == [
        Ref("one.png", 10, "css"),
        Ref("two.png", 13, "css"),
        Ref("three", 14, "css"),
    ]
    assert css_refs("a{b:url()}") == []


@pytest.mark.parametrize(
    ("content", "target"),
    [
        ("5; url=/next", "/next"),
        ("0;URL='https://example.org/'", "https://example.org/"),
        ("3, http://a/", "http://a/"),
        ("10", None),
        ("", None),
        # HTML's declarative refresh: a time first (digits, or a dot), or no refresh
        ("url=/no-time", None),
        ("5x; url=/bad-time", None),
        (".5;url=/dot", "/dot"),
        ("0 url=/a;b", "/a;b"),
        ("0; url=/it's", "/it's"),  # a quote ends only a quoted URL
        ('1;url="/quoted"trail', "/quoted"),
        ("0;urlx=/y", "urlx=/y"),  # "url" without "=" is the URL itself
        ("0; url=", None),
    ],
)
def test_meta_refresh(content: str, target: str | None) -> None:
    assert refresh_target(content) == target


def test_every_kind_of_requisite_with_its_line() -> None:
    html = b"""<html><head>
<link rel="stylesheet" href="s.css"><link rel="icon" href="i.ico">
<link rel="preload" href="f.woff2"><link rel="manifest" href="m.json">
<link rel="canonical" href="canonical.html"><link rel="dns-prefetch" href="//cdn.example">
<script src="j.js"></script>
<meta http-equiv="refresh" content="5; url=next.html">
<style>
.x { background: url(bg.png) }
</style>
</head><body id="top" background="bg.gif">
<a href="a.html" rel="nofollow">a</a><a name="n1"></a><area href="area.html">
<img src="i.png" srcset="i2.png 2x"><picture><source srcset="p.webp"></picture>
<video src="v.mp4" poster="poster.jpg"><source src="v.webm"><track src="t.vtt"></video>
<audio src="a.mp3"></audio><object data="o.pdf"></object><embed src="e.swf">
<iframe src="f.html"></iframe><input type="image" src="submit.png">
<div style="background-image: url('d.png')" id="d1"></div>
<blockquote cite="source.html">quoted</blockquote>
<svg><a xlink:href="svg-a.html"><text>t</text></a><use href="icons.svg#menu"></use>
<image xlink:href="svg.png"></image><filter><feImage href="fe.png"/></filter></svg>
</body></html>"""
    page = parse_html(html, "http://h/", None, refs=page_refs)
    found = {(ref.written, ref.kind, ref.line) for ref in page.refs}
    assert found == {
        ("s.css", "stylesheet", 2),
        ("i.ico", "icon", 2),
        ("f.woff2", "preload", 3),
        ("m.json", "manifest", 3),
        ("canonical.html", "link", 4),
        ("j.js", "script", 5),
        ("next.html", "refresh", 6),
        ("bg.png", "css", 8),
        ("a.html", "link", 11),
        ("area.html", "link", 11),
        ("i.png", "image", 12),
        ("i2.png", "image", 12),
        ("p.webp", "image", 12),
        ("v.mp4", "media", 13),
        ("poster.jpg", "image", 13),
        ("v.webm", "media", 13),
        ("t.vtt", "media", 13),
        ("a.mp3", "media", 14),
        ("o.pdf", "object", 14),
        ("e.swf", "object", 14),
        ("f.html", "frame", 15),
        ("submit.png", "image", 15),
        ("d.png", "css", 16),
        ("bg.gif", "image", 10),
        ("source.html", "link", 17),
        ("svg-a.html", "link", 18),
        ("icons.svg#menu", "image", 18),
        ("svg.png", "image", 19),
        ("fe.png", "image", 19),
    }
    assert page.anchors == "\0top\0n1\0d1\0"
    # The crawl still honours nofollow; it follows an SVG link and a refresh as a
    # browser does.
    assert page.links == ("next.html", "area.html", "f.html", "svg-a.html")


def test_without_a_reader_nothing_more_is_read() -> None:
    page = parse_html(b'<img src="i.png"><p id="x">', "http://h/", None)
    assert page.refs == () and page.anchors == ""


def test_anchors_alone_are_those_of_every_link_read() -> None:
    html = b'<body id="top"><a name="n1"></a><h2 id="s1"><a href="x" id="">x</a></h2></body>'
    everything = parse_html(html, "http://h/", None, refs=page_refs)
    alone = parse_html(html, "http://h/", None, refs=PageAnchors)
    assert sorted(alone.anchors.split("\0")) == sorted(everything.anchors.split("\0"))
    assert alone.refs == ()


@pytest.mark.parametrize(
    "hostile",
    [
        "url(" * 200_000,  # each url( ran to the end of the text
        'url("' * 200_000,
        "url('" * 100_000 + 'url("' * 100_000,
        "url(" + " " * 1_000_000,  # a whitespace run split two ways by the old pattern
        "/*" * 200_000,  # unclosed comments
        'url("\n' * 200_000 + '"',
    ],
    ids=["url(", "url-dquote", "mixed-quotes", "spaces", "comments", "lines"],
)
def test_hostile_stylesheets_are_read_in_linear_time(hostile: str) -> None:
    """Each of these took minutes to hours (quadratic); now a few milliseconds. No clock
    is asserted: pytest-timeout fails the test if the reading goes quadratic again."""
    assert css_refs(hostile) == []
    after = hostile + "*/\na{b:url(x.png)}"  # */ closes the comments
    assert css_refs(after) == [Ref("x.png", hostile.count("\n") + 2, "css")]


def test_a_big_ordinary_stylesheet_keeps_every_url_with_its_line() -> None:
    text = "".join(f'.c{n} {{ background: url("img/{n}.png") }}\n' for n in range(40_000))
    found = css_refs(text, first_line=3)
    assert len(found) == 40_000
    assert found[-1] == Ref("img/39999.png", 40_002, "css")
    assert css_refs("a{b:url( 'x' )} /* url(no) */ c{d:URL(\"y\")} e{f:url(a(b))}") == [
        Ref("x", 1, "css"),
        Ref("y", 1, "css"),
    ]


@pytest.mark.parametrize("big", [False, True])
def test_the_line_is_where_the_tag_starts(big: bool) -> None:
    """lxml says where a start tag ends; a link checker names where it starts (as
    LinkChecker's and lychee's test data do), however the tag is spread over lines."""
    page = (
        "<html><body>\n"  # 1
        '<a\n  class="x"\n  href="/multi">t</a> <a href="/same">s</a>\n'  # 2-4
        '<IMG\n SRC="/pic.png"\n>\n'  # 5-7
        '<a href="/q?a=1&amp;b=2"\n>entity</a>\n'  # 8-9
        '<link rel="stylesheet"\n\n href="/site.css">\n'  # 10-12
    )
    padding = "<p>x</p>\n" * (STREAM_BYTES // 9 + 1) if big else ""
    body = (page + padding + "</body></html>").encode()
    lines = {
        ref.written: ref.line for ref in parse_html(body, "http://h/", None, refs=page_refs).refs
    }
    assert lines["/multi"] == 2 and lines["/same"] == 4 and lines["/pic.png"] == 5
    assert lines["/site.css"] == 10
    assert lines["/q?a=1&b=2"] in (8, 9)  # an escaped value: where lxml says, at worst


@pytest.mark.parametrize("streamed", [False, True])
def test_lines_past_65535_are_where_the_tags_start(streamed: bool) -> None:
    """libxml2 says 65,535 for every element past that line: the tags are found in order."""
    tail = (
        '<a href="/last">x</a>\n<img\n src="/i.png">\n'  # 70,002-70,004
        '<form action="/f">\n<input type="image" src="/b.png">\n</form>\n'  # 70,005-70,007
        '<form action="/f">\n<input type="image" src="/b.png">\n</form>\n'  # 70,008-70,010
        '<p style="background: url(/s.png)">x</p><style>\na{b:url(/t.png)}</style>\n'  # 70,011
        '<a href="/last">again</a>\n'  # 70,013
    )
    padding = "<!--" + "x" * STREAM_BYTES + "-->" if streamed else ""
    body = ("<html><body>\n" + "<br>\n" * 70_000 + tail + padding + "</body></html>").encode()
    assert (len(body) >= STREAM_BYTES) == streamed
    refs = parse_html(body, "http://h/", None, refs=page_refs).refs
    assert sorted((ref.line, ref.written, ref.kind) for ref in refs) == [
        (70_002, "/last", "link"),
        (70_003, "/i.png", "image"),
        (70_005, "/f", "form"),
        (70_006, "/b.png", "image"),
        (70_008, "/f", "form"),
        (70_009, "/b.png", "image"),
        (70_011, "/s.png", "css"),
        (70_012, "/t.png", "css"),
        (70_013, "/last", "link"),
    ]


def test_refs_are_kept_in_columns_and_read_once_in_batches() -> None:
    refs = Refs()
    refs.extend([Ref("/a", 1, "link"), Ref("/b", 2, "image")])
    refs.add("/c", 3, "link")
    assert len(refs) == 3 and refs[1] == Ref("/b", 2, "image")
    assert refs[1:] == [Ref("/b", 2, "image"), Ref("/c", 3, "link")]
    assert list(refs) == [Ref("/a", 1, "link"), Ref("/b", 2, "image"), Ref("/c", 3, "link")]
    assert list(refs.drain(2)) == [
        [Ref("/a", 1, "link"), Ref("/b", 2, "image")],
        [Ref("/c", 3, "link")],
    ]
    assert len(refs) == 0 and list(refs.drain(2)) == []
