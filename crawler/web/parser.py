"""Pure HTML parsing: bytes in, title, links, base and robots directives out.

No I/O. Links are found with
lxml directly: on the benchmark's pages a BeautifulSoup tree cost more than
everything else per page together (see the Speed section of README.md); a
BeautifulSoup tree is for users' extractors, built only when one asks.

The character set comes from, in order: a byte-order mark, the Content-Type
header, the document's own <meta> (prescanned in the first 1024 bytes, as
browsers do), strict UTF-8, and finally detection by charset-normalizer; a
label is read as browsers read it (codec_for).
Links are returned as written, with the base URL they resolve against.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urljoin

from lxml import etree


class ElementReader(Protocol):
    """What crawler check reads of a page besides (refs.PageRefs): shown each element
    in document order (a big page's, as each ends) with the value of its link
    attribute when the parser read one, then asked for its links with their lines
    and its anchors; given by the caller, so parsing stays one module's job."""

    def element(self, element: etree._Element, link: str | None) -> None: ...

    def result(self) -> tuple[Sequence[Any], str]: ...


# Made from the page's bytes (where a tag starts is read from them) and whether it
# is streamed (its elements shown as each ends).
RefsReader = Callable[[bytes, bool], ElementReader]
# A page this big is parsed as a stream, each element dropped once read: its tree
# would cost about 14 times its size (a 10 MB page of 225,000 links: 139 MB).
STREAM_BYTES = 512 * 1024
# Bytes of a big page fed to its parser at a time.
_FEED = 64 * 1024

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
MAX_TITLE_CHARS = 1000
_LINK_ATTRIBUTES = {"a": "href", "area": "href", "frame": "src", "iframe": "src"}
_PAGE_TAGS = ("a", "area", "frame", "iframe", "base", "meta", "title")
_PAGE_TAG_SET = frozenset(_PAGE_TAGS)
# recover: browsers parse anything; no_network: never fetch a DTD or entity;
# collect_ids: no table of ids, which nothing here looks up (5% of the parse);
# huge_tree: libxml2 stops at 256 open elements without it (2,048 with it), and
# every link past that point is lost: 300 unclosed <font> or <div> tags, or 85
# nested tables, are enough. A tree deeper still is read again (_flat_tree).
_PARSING: dict[str, Any] = {
    "recover": True, "no_network": True, "remove_comments": True, "collect_ids": False,
    "huge_tree": True,
}  # fmt: skip
_HTML_PARSER = etree.HTMLParser(**_PARSING)
# A UTF-8 body is parsed as bytes, its encoding given (it wins over a <meta>):
# a str of any character past Latin-1 costs lxml a conversion back to UTF-8
# (59 us against 51 for a 10 KB page).
_UTF8_PARSER = etree.HTMLParser(**_PARSING, encoding="utf-8")
# Open elements a tree read again keeps, as Chromium's parser does: an element
# past them is kept empty, beside the others at that depth.
MAX_DEPTH = 512
_XML_DECLARATION = re.compile(r"^<\?xml[^>]*\?>")
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)
_DETECT_BYTES = 64 * 1024


