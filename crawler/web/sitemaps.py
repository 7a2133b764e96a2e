"""Pure sitemap parsing (sitemaps.org 0.9): XML urlsets, sitemap indexes, text, gzip.

No I/O. The XML parser
resolves no entities and fetches nothing (no XXE, no billion laughs), and
sizes are capped: a sitemap is read a chunk at a time (a gzipped one inflated
only up to ``MAX_SITEMAP_BYTES``) and parsed as it streams, each element dropped
once read;
at most ``MAX_SITEMAP_URLS`` locations are read, and reading stops there.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

# sitemaps.org: "no more than 50,000 URLs and must be no larger than 50MB (uncompressed)".
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
MAX_SITEMAP_URLS = 50_000
_GZIP_MAGIC = b"\x1f\x8b"
# Bytes inflated and parsed at a time.
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Sitemap:
    """The locations a sitemap lists: pages, and (for an index) further sitemaps."""

    pages: tuple[str, ...] = ()
    sitemaps: tuple[str, ...] = ()
    error: str | None = None


def _chunks(body: bytes) -> Iterator[tuple[bytes, str | None]]:
    """The sitemap's bytes, inflated if gzipped, a bounded chunk at a time, and at the
    end the error if any: a gzip bomb is cut at MAX_SITEMAP_BYTES, never inflated whole."""
    if not body.startswith(_GZIP_MAGIC):
        # A chunk at a time too: lxml builds the tree of all it is fed before any of it
        # can be dropped (a 12 MB sitemap fed whole: 215 MB).
        capped = memoryview(body)[:MAX_SITEMAP_BYTES]
        for start in range(0, len(capped), _CHUNK):
            yield bytes(capped[start : start + _CHUNK]), None
        yield b"", "too-large" if len(body) > MAX_SITEMAP_BYTES else None
        return
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    pending, total = body, 0
    while pending and total < MAX_SITEMAP_BYTES:
        try:
            chunk = inflater.decompress(pending, min(_CHUNK, MAX_SITEMAP_BYTES - total))
        except zlib.error:
            yield b"", "bad-gzip"
            return
        total += len(chunk)
        pending = inflater.unconsumed_tail
        if inflater.eof or not chunk:
            yield chunk, None
            return
        yield chunk, None
    yield b"", "too-large" if pending else None


def _local_name(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _parse_xml(chunks: Iterator[tuple[bytes, str | None]]) -> Sitemap:
    """Locations read as the XML streams in: each element is dropped once read, and
    reading stops at MAX_SITEMAP_URLS, so memory stays bounded whatever the size."""
    parser = etree.XMLPullParser(
        events=("start", "end"), resolve_entities=False, no_network=True, recover=True
    )
    kind, error = None, None
    locations: list[str] = []
    for chunk, cut in chunks:
        error = error or cut
        parser.feed(chunk)
        for event, element in parser.read_events():
            if event == "start":
                kind = kind or _local_name(element.tag)
                continue
            if _local_name(element.tag) == "loc" and element.text and element.text.strip():
                locations.append(element.text.strip())
            element.clear()
            while element.getprevious() is not None:
                del element.getparent()[0]
        if len(locations) >= MAX_SITEMAP_URLS:
            break
    locations = locations[:MAX_SITEMAP_URLS]
    if kind == "sitemapindex":
        return Sitemap(sitemaps=tuple(locations), error=error)
    if kind == "urlset":
        return Sitemap(pages=tuple(locations), error=error)
    return Sitemap(error="bad-sitemap")


def _parse_text(chunks: Iterator[tuple[bytes, str | None]]) -> Sitemap:
    """One URL a line, read as it streams in, up to MAX_SITEMAP_URLS."""
    pages: list[str] = []
    carry, error = b"", None
    for chunk, cut in chunks:
        error = error or cut
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        pages += [line.decode("utf-8", "replace").strip() for line in lines]
        if len(pages) >= MAX_SITEMAP_URLS:
            break
    pages.append(carry.decode("utf-8", "replace").strip())
    return Sitemap(pages=tuple(page for page in pages if page)[:MAX_SITEMAP_URLS], error=error)


def parse_sitemap(body: bytes) -> Sitemap:
    """The locations in a sitemap body (gzipped or not, XML or one URL a line)."""
    chunks = _chunks(body)
    first, error = next(chunks)
    if error is not None and not first:
        return Sitemap(error=error)
    stream = itertools.chain([(first, error)], chunks)
    if first.lstrip()[:1] == b"<":
        return _parse_xml(stream)
    return _parse_text(stream)
