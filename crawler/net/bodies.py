"""Bodies as they come off the wire: Content-Encoding undone (gzip, deflate, br) and
the read cut at ``max_bytes`` of decoded bytes, however the body was compressed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import brotli

from crawler.records import TOO_LARGE

_CHUNK_BYTES = 64 * 1024
# read_capped's answer for a body whose first bytes were not wanted.
UNWANTED = "unwanted"

# Media types that say nothing of the body, which browsers sniff (MIME Sniffing
# §7: none, "unknown/unknown", "application/unknown", "*/*").
UNKNOWN_TYPES = frozenset({None, "unknown/unknown", "application/unknown", "*/*"})
# MIME Sniffing's "resource header": the bytes a type is sniffed from.
SNIFF_BYTES = 1445
# The opening tags that make a body of unknown type HTML (MIME Sniffing §7.1),
# each followed by a space or ">", after leading whitespace, in any case.
_HTML_OPENINGS = tuple(
    f"<{tag}".encode()
    for tag in (
        "!DOCTYPE HTML", "HTML", "HEAD", "SCRIPT", "IFRAME", "H1", "DIV", "FONT",
        "TABLE", "A", "STYLE", "TITLE", "B", "BODY", "BR", "P", "!--",
    )
)  # fmt: skip
_WHITESPACE = b"\t\n\x0c\r "
_TOKEN = r"[!#$%&'*+.^_`|~0-9a-z-]+"  # RFC 9110's token, in lower case
_ESSENCE = re.compile(f"{_TOKEN}/{_TOKEN}")


def is_media_type(text: str) -> bool:
    """Whether ``text`` (lower case) is a valid type/subtype (MIME Sniffing §4.4)."""
    return _ESSENCE.fullmatch(text) is not None


def sniffable(media_type: str | None, headers: Mapping[str, str]) -> bool:
    """Whether a browser sniffs a body sent with this media type (the type in lower
    case, without parameters): one that says nothing, or is no valid type ("text/html
    charset=utf-8"), unless the server says X-Content-Type-Options: nosniff (Fetch
    §3.5: its first value, in any case)."""
    if media_type is not None and media_type not in UNKNOWN_TYPES and is_media_type(media_type):
        return False
    option = headers.get("X-Content-Type-Options", "")
    return option.split(",", 1)[0].strip().lower() != "nosniff"


def sniffs_as_html(head: bytes) -> bool:
    """Whether a body sent with no useful media type is HTML, as a browser decides it."""
    text = head[:SNIFF_BYTES].lstrip(_WHITESPACE)
    opening = text[:15].upper()
    return any(
        opening.startswith(tag) and text[len(tag) : len(tag) + 1] in (b" ", b">")
        for tag in _HTML_OPENINGS
    )


class BadEncoding(ValueError):
    """A Content-Encoding we do not know, or a body that does not decode."""


class Decoder:
    """Content-Encoding undone here rather than by aiohttp, so that no call ever
    produces more than the bytes still allowed: a decompression bomb (a few KB
    that inflate to GBs) stops at --max-bytes instead of filling memory."""

    def __init__(self, encoding: str | None) -> None:
        name = (encoding or "identity").strip().lower()
        self._zlib: Any = None
        self._brotli: Any = None
        self._raw_deflate = False
        if name in ("gzip", "x-gzip", "deflate"):
            # MAX_WBITS | 32: a gzip or a zlib header, whichever comes (RFC 9110 §8.4.1).
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 32)
            self._raw_deflate = name == "deflate"
        elif name == "br":
            self._brotli = brotli.Decompressor()
        elif name != "identity":
            raise BadEncoding(name)

    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded bytes of ``data``, at most ``room`` of them."""
        try:
            if self._zlib is not None:
                return bytes(self._zlib.decompress(self._zlib.unconsumed_tail + data, room))
            if self._brotli is not None:
                return bytes(self._brotli.process(data, output_buffer_limit=room))
        except zlib.error:
            if not self._raw_deflate:
                raise BadEncoding("corrupt body") from None
            # Some servers send "deflate" without the zlib header: raw DEFLATE.
            self._zlib, self._raw_deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
            return self.feed(data, room)
        except brotli.error:
            raise BadEncoding("corrupt body") from None
        return data[:room]


async def read_capped(
    answer: aiohttp.ClientResponse,
    max_bytes: int,
    *,
    wanted: Callable[[bytes], bool] | None = None,
) -> tuple[bytes, str | None]:
    """The decoded body; past ``max_bytes`` its first ``max_bytes`` and "too-large".
    With ``wanted``: nothing and ``UNWANTED`` as soon as its first ``SNIFF_BYTES``
    (or the whole body, if shorter) are not wanted.

    Reading stops there: the rest is never downloaded (the connection is closed).
    """
    decoder = Decoder(answer.headers.get("Content-Encoding"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_chunked(_CHUNK_BYTES):
        decoded = decoder.feed(chunk, max_bytes + 1 - size)
        chunks.append(decoded)
        size += len(decoded)
        if wanted is not None and (size >= SNIFF_BYTES or size > max_bytes):
            if not wanted(b"".join(chunks)):
                return b"", UNWANTED
            wanted = None
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], TOO_LARGE
    body = b"".join(chunks)
    if wanted is not None and not wanted(body):
        return b"", UNWANTED
    return body, None
