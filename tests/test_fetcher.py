"""The fetcher's failure handling, with aioresponses standing in for the network."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from conftest import SiteFactory
from crawler.net.addresses import AddressPolicy
from crawler.net.fetcher import Fetcher, failure_reason, parse_retry_after

# The test servers are on 127.0.0.1: a crawl seeded there may connect there.
LOOPBACK = AddressPolicy(["http://127.0.0.1/"], allow_private=False)

URL = "http://a.org/page"


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(
        concurrency=4, timeout=5.0, user_agent="test-agent", addresses=LOOPBACK
    ) as instance:
        yield instance


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError(), "timeout"),
        (
            aiohttp.ClientConnectorDNSError(
                aiohttp.client_reqrep.ConnectionKey("a.org", 80, False, True, None, None, None),
                OSError(-2, "Name or service not known"),
            ),
            "dns",
        ),
        (
            aiohttp.ClientConnectorError(
                aiohttp.client_reqrep.ConnectionKey("a.org", 80, False, True, None, None, None),
                OSError(111, "refused"),
            ),
            "connection-refused",
        ),
        (ssl.SSLError("bad cert"), "tls"),
        (aiohttp.ServerDisconnectedError(), "connection-reset"),
        (aiohttp.ClientPayloadError("cut"), "connection-reset"),
        (ConnectionResetError(), "connection-reset"),
        (aiohttp.InvalidURL("http://"), "invalid-url"),
        (aiohttp.ClientResponseError(None, (), status=400), "bad-response"),  # type: ignore[arg-type]
        (OSError("other"), "connection"),
    ],
)
def test_failure_reasons(error: BaseException, reason: str) -> None:
    assert failure_reason(error) == reason


async def test_network_failures_become_records(fetcher: Fetcher) -> None:
    with aioresponses() as mocked:
        mocked.get(URL, exception=aiohttp.ServerDisconnectedError())
        response = await fetcher.fetch(URL, max_bytes=1000)
    assert response.status is None
    assert response.error == "connection-reset"


async def test_timeout_is_a_record(fetcher: Fetcher) -> None:
    with aioresponses() as mocked:
        mocked.get(URL, exception=TimeoutError())
        response = await fetcher.fetch(URL, max_bytes=1000)
    assert response.error == "timeout"


async def test_html_body_is_read_and_capped(serve: SiteFactory, fetcher: Fetcher) -> None:
    async def big(_: web.Request) -> web.StreamResponse:
        return web.Response(text="<p>" + "x" * 5000, content_type="text/html")

    async def small(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"<p>small</p>", content_type="text/html", charset="latin-1")

    site = await serve({"/big": big, "/small": small})
    cut = await fetcher.fetch(site.url + "/big", max_bytes=1000)
    whole = await fetcher.fetch(site.url + "/small", max_bytes=1000)
    assert cut.error == "too-large" and len(cut.body) == 1000
    assert whole.error is None and whole.body == b"<p>small</p>"
    assert whole.content_type == "text/html" and whole.charset == "latin-1"


async def test_other_types_and_error_pages_are_not_read(
    serve: SiteFactory, fetcher: Fetcher
) -> None:
    async def pdf(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"%PDF" * 100_000, content_type="application/pdf")

    async def missing(_: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="<p>not found</p>", content_type="text/html")

    site = await serve({"/doc.pdf": pdf, "/missing": missing})
    document = await fetcher.fetch(site.url + "/doc.pdf", max_bytes=1000)
    absent = await fetcher.fetch(site.url + "/missing", max_bytes=1000)
    assert document.status == 200 and document.body == b"" and not document.complete
    assert document.content_type == "application/pdf"
    assert absent.status == 404 and absent.body == b"<p>not found</p>" and absent.complete


async def test_redirects_are_not_followed_and_headers_are_read(
    serve: SiteFactory, fetcher: Fetcher
) -> None:
    async def moved(_: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/elsewhere")

    async def busy(_: web.Request) -> web.StreamResponse:
        headers = {"Retry-After": "7", "ETag": '"v1"', "X-Robots-Tag": "nofollow"}
        return web.Response(status=429, headers=headers)

    site = await serve({"/moved": moved, "/busy": busy})
    redirect = await fetcher.fetch(site.url + "/moved", max_bytes=1000)
    throttled = await fetcher.fetch(site.url + "/busy", max_bytes=1000)
    assert redirect.status == 301 and redirect.location == "/elsewhere"
    assert throttled.retry_after == 7.0
    assert throttled.etag == '"v1"' and throttled.x_robots_tag == "nofollow"


async def test_the_deadline_covers_the_whole_body(serve: SiteFactory) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"<p>x</p>")
            await asyncio.sleep(0.05)
        return response

    site = await serve({"/trickle": trickle})
    async with Fetcher(concurrency=1, timeout=0.5, user_agent="t", addresses=LOOPBACK) as fetcher:
        response = await fetcher.fetch(site.url + "/trickle", max_bytes=100_000)
    assert response.error == "timeout"
    assert response.elapsed_ms < 5000


async def test_deadlines_cut_requests_and_pass_other_cancellations_on(serve: SiteFactory) -> None:
    """Deadlines share timers (net/deadlines.py): a request past its own is a timeout
    record and its task goes on; one within it is not touched; a cancellation from
    outside (Ctrl-C, a stopping crawl) is passed on, not taken for a timeout."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return web.Response(text="<p>late</p>", content_type="text/html")

    site = await serve({"/slow": slow})
    async with Fetcher(concurrency=8, timeout=0.3, user_agent="t", addresses=LOOPBACK) as fetcher:
        cut, whole = await asyncio.gather(
            fetcher.fetch(site.url + "/slow?s=3", max_bytes=1000),
            fetcher.fetch(site.url + "/slow?s=0", max_bytes=1000),
        )
        assert cut.error == "timeout" and 300 <= cut.elapsed_ms < 2000
        assert whole.status == 200 and whole.body == b"<p>late</p>"
        await asyncio.sleep(0.5)  # the cut task was given back: it is not cancelled again

        request = asyncio.create_task(fetcher.fetch(site.url + "/slow?s=3", max_bytes=1000))
        await asyncio.sleep(0.1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_a_page_with_many_headers_is_a_page(serve: SiteFactory, fetcher: Fetcher) -> None:
    async def cookies(_: web.Request) -> web.StreamResponse:
        response = web.Response(text="<a href='/x'>x</a>", content_type="text/html")
        for number in range(200):
            response.headers.add("Set-Cookie", f"c{number}=v; Path=/")
        return response

    site = await serve({"/": cookies})

    response = await fetcher.fetch(site.url + "/", max_bytes=10_000)

    assert response.status == 200 and response.error is None
    assert b"href" in response.body


async def test_a_request_is_paced_and_then_told_sent_once_its_connection_is_ready(
    serve: SiteFactory,
) -> None:
    """The pacer hears of each request twice: pace() before it, sent() when aiohttp has
    its connection (made or kept) and writes it, so the gap counts from the write."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text="x")

    site = await serve({"/{path:.*}": answer})
    heard: list[tuple[str, str]] = []

    class Pacer:
        async def pace(self, host: str) -> None:
            heard.append(("pace", host))

        def sent(self, host: str) -> None:
            heard.append(("sent", host))

    host = site.url.removeprefix("http://")
    async with Fetcher(
        concurrency=1, timeout=5, user_agent="t", addresses=LOOPBACK, pacer=Pacer()
    ) as fetcher:
        for path in ("/a", "/b"):  # a new connection, then the same one kept
            assert (await fetcher.fetch(site.url + path, max_bytes=100)).status == 200
    assert heard == [("pace", host), ("sent", host)] * 2
