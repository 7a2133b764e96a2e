"""Pure sitemap parsing (sitemaps.org 0.9): XML urlsets, sitemap indexes, text, gzip.

No I/O. The XML parser
resolves no entities and fetches nothing (no XXE, no billion laughs), and
sizes are capped: a gzipped sitemap is inflated only up to
``MAX_SITEMAP_BYTES``, and at most ``MAX_SITEMAP_URLS`` locations are read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from lxml import etree

# sitemaps.org: "no more than 50,000 URLs and must be no larger than 50MB (uncompressed)".
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
MAX_SITEMAP_URLS = 50_000
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Sitemap:
    """The locations a sitemap lists: pages, and (for an index) further sitemaps."""

    pages: tuple[str, ...] = ()
    sitemaps: tuple[str, ...] = ()
    error: str | None = None


def _inflate(body: bytes) -> tuple[bytes, str | None]:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = inflater.decompress(body, MAX_SITEMAP_BYTES)
    except zlib.error:
        return b"", "bad-gzip"
    if inflater.unconsumed_tail:
        return data, "too-large"
    return data, None


def _local_name(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _parse_xml(data: bytes) -> Sitemap:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return Sitemap(error="bad-sitemap")
    if root is None:
        return Sitemap(error="bad-sitemap")
    kind = _local_name(root.tag)
    locations: list[str] = []
    for element in root.iter():
        if _local_name(element.tag) == "loc" and element.text and element.text.strip():
            locations.append(element.text.strip())
            if len(locations) >= MAX_SITEMAP_URLS:
                break
    if kind == "sitemapindex":
        return Sitemap(sitemaps=tuple(locations))
    if kind == "urlset":
        return Sitemap(pages=tuple(locations))
    return Sitemap(error="bad-sitemap")


def parse_sitemap(body: bytes) -> Sitemap:
    """The locations in a sitemap body (gzipped or not, XML or one URL a line)."""
    error = None
    if body.startswith(_GZIP_MAGIC):
        body, error = _inflate(body)
    body = body[:MAX_SITEMAP_BYTES]
    if body.lstrip()[:1] == b"<":
        sitemap = _parse_xml(body)
    else:
        lines = body.decode("utf-8", errors="replace").splitlines()
        pages = [line.strip() for line in lines if line.strip()][:MAX_SITEMAP_URLS]
        sitemap = Sitemap(pages=tuple(pages))
    return Sitemap(sitemap.pages, sitemap.sitemaps, error or sitemap.error)
