"""The fetcher: one aiohttp session, the global semaphore, one request at a time.

``fetch()`` makes exactly one request
(redirects are not followed here: each hop goes back through the frontier so
that it passes its host's politeness slot and joins the seen set). It bounds
the request by a total deadline and the body by a byte count, counted after
decompression while streaming, so a large body is never held whole. Every
network and protocol failure is caught here, by type, and becomes a short
reason; nothing else in the crawler catches network errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import re
import ssl
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import AsyncResolver
from yarl import URL

from crawler.net.addresses import AddressPolicy, GuardedResolver, PrivateAddress, address_kind
from crawler.net.bodies import (
    UNWANTED,
    BadEncoding,
    is_media_type,
    read_capped,
    sniffable,
    sniffs_as_html,
)
from crawler.net.deadlines import Deadlines
from crawler.net.identity import CookieJar, Identity
from crawler.net.lookups import Lookups
from crawler.net.pool import pool_for
from crawler.web.parser import HTML_TYPES
from crawler.web.urls import host_key

# An unread body up to this size is drained so the connection can be reused.
_DRAIN_BYTES = 64 * 1024
_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"


@dataclass(frozen=True, slots=True)
class Response:
    """The outcome of one request: an answer (status set) or a failure (error set)."""

    url: str
    status: int | None
    content_type: str | None = None
    charset: str | None = None
    location: str | None = None
    retry_after: float | None = None
    x_robots_tag: str | None = None
    body: bytes = b""
    error: str | None = None
    elapsed_ms: int = 0
    etag: str | None = None
    last_modified: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # For the WARC file: what was sent (method, headers), the reason phrase, whether
    # the body was read whole.
    request_headers: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    method: str = "GET"
    complete: bool = True


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3: seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# A connect that failed for want of this machine's resources, not because of the host.
_OUT_OF_RESOURCES = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}
)


def failure_reason(error: BaseException) -> str:
    """The one place that names network failures; order matters (subclasses first)."""
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, PrivateAddress
    ):
        return PRIVATE_ADDRESS
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(error, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return "certificate"  # expired, self-signed, of an unknown CA, or for another name
    if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls"
    if isinstance(error, aiohttp.ClientConnectorError):
        if error.os_error.errno in _OUT_OF_RESOURCES:
            return "local-resources"  # this machine's: no file, port or buffer was left
        return "connection-refused"
    if isinstance(
        error,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | ConnectionResetError,
    ):
        return "connection-reset"
    if isinstance(error, BadEncoding):
        return "bad-encoding"
    if isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "invalid-url"
    if isinstance(error, aiohttp.ClientResponseError):
        return "bad-response"
    return "connection"


def _media_type(header: str | None) -> str | None:
    """The media type of a Content-Type header (lower case, without parameters), as
    Fetch extracts it: of values joined by commas, the last valid one but */*. With
    none valid, the first as written, for the record (bodies.sniffable: unknown)."""
    if not header:
        return None
    values = [value.split(";", 1)[0].strip().lower() for value in header.split(",")]
    valid = [value for value in values if is_media_type(value) and value != "*/*"]
    return valid[-1] if valid else header_text(values[0]) or None


# aiohttp keeps a header's bytes that are not UTF-8 as lone surrogates, which no
# file or database takes: a hostile server's ETag or Location stopped the crawl.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def header_text(value: str | None) -> str | None:
    """A header kept as text (ETag, Last-Modified...): bytes that are not UTF-8 become U+FFFD."""
    if value is None or value.isascii():
        return value
    return _ESCAPED_BYTE.sub("\ufffd", value)


def _location(value: str | None) -> str | None:
    """A Location header: bytes that are not UTF-8 percent-encoded, as browsers request them."""
    if value is None or value.isascii():
        return value
    return _ESCAPED_BYTE.sub(lambda byte: f"%{ord(byte.group()) - 0xDC00:02X}", value)


# Headers read from one response before it is refused as bad-response.
MAX_HEADERS = 1024
# The error of a URL whose host may not be connected to (net/addresses.py).
PRIVATE_ADDRESS = "private-address"


def resolver() -> AbstractResolver:
    """The resolver under the lookups' memory and the address guard (tests swap this one):
    c-ares's, through aiodns (net/lookups.py)."""
    return AsyncResolver()


# The host of the paced request the current task is making (None: unpaced), for the
# pool's connect, which aiohttp calls in the same task (Fetcher._connected).
_LEAVING: ContextVar[str | None] = ContextVar("leaving", default=None)


class Pacer(Protocol):
    """The politeness gap as requests leave (frontier/politeness.py): ``pace`` waits
    until a request to the host may go; ``sent`` moves the host's last request to
    now, when its connection is ready and its bytes are about to be written (a new
    connection or a busy loop may have held it up since ``pace``)."""

    async def pace(self, host: str) -> None: ...

    def sent(self, host: str) -> None: ...