# The encodings of the Encoding Standard, as Python's codecs name them (but its
# x-user-defined and replacement, which no page is read as).
_BROWSERS = frozenset(
    {
        "utf-8", "cp866", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5", "iso8859-6",
        "iso8859-7", "iso8859-8", "iso8859-10", "iso8859-13", "iso8859-14", "iso8859-15",
        "iso8859-16", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "cp874", "cp1250",
        "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
        "gb18030", "big5hkscs", "euc_jp", "iso2022_jp", "cp932", "cp949", "utf-16-be",
        "utf-16-le",
    }
)  # fmt: skip
# Python's reading of a label, where a browser reads the label as a superset: a
# page made on Windows most often uses characters only the superset has (Latin-1's
# curly quotes and euro sign are windows-1252's; Latin-1 reads them as controls).
_SUPERSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "big5": "big5hkscs"}
_SUPERSETS |= {"iso8859-11": "cp874", "tis-620": "cp874", "gbk": "gb18030", "utf-16": "utf-16-le"}
_SUPERSETS |= {"gb2312": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932"}
# Browsers' labels that Python does not know, by the codec each is.
_LABELS = {
    label: codec
    for codec, labels in {
        "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 x-unicode20utf8",
        "cp874": "windows-874 dos-874 iso885911",
        "iso8859-8": "iso-8859-8-i csiso88598i csiso88598e logical visual",
        "iso8859-6": "iso-8859-6-i iso-8859-6-e csiso88596i csiso88596e",
        "mac-cyrillic": "x-mac-cyrillic x-mac-ukrainian",
        "mac-roman": "x-mac-roman",
        "cp932": "x-sjis windows-31j ms_kanji csshiftjis",
        "gb18030": "x-gbk chinese csgb2312",
        "big5hkscs": "x-x-big5 cn-big5 csbig5",
        "euc_jp": "x-euc-jp",
        "cp949": "windows-949 korean ksc5601 ksc_5601",
        **{f"cp125{digit}": f"x-cp125{digit}" for digit in range(9)},
    }.items()
    for label in labels.split()
}


@functools.lru_cache(maxsize=256)
def codec_for(label: str, *, in_page: bool = False) -> str | None:
    """The Python codec of a browser's reading of a charset label (the WHATWG Encoding
    Standard; ``in_page``: a <meta>'s, where UTF-16 means UTF-8, since the page was
    read as ASCII to find it), or None for a label no browser knows (utf-7, utf-32)."""
    label = label.strip().lower()
    name = _LABELS.get(label)
    if name is None:
        try:
            name = codecs.lookup(label).name
        except (LookupError, ValueError):  # ValueError: a NUL in the label
            return None
        name = _SUPERSETS.get(name, name)
    if in_page and name.startswith("utf-16"):
        return "utf-8"
    return name if name in _BROWSERS else None


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """What the crawler needs from one HTML page."""

    title: str | None
    base: str
    links: tuple[str, ...]
    nofollow: bool
    noindex: bool
    # crawler check only (parse_html's ``refs``): every link and requisite with its
    # line, nofollow or not (refs.Ref), and the page's anchors.
    refs: Sequence[Any] = ()
    anchors: str = ""
    # The character set its links' queries are written in (WHATWG URL: the page's,
    # but UTF-8 for a UTF-16 page); None for UTF-8.
    query_codec: str | None = None


def is_html(content_type: str | None) -> bool:
    return content_type is not None and content_type in HTML_TYPES


def _try_decode(body: bytes, codec: str | None) -> tuple[str, str] | None:
    """``body`` in ``codec`` (codec_for's), and the codec; None if it cannot decode it."""
    if codec is None:
        return None
    try:
        return body.decode(codec), codec
    except UnicodeError:
        return None


def decode_html(body: bytes, header_charset: str | None) -> str:
    """The page's text; never raises, undecodable bytes become U+FFFD."""
    return _decoded(body, header_charset)[0]


def _decoded(body: bytes, header_charset: str | None) -> tuple[str, str, bool]:
    """The page's text, its character set (as codec_for names it), and
    whether the body itself is that text in UTF-8 (no BOM, no NUL)."""
    for bom, encoding, codec in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace"), codec, False
    decoded = _try_decode(body, codec_for(header_charset) if header_charset else None)
    if decoded is None:
        declared = _META_CHARSET.search(body[:1024])
        label = declared.group(1).decode("ascii") if declared else None
        decoded = _try_decode(body, codec_for(label, in_page=True) if label else None)
    if decoded is None:
        decoded = _try_decode(body, "utf-8")
    if decoded is None:
        import charset_normalizer  # only for the rare page that declares no charset

        guess = charset_normalizer.from_bytes(body[:_DETECT_BYTES]).best()
        encoding = (codec_for(guess.encoding) if guess is not None else None) or "utf-8"
        decoded = body.decode(encoding, errors="replace"), encoding
    text, codec = decoded
    if "\x00" in text:  # HTML §13.2.5: a NUL in text is a parse error replaced by U+FFFD.
        return text.replace("\x00", "\ufffd"), codec, False
    return text, codec, codec == "utf-8"


_WHITESPACE = "\t\n\x0c\r "
_SPACES = r"[\t\n\x0c\r ]*"
# A refresh's time, what may follow it, and "url=" (HTML's declarative refresh).
_REFRESH = re.compile(
    rf"{_SPACES}(?:[0-9]+|(?=\.))[0-9.]*(?:[{_WHITESPACE};,]|$){_SPACES}[;,]?{_SPACES}"
    rf"(?:url{_SPACES}={_SPACES})?",
    re.IGNORECASE,
)


def refresh_target(content: str) -> str | None:
    """The URL of a ``meta http-equiv=refresh`` content ("5; url=/next"), if any, as
    browsers read it: a time first, or no refresh at all; a quote ends a quoted URL."""
    match = _REFRESH.match(content)
    if match is None:
        return None
    target = content[match.end() :]
    if target[:1] in ("'", '"'):
        target = target[1:].partition(target[0])[0]
    return target.strip(_WHITESPACE) or None


def _directive_words(content: str) -> set[str]:
    directives = {part.strip() for part in content.lower().split(",")}
    if "none" in directives:
        directives.update(("nofollow", "noindex"))
    return directives


def header_directives(value: str | None) -> set[str]:
    """Directives of an X-Robots-Tag header for every crawler ("googlebot: ..." lines skipped)."""
    if not value:
        return set()
    directives: set[str] = set()
    for part in value.split(","):
        word = part.strip().lower()
        if ":" in word:
            continue
        directives |= _directive_words(word)
    return directives


def _tree(body: bytes, text: str, utf8: bool) -> etree._Element | None:
    """The page's tree (``text``: the page decoded; ``utf8``: the body is that text in
    UTF-8); None if nothing parses."""
    # lxml refuses str input that declares an encoding; the text is decoded already.
    if not utf8 and text.startswith("<?xml"):
        text = _XML_DECLARATION.sub("", text, count=1)
    # A UTF-8 page as the bytes it came as: lxml would turn a str back into UTF-8.
    parser, source = (_UTF8_PARSER, body) if utf8 else (_HTML_PARSER, text)
    try:
        root = etree.fromstring(source, parser)
        error = parser.error_log.last_error
        if error is not None and error.level == etree.ErrorLevels.FATAL:
            return _flat_tree(source, utf8)  # libxml2 stopped: too deep, say
        return root
    except (etree.LxmlError, ValueError):
        return None


def _flat_tree(source: bytes | str, utf8: bool) -> etree._Element | None:
    """The tree of a page deeper than libxml2 builds, no deeper than ``MAX_DEPTH``:
    read by lxml's parser as events (which has no such limit) into a tree kept
    shallow. Its elements know no line."""
    target = _Shallow()
    parser = etree.HTMLParser(target=target, **_PARSING, encoding="utf-8" if utf8 else None)
    result: etree._Element | None = etree.fromstring(source, parser)
    return result


class _Shallow:
    """A parser target: lxml's TreeBuilder, with an element past ``MAX_DEPTH`` open
    elements closed at once, and its end ignored when it comes."""

    def __init__(self) -> None:
        self._builder = etree.TreeBuilder()
        self._kept: list[bool] = []  # each open element: kept open, or closed at once
        self._depth = 0

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        self._builder.start(tag, attributes)
        kept = self._depth < MAX_DEPTH
        self._kept.append(kept)
        if kept:
            self._depth += 1
        else:
            self._builder.end(tag)

    def end(self, tag: str) -> None:
        if self._kept.pop():
            self._depth -= 1
            self._builder.end(tag)

    def data(self, data: str) -> None:
        self._builder.data(data)

    def close(self) -> etree._Element:
        return self._builder.close()


def _stream(body: bytes, text: str, utf8: bool) -> Iterator[etree._Element]:
    """A big page's elements as each ends (complete: its attributes, its text), each
    dropped once its next sibling ends, so no more than a path of the tree (and the
    last sibling at each level) is held. An element is never emptied itself: with an
    older libxml2, a title's text can be inside its child elements."""
    if not utf8:
        body = _XML_DECLARATION.sub("", text, count=1).encode("utf-8", "surrogatepass")
    del text  # not held while the stream is read: the page's size again, or 4 times it
    # A pull parser, fed: iterparse leaves out huge_tree for HTML.
    parser = etree.HTMLPullParser(events=("end",), **_PARSING, encoding="utf-8")
    try:
        for start in range(0, len(body) + _FEED, _FEED):
            if start < len(body):
                parser.feed(body[start : start + _FEED])
            else:
                parser.close()
            for _, element in parser.read_events():
                yield element
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]
    except (etree.LxmlError, ValueError):
        return


