"""Bodies as they come off the wire: Content-Encoding undone (gzip, deflate, br) and
the read cut at ``max_bytes`` of decoded bytes, however the body was compressed.
"""

from __future__ import annotations

import zlib
from typing import Any

import aiohttp
import brotli

from crawler.records import TOO_LARGE

_CHUNK_BYTES = 64 * 1024


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


async def read_capped(answer: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, str | None]:
    """The decoded body; past ``max_bytes`` its first ``max_bytes`` and "too-large".

    Reading stops there: the rest is never downloaded (the connection is closed).
    """
    decoder = Decoder(answer.headers.get("Content-Encoding"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_chunked(_CHUNK_BYTES):
        decoded = decoder.feed(chunk, max_bytes + 1 - size)
        chunks.append(decoded)
        size += len(decoded)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], TOO_LARGE
    return b"".join(chunks), None
