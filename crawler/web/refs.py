"""Pure: every link of a page that crawler check requests, with its line and kind.

No I/O. Given a parsed lxml tree (parser.py) this finds what a browser would
follow or load: links (``a``, ``area``), frames, ``meta http-equiv=refresh``,
and the page's requisites: ``img src`` and ``srcset``, ``picture``'s
``source srcset``, ``script src``, every ``link href`` (stylesheets, icons,
preloads, the manifest, and the pages of canonical, alternate, next...; not
dns-prefetch or preconnect, which name origins), ``video``/``audio``/
``source``/``track``, ``video poster``, ``object data``, ``embed src``,
``input type=image``, SVG's ``image``, ``use`` and ``feImage`` (``href`` or
``xlink:href``, as SVG's ``a``), the legacy ``background`` and ``cite`` attributes, the
``action`` of a GET form and the ``formaction`` of its submit buttons (kind
"form": checked, never crawled; a POST form's is not asked without its data),
and ``url(...)`` and ``@import`` in ``style`` attributes and ``<style>`` elements.
A stylesheet is read for ``url(...)`` and ``@import`` only (``css_refs``). Also
the page's anchors: every ``id`` and every ``a name``, the targets of its
``#fragment`` links.

Links are returned as written; the line is where the tag starts (1-based; lxml's
``sourceline`` is where it ends: ``TagStarts``; a ``url()`` counts the lines inside
its ``<style>``).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from lxml import etree

# Kinds a crawl may follow as pages when they are in scope; every other kind is
# a requisite, requested only to see whether it works.
NAVIGATION = frozenset({"link", "frame", "refresh"})
_LINK_RELS = {
    "stylesheet": "stylesheet",
    "icon": "icon",
    "apple-touch-icon": "icon",
    "mask-icon": "icon",
    "preload": "preload",
    "modulepreload": "preload",
    "prefetch": "preload",
    "manifest": "manifest",
}
# A <link> of any other rel (canonical, alternate, next, author, ...) names a page;
# these name an origin to connect to early, not a resource, and are not checked.
_ORIGIN_RELS = frozenset({"dns-prefetch", "preconnect"})
# Legacy attributes that name an image (HTML 4's background).
_BACKGROUND_TAGS = frozenset({"body", "table", "tr", "td", "th"})
_CITE_TAGS = frozenset({"blockquote", "q", "del", "ins"})
_SRC_KINDS = {
    "img": "image",
    "script": "script",
    "iframe": "frame",
    "frame": "frame",
    "video": "media",
    "audio": "media",
    "track": "media",
    "embed": "object",
}
# SVG's elements that show what they name: an image, or a symbol of a sprite
# (``<use href="/icons.svg#menu">``).
_SVG_IMAGE_TAGS = frozenset({"image", "use", "feimage"})
_TAGS = frozenset(
    {"a", "area", "img", "source", "script", "link", "iframe", "frame", "video", "audio"}
    | {"track", "object", "embed", "input", "meta", "style", "form", "button"}
    | _SVG_IMAGE_TAGS
    | _BACKGROUND_TAGS
    | _CITE_TAGS
)
_WHITESPACE = " \t\n\r\f"
# A url(): a quoted URL ends at its quote or the line's end (a CSS string does), an
# unquoted one at a parenthesis, quote or space, as the CSS syntax says. Every
# quantifier is possessive and each run stops at a character that starts the next
# url( (its parenthesis, or its quote), so no text is scanned more than a few times:
# linear, where the old pattern was quadratic on a stylesheet made of "url(".
_CSS_URL = re.compile(
    r"""url\(\s*+(?:"([^"\n]*+)"|'([^'\n]*+)'|([^)"'\s(]*+))\s*+\)""", re.IGNORECASE
)
# ``@import "x.css"``: a stylesheet named by a string, without url().
_CSS_IMPORT = re.compile(r"""@import\s++(?:"([^"\n]*+)"|'([^'\n]*+)')""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Ref:
    """One link as written on a page: its text, the line of its tag, its kind."""

    written: str
    line: int
    kind: str


class Refs(Sequence[Ref]):
    """A page's refs in columns (text, line, kind code): about 13 bytes a link besides
    its text, where a Ref object and its line number cost 90; a page of 600,000 links
    holds them once, and makes Ref objects only for the slice it reads."""

    def __init__(self) -> None:
        self._written: list[str] = []
        self._lines = array("I")
        self._kinds = bytearray()
        self._names: list[str] = []
        self._codes: dict[str, int] = {}

    def add(self, written: str, line: int, kind: str) -> None:
        code = self._codes.get(kind)
        if code is None:
            code = self._codes[kind] = len(self._names)
            self._names.append(kind)
        self._written.append(written)
        self._lines.append(line)
        self._kinds.append(code)

    def extend(self, refs: Iterable[Ref]) -> None:
        for ref in refs:
            self.add(ref.written, ref.line, ref.kind)

    def __len__(self) -> int:
        return len(self._written)

    @overload
    def __getitem__(self, index: int) -> Ref: ...

    @overload
    def __getitem__(self, index: slice) -> list[Ref]: ...

    def __getitem__(self, index: int | slice) -> Ref | list[Ref]:
        names = self._names
        if isinstance(index, slice):
            return [
                Ref(written, line, names[kind])
                for written, line, kind in zip(
                    self._written[index], self._lines[index], self._kinds[index], strict=True
                )
            ]
        return Ref(self._written[index], self._lines[index], names[self._kinds[index]])

    def __iter__(self) -> Iterator[Ref]:
        names = self._names
        for written, line, kind in zip(self._written, self._lines, self._kinds, strict=True):
            yield Ref(written, line, names[kind])

    def drain(self, size: int) -> Iterator[list[Ref]]:
        """The refs ``size`` at a time, each batch gone from the columns as it is handed
        out: a page of 600,000 links lets go of its text as its links are read."""
        while self._written:
            batch = self[:size]
            del self._written[:size], self._lines[:size], self._kinds[:size]
            yield batch


def srcset_urls(value: str) -> list[str]:
    """The candidate URLs of a ``srcset`` (HTML's "parse a srcset attribute": a URL is
    a run of non-whitespace, a comma ends a candidate outside its descriptors)."""
    urls, position, end = [], 0, len(value)
    while position < end:
        while position < end and value[position] in _WHITESPACE + ",":
            position += 1
        start = position
        while position < end and value[position] not in _WHITESPACE:
            position += 1
        url = value[start:position]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0
            while position < end:
                character = value[position]
                position += 1
                if character == "(":
                    depth += 1
                elif character == ")":
                    depth = max(0, depth - 1)
                elif character == "," and depth == 0:
                    break
        if url:
            urls.append(url)
    return urls


def css_refs(text: str, first_line: int = 1, kind: str = "css") -> list[Ref]:
    """The ``url(...)`` of a stylesheet's text (comments skipped), each with its line;
    an ``@import``'s (``url()`` or a string) is of kind "stylesheet", read in turn.

    Linear in the text, whatever it holds (a stylesheet made of ``url(`` with no
    closing parenthesis, or of unclosed comments, is read once): see ``_CSS_URL``."""
    text = _without_comments(text)
    found = [(match.start(), match, kind) for match in _CSS_URL.finditer(text)]
    if "@import" in text.lower():
        found += [(match.start(), match, "stylesheet") for match in _CSS_IMPORT.finditer(text)]
        found.sort(key=lambda item: item[0])
    refs = []
    line, counted = first_line, 0
    count = text.count
    for start, match, named in found:
        written = match[match.lastindex or 0].strip()  # the one alternative that matched
        if written:
            line += count("\n", counted, start)
            counted = start
            if named != "stylesheet" and _imported(text, start):
                named = "stylesheet"
            refs.append(Ref(written, line, named))
    return refs


def _imported(text: str, start: int) -> bool:
    """The url() at ``start`` follows an ``@import``: it names a stylesheet."""
    return text[max(0, start - 40) : start].rstrip().lower().endswith("@import")


def _without_comments(text: str) -> str:
    """``text`` with each ``/* ... */`` replaced by its line breaks (one pass; an
    unclosed comment runs to the end, as in CSS)."""
    if "/*" not in text:
        return text
    pieces, position = [], 0
    while (start := text.find("/*", position)) != -1:
        pieces.append(text[position:start])
        end = text.find("*/", start + 2)
        stop = len(text) if end == -1 else end + 2
        pieces.append("\n" * text.count("\n", start, stop))
        position = stop
    pieces.append(text[position:])
    return "".join(pieces)


def _lxml_line(element: etree._Element) -> int:
    return element.sourceline or 0


class PageRefs:
    """Every link and requisite of a page, in document order, and its anchors (the ids
    and ``a`` names, each between NULs: ``"\\0top\\0s1\\0"``): parser.ElementReader.
    ``line`` says where an element is (tag_lines.TagStarts: where its tag starts;
    else where lxml says, where its start tag ends)."""

    def __init__(self, line: Callable[[etree._Element], int] = _lxml_line) -> None:
        self._refs = Refs()
        self._anchors = ["\0"]
        self._line = line

    def element(self, element: etree._Element, link: str | None = None) -> None:
        """``link``: the element's href (``a``, ``area``) or src (``frame``, ``iframe``)
        as the parser read it, kept as that very string rather than read again, or
        the URL of a ``meta`` refresh."""
        if not isinstance(element.tag, str):
            return  # a processing instruction or an entity
        anchor = element.get("id")
        if anchor:
            self._anchors.append(anchor + "\0")
        tag = element.tag in _TAGS
        style = element.get("style")
        styled = bool(style) and "url(" in str(style).lower()
        if not tag and not styled:
            return
        line = self._line(element)
        if tag:
            _element_refs(element, line, link, self._refs, self._anchors)
        if styled:
            self._refs.extend(css_refs(str(style), line))

    def result(self) -> tuple[Refs, str]:
        return self._refs, "".join(self._anchors)


class PageAnchors:
    """Only a page's anchors (for an offsite page read for its ids: its links are not
    checked), in ``PageRefs``' form."""

    def __init__(self, _: bytes = b"", __: bool = False) -> None:
        self._anchors: list[str] = []

    def element(self, element: etree._Element, link: str | None = None) -> None:
        if not isinstance(element.tag, str):
            return
        anchor = element.get("id")
        if anchor:
            self._anchors.append(str(anchor))
        if element.tag == "a" and element.get("name"):
            self._anchors.append(str(element.get("name")))

    def result(self) -> tuple[tuple[Ref, ...], str]:
        return (), "".join(f"\0{anchor}" for anchor in self._anchors) + "\0"


def _element_refs(
    element: etree._Element, line: int, link: str | None, refs: Refs, anchors: list[str]
) -> None:
    tag = element.tag
    get = element.get
    if tag in ("a", "area"):
        if tag == "a" and get("name"):
            anchors.append(str(get("name")) + "\0")
        _add(refs, _svg_href(element) if link is None else link, line, "link")
    elif tag in _SVG_IMAGE_TAGS:
        _add(refs, _svg_href(element), line, "image")
    elif tag == "link":
        rels = str(get("rel", "")).lower().split()
        if not _ORIGIN_RELS.intersection(rels):
            kind = next((_LINK_RELS[rel] for rel in rels if rel in _LINK_RELS), "link")
            _add(refs, get("href"), line, kind)
    elif tag in _BACKGROUND_TAGS:
        _add(refs, get("background"), line, "image")
    elif tag in _CITE_TAGS:
        _add(refs, get("cite"), line, "link")
    elif tag == "meta":  # a refresh's URL, as the parser read it
        _add(refs, link, line, "refresh")
    elif tag == "style":
        refs.extend(css_refs(element.text or "", line))
    elif tag == "object":
        _add(refs, get("data"), line, "object")
    elif tag == "form":
        if str(get("method", "get")).strip().lower() == "get":
            _add(refs, get("action"), line, "form")
    elif tag in ("input", "button"):
        kind = str(get("type", "submit" if tag == "button" else "text")).strip().lower()
        if kind == "image":
            _add(refs, get("src"), line, "image")
        if kind in ("submit", "image") and _submits_with_get(element):
            _add(refs, get("formaction"), line, "form")
    elif tag == "source":
        parent = element.getparent()
        in_picture = parent is not None and parent.tag == "picture"
        kind = "image" if in_picture or get("srcset") else "media"
        _add(refs, get("src"), line, kind)
        for url in srcset_urls(str(get("srcset", ""))):
            _add(refs, url, line, kind)
    else:
        _add(refs, get("src") if link is None else link, line, _SRC_KINDS[tag])
        if tag == "img":
            for url in srcset_urls(str(get("srcset", ""))):
                _add(refs, url, line, "image")
        elif tag == "video":
            _add(refs, get("poster"), line, "image")


def _svg_href(element: etree._Element) -> str | None:
    """An element's ``href``, or SVG 1's ``xlink:href`` (SVG 2 reads ``href`` first)."""
    value = element.get("href") or element.get("xlink:href")
    return str(value) if value else None


def _submits_with_get(element: etree._Element) -> bool:
    """A submit button's form is sent with GET (its formmethod, else its form's method):
    a POST endpoint is not asked without its data."""
    method = element.get("formmethod")
    if method is None:
        form = next(element.iterancestors("form"), None)
        method = form.get("method", "get") if form is not None else "get"
    return str(method).strip().lower() == "get"


def _add(refs: Refs, value: str | None, line: int, kind: str) -> None:
    if value and (written := value.strip()):
        refs.add(written, line, kind)