def _text(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())


def parse_html(
    body: bytes,
    url: str,
    header_charset: str | None,
    *,
    honour_nofollow: bool = True,
    refs: RefsReader | None = None,
) -> ParsedPage:
    """Parse one page (with ``refs``: what crawler check reads too). Never raises on any bytes."""
    reader = refs(body, len(body) >= STREAM_BYTES) if refs is not None else None
    elements, codec = _elements(body, header_charset, every=reader is not None)
    if elements is None:
        return ParsedPage(None, url, (), False, False)
    title, base, directives, links = None, None, set(), []
    for element in elements:
        tag = element.tag
        attribute = _LINK_ATTRIBUTES.get(tag)
        if (value := element.get(attribute) if attribute else None) is None and tag == "a":
            value = element.get("xlink:href")  # an SVG link (SVG 2: href first)
        elif tag == "meta" and str(element.get("http-equiv", "")).lower() == "refresh":
            value = refresh_target(str(element.get("content", "")))  # a link to follow
        if reader is not None:  # its link as this very string: a big page's are many
            reader.element(element, value)
        if tag not in _PAGE_TAG_SET:
            continue
        if attribute is not None:  # most elements: links
            if not value:
                continue
            rel = element.get("rel")
            if rel and honour_nofollow and "nofollow" in rel.lower().split():
                continue
            links.append(value)
        elif tag == "meta":  # robots directives, or a refresh's URL
            if str(element.get("name", "")).lower() == "robots":
                directives |= _directive_words(element.get("content", ""))
            elif value:
                links.append(value)
        elif tag == "title":
            title = title or _text(element)[:MAX_TITLE_CHARS] or None
        else:  # base
            href = element.get("href")
            if base is None and href:
                base = _join_base(url, href)
    nofollow = honour_nofollow and "nofollow" in directives
    found, anchors = reader.result() if reader is not None else ((), "")
    kept = () if nofollow else tuple(links)
    page = (title, base or url, kept, nofollow, "noindex" in directives, found, anchors)
    utf8_queries = codec == "utf-8" or codec.startswith("utf-16")
    return ParsedPage(*page, None if utf8_queries else codec)


def _elements(
    body: bytes, header_charset: str | None, *, every: bool
) -> tuple[Iterable[etree._Element] | None, str]:
    """The elements parse_html reads (``every`` one, for a reader): from the whole
    tree, or from the stream of a big page; None if nothing parses. And the page's
    character set."""
    text, codec, utf8 = _decoded(body, header_charset)
    if len(body) >= STREAM_BYTES:
        return _stream(body, text, utf8), codec
    root = _tree(body, text, utf8)
    if root is None:
        return None, codec
    return (root.iter() if every else root.iter(*_PAGE_TAGS)), codec


def _join_base(url: str, href: str) -> str:
    try:
        return urljoin(url, href.strip())
    except ValueError:
        return url