class Fetcher:
    """Owns the crawl's single ClientSession; use as an async context manager."""

    def __init__(
        self,
        *,
        concurrency: int,
        timeout: float,
        user_agent: str,
        addresses: AddressPolicy,
        recorder: Callable[[Response], None] | None = None,
        identity: Identity | None = None,
        cookies: aiohttp.abc.AbstractCookieJar | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._addresses = addresses
        # Waits, before each request, until its host's politeness gap allows it to leave.
        self._pacer = pacer
        self._identity = identity or Identity(())
        self._cookies = cookies
        self._recorder = recorder
        self._semaphore = asyncio.Semaphore(concurrency)
        self._deadlines = Deadlines()
        self._timeout = timeout
        self._concurrency = concurrency
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._lookups: Lookups | None = None

    async def __aenter__(self) -> Fetcher:
        self._lookups = Lookups(resolver())
        connector = pool_for(
            self._concurrency, GuardedResolver(self._addresses, self._lookups), self._connected
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={
                "User-Agent": self._user_agent,
                "Accept": _ACCEPT,
                "Accept-Encoding": "gzip, deflate, br",
            },
            timeout=aiohttp.ClientTimeout(total=None),
            # Cookies the sites set are kept for the crawl (identity.py).
            cookie_jar=self._cookies or CookieJar(),
            # bodies.Decoder undoes Content-Encoding, bounded by --max-bytes.
            auto_decompress=False,
            raise_for_status=False,
            # aiohttp's default (128) fails a page with many Set-Cookie headers, which
            # browsers load; a header line stays bounded by max_field_size (8 KiB).
            max_headers=MAX_HEADERS,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _connected(self) -> None:
        """The pool's word that the current task's request has its connection and is
        written now: a paced request's host is told its gap counts from here."""
        host = _LEAVING.get()
        if host is not None:
            assert self._pacer is not None
            self._pacer.sent(host)

    def looking_up(self, url: str) -> float | None:
        """How long the name of ``url``'s host has been looked up (net/lookups.py), the
        lookup started if it was not; None once it is known, and for a host that is an
        address or a request that goes through a proxy (the proxy looks it up)."""
        if self._lookups is None or self._identity.proxy(url) is not None:
            return None
        parsed = URL(url, encoded=True)
        host = parsed.raw_host
        if not host or address_kind(host) is not None:
            return None
        return self._lookups.pending(host, parsed.port or 0)

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        any_type: bool = False,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        read: bool = True,
        data: bytes | None = None,
        paced: bool = True,
    ) -> Response:
        """One request (GET, or HEAD; any method with ``data`` for a rendered page's
        scripts) of ``url``. The body is read for 2xx HTML answers (any 2xx if
        ``any_type``; none unless ``read``); other bodies only when small (kept, so
        the connection can be reused). Unless ``paced`` is false the request waits
        for its host's politeness gap.

        A body cut at ``max_bytes`` comes back with error "too-large" and its prefix.
        """
        assert self._session is not None, "Fetcher used outside 'async with'"
        proxy = self._identity.proxy(url)
        if self._addresses.refuses_url(url, direct=proxy is None):
            return Response(url, None, error=PRIVATE_ADDRESS)
        started = time.monotonic()
        async with self._semaphore:
            host = None
            if self._pacer is not None and paced:
                host = host_key(url)
                await self._pacer.pace(host)
            deadline = self._deadlines.start(self._timeout)
            leaving = _LEAVING.set(host)
            try:
                wanted = _Wanted(method, read, any_type, max_bytes, proxy, data)
                response = await self._request(url, wanted, headers, started)
            except asyncio.CancelledError:
                if not deadline.cut():
                    raise
                response = _failed(url, TimeoutError(), started)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                response = _failed(url, error, started)
            finally:
                _LEAVING.reset(leaving)
                deadline.end()
        if self._recorder is not None:
            self._recorder(response)
        return response

    async def _request(
        self, url: str, want: _Wanted, headers: dict[str, str] | None, started: float
    ) -> Response:
        assert self._session is not None
        given = self._identity.headers(url)
        if given is not None:
            headers = {**given, **(headers or {})}
        async with self._session.request(
            want.method,
            URL(url, encoded=True),
            allow_redirects=False,
            headers=headers,
            proxy=want.proxy,
            data=want.data,
        ) as answer:
            content_type, body, error, complete = await _read(answer, want)
            return Response(
                url,
                answer.status,
                content_type=content_type,
                charset=answer.charset,
                location=_location(answer.headers.get("Location")),
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
                x_robots_tag=header_text(answer.headers.get("X-Robots-Tag")),
                body=body,
                error=error,
                etag=header_text(answer.headers.get("ETag")),
                last_modified=header_text(answer.headers.get("Last-Modified")),
                headers=answer.headers,
                request_headers=answer.request_info.headers,
                reason=header_text(answer.reason) or "",
                method=want.method,
                complete=complete,
                elapsed_ms=int((time.monotonic() - started) * 1000),
            )


async def _read(
    answer: aiohttp.ClientResponse, want: _Wanted
) -> tuple[str | None, bytes, str | None, bool]:
    """The answer's media type, its body as far as it is read, the body's error, and
    whether the body was read whole. A page sent with no useful media type is read
    as far as its first bytes tell whether it is HTML, and taken as text/html if so,
    as a browser takes it (any_type reads keep the type sent)."""
    content_type = _media_type(answer.headers.get("Content-Type"))
    if want.method == "HEAD":
        return content_type, b"", None, True
    sniffed = not want.any_type and sniffable(content_type, answer.headers)
    readable = want.any_type or content_type in HTML_TYPES or sniffed
    if want.read and 200 <= answer.status < 300 and readable:
        test = sniffs_as_html if sniffed else None
        body, error = await read_capped(answer, want.max_bytes, wanted=test)
        if error == UNWANTED:
            return content_type, b"", None, False
        media_type = "text/html" if sniffed else content_type
        return media_type, body, error, error is None
    if (answer.content_length or _DRAIN_BYTES + 1) <= _DRAIN_BYTES:
        body, error = await read_capped(answer, _DRAIN_BYTES)
        return content_type, body, None, error is None
    return content_type, b"", None, False


def _failed(url: str, error: BaseException, started: float) -> Response:
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return Response(url, None, error=failure_reason(error), elapsed_ms=elapsed_ms)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What one request asks for: its method, which body to read, how much, the proxy
    it goes through, and what it sends."""

    method: str
    read: bool
    any_type: bool
    max_bytes: int
    proxy: str | None
    data: bytes | None = None
