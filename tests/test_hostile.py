"""Hostile and broken servers: every misbehaviour ends as a record with a clear
reason, the crawl goes on and finishes by itself, nothing is written outside the
output folder. Real servers on loopback (aiohttp.web, or raw sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import brotli
import pytest
from aiohttp import web
from warcio.archiveiterator import ArchiveIterator

from conftest import TLS, Handler, SiteFactory, html_page, read_jsonl, run_process, static_site
from crawler import CrawlConfig, Crawler, LinkCheck, crawl
from crawler.net import fetcher
from crawler.net.bodies import sniffs_as_html
from test_cli import run_cli


def quick(seed: str, out: Path, **settings: object) -> CrawlConfig:
    values: dict[str, object] = {"retries": 0, "timeout": 2.0, "no_sitemaps": True}
    values.update(settings)
    return CrawlConfig(seeds=(seed,), output_dir=out, **values)  # type: ignore[arg-type]


def records_by_path(site_url: str, out: Path) -> dict[str, dict[str, object]]:
    return {str(r["url"]).removeprefix(site_url): r for r in read_jsonl(out / "pages.jsonl")}


def redirect_to(location: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handler


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        for writer in writers:
            writer.close()
            await writer.wait_closed()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_hostile_redirects(serve: SiteFactory, tmp_path: Path) -> None:
    port = closed_port()

    async def chain(request: web.Request) -> web.StreamResponse:
        number = int(request.match_info["n"])
        raise web.HTTPFound(f"/chain/{number + 1}")

    targets = {
        "/to-file": "file:///etc/passwd",
        "/to-js": "javascript:alert(1)",
        "/to-mail": "mailto:a@example.org",
        "/to-ftp": "ftp://example.org/x",
        "/to-data": "data:text/html,hi",
        "/to-closed": f"http://127.0.0.1:{port}/",
        "/to-offsite": "http://offsite.invalid/page",
    }
    routes = {path: redirect_to(location) for path, location in targets.items()}
    routes["/chain/{n}"] = chain
    routes |= static_site({"/": [*targets, "/chain/0"]})
    site = await serve(routes)

    await crawl(quick(site.url + "/", tmp_path))

    records = records_by_path(site.url, tmp_path)
    for path in ("/to-file", "/to-js", "/to-mail", "/to-ftp", "/to-data"):
        assert records[path]["error"] == "bad-redirect", path
    assert records["/to-closed"]["error"] == "connection-refused"
    assert records["/to-closed"]["final_url"] == f"http://127.0.0.1:{port}/"
    assert records["/to-offsite"]["status"] == 302
    assert records["/to-offsite"]["final_url"] == "http://offsite.invalid/page"
    assert records["/chain/0"]["error"] == "too-many-redirects"
    assert site.count("/chain/11") == 0


async def test_slow_servers_are_cut_by_the_total_deadline(
    serve: SiteFactory, silent_port: int, tmp_path: Path
) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        for _ in range(200):
            await response.write(b"<p>.</p>")
            await asyncio.sleep(0.05)
        return response

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html><body>half")
        await asyncio.sleep(30)
        return response

    silent = f"http://127.0.0.1:{silent_port}/"
    routes = static_site({"/": ["/trickle", "/stall", silent]})
    site = await serve(routes | {"/trickle": trickle, "/stall": stall})

    config = quick(site.url + "/", tmp_path, timeout=1.0, ignore_robots=True)
    await asyncio.wait_for(crawl(config), 20)

    records = records_by_path(site.url, tmp_path)
    assert records["/trickle"]["error"] == "timeout"
    assert records["/stall"]["error"] == "timeout"
    assert records[silent.removeprefix(site.url)]["error"] == "timeout"
    assert all(int(r["elapsed_ms"]) < 3000 for r in records.values())  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
    ],
)
async def test_decompression_bombs_are_cut_at_max_bytes(
    serve: SiteFactory, tmp_path: Path, encoding: str, compress: object
) -> None:
    bomb = compress(b"<html>" + b" " * 200_000_000)  # type: ignore[operator]
    assert len(bomb) < 1_000_000

    async def exploding(_: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": encoding, "Content-Type": "text/html"}
        return web.Response(body=bomb, headers=headers)

    site = await serve({"/": exploding})

    await crawl(quick(site.url + "/", tmp_path, max_bytes=1_000_000, ignore_robots=True))

    [record] = read_jsonl(tmp_path / "pages.jsonl")
    assert record["error"] == "too-large"
    assert record["bytes"] <= 1_000_000


async def test_lying_content_length_and_reset_mid_body(serve: SiteFactory, tmp_path: Path) -> None:
    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/html", "Content-Length": "100000"}
        )
        await response.prepare(request)
        await response.write(b"<html><a href='/after'>x</a>")
        assert request.transport is not None
        request.transport.close()
        return response

    async def reset(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html>" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def long(request: web.Request) -> web.StreamResponse:
        response = web.Response(
            body=b"<html><title>short</title>" + b"x" * 500, content_type="text/html"
        )
        return response

    routes = static_site({"/": ["/short", "/reset", "/long"]})
    site = await serve(routes | {"/short": short, "/reset": reset, "/long": long})

    await crawl(quick(site.url + "/", tmp_path, ignore_robots=True, retries=1))

    records = records_by_path(site.url, tmp_path)
    assert records["/short"]["error"] == "connection-reset"
    assert records["/reset"]["error"] == "connection-reset"
    assert records["/long"]["title"] == "short"
    assert site.count("/after") == 0
    assert site.count("/short") == 2  # retried once


async def test_content_that_lies_or_is_garbage(serve: SiteFactory, tmp_path: Path) -> None:
    def raw(body: bytes, content_type: str) -> Handler:
        async def handler(_: web.Request) -> web.StreamResponse:
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    pages = {
        "/sjis": raw(
            "<title>日本</title><a href='/from-sjis'>x</a>".encode("shift_jis"),
            "text/html; charset=shift_jis",
        ),
        "/utf16": raw("<a href='/from-utf16'>x</a>".encode("utf-16"), "text/html"),
        "/wrong-charset": raw(
            "<a href='/from-wrong'>é</a>".encode("latin-1"), "text/html; charset=utf-8"
        ),
        "/garbage": raw(bytes(range(256)) * 100 + b"\x00<a href='/from-garbage'>", "text/html"),
        "/binary": raw(bytes(range(256)) * 1000, "text/html"),
        "/deep": raw(b"<div>" * 100_000 + b"<a href='/from-deep'>x</a>", "text/html"),
        "/image": raw(b"\x89PNG" + b"\x00" * 100, "image/png"),
    }
    found = static_site(
        {
            path: []
            for path in ("/from-sjis", "/from-utf16", "/from-wrong", "/from-garbage", "/from-deep")
        }
    )
    site = await serve(static_site({"/": list(pages)}) | pages | found)

    stats = await crawl(quick(site.url + "/", tmp_path, ignore_robots=True))

    records = records_by_path(site.url, tmp_path)
    assert {"/from-sjis", "/from-utf16", "/from-wrong", "/from-garbage"} <= set(records)
    assert records["/sjis"]["title"] == "日本"
    assert records["/image"]["content_type"] == "image/png"
    assert records["/image"]["links"] == 0
    assert records["/binary"]["status"] == 200
    assert stats.pages == len(records)


async def test_429_and_503_storms_end_in_bounded_time(serve: SiteFactory, tmp_path: Path) -> None:
    async def storm(_: web.Request) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "3600"})

    routes = static_site({"/": [f"/busy/{n}" for n in range(10)]})
    site = await serve(routes | {"/busy/{n}": storm})

    config = quick(site.url + "/", tmp_path, retries=2, max_retry_after=0.2, ignore_robots=True)
    stats = await asyncio.wait_for(crawl(config), 30)

    assert stats.pages == 11
    assert stats.status_counts["429"] == 10
    assert stats.retries == 20


async def test_dns_and_tls_failures(serve: SiteFactory, tmp_path: Path) -> None:
    plain = await serve(static_site({"/": []}), host="127.0.0.2")
    tls_url = plain.url.replace("http://", "https://") + "/"
    unknown = await serve(static_site({"/": []}), host="127.0.0.2", certificate="good.pem")
    links = ["http://nowhere.invalid/", tls_url, unknown.url + "/"]
    site = await serve(static_site({"/": links}))
    config = quick(
        site.url + "/", tmp_path, allow_domain=("invalid", "127.0.0.2"), ignore_robots=True
    )

    await crawl(config)

    records = {str(r["url"]): r for r in read_jsonl(tmp_path / "pages.jsonl")}
    assert records["http://nowhere.invalid/"]["error"] == "dns"
    assert records[tls_url]["error"] == "tls"  # no TLS there at all
    # Signed by the tests' authority, which this process does not trust.
    assert records[unknown.url + "/"]["error"] == "certificate"


async def test_certificates_are_verified_and_a_private_authority_is_trusted_by_ssl_cert_file(
    serve: SiteFactory, tmp_path: Path
) -> None:
    bad = {
        name: (await serve(static_site({"/": []}), certificate=f"{name}.pem")).url + "/"
        for name in ("expired", "other-name", "self-signed")
    }
    good = await serve(static_site({"/": list(bad.values())}), certificate="good.pem")
    trusting = {**os.environ, "SSL_CERT_FILE": str(TLS / "ca.pem")}

    code, _, err = await run_cli("crawl", good.url + "/", "-o", "out", cwd=tmp_path, env=trusting)
    assert code == 0, err
    records = {str(r["url"]): r for r in read_jsonl(tmp_path / "out" / "pages.jsonl")}
    assert records[good.url + "/"]["status"] == 200
    assert {records[url]["error"] for url in bad.values()} == {"certificate"}

    code, _, err = await run_cli("crawl", bad["expired"], "-o", "seed", cwd=tmp_path, env=trusting)
    assert code == 8 and "Traceback" not in err
    assert f"seed {bad['expired']} not fetched: its TLS certificate is not valid" in err


async def test_traps_are_bounded(serve: SiteFactory, tmp_path: Path) -> None:
    async def calendar(request: web.Request) -> web.StreamResponse:
        month = int(request.match_info["month"])
        return html_page(str(month), [f"/calendar/{month + 1}"])

    async def growing(request: web.Request) -> web.StreamResponse:
        return html_page("grow", [request.path + "a/", request.path + "b/"])

    async def long_links(_: web.Request) -> web.StreamResponse:
        return html_page("long", ["/x" * 3000, "/fine"])

    spellings = [
        "/same?b=2&a=1",
        "/same?a=1&b=2#frag",
        "/./same?a=1&b=2",
        "/x/../same?a=1&b=2",
        "/%73ame?a=1&b=2",
        "http://127.0.0.1:{port}/same?a=1&b=2",
    ]

    async def home(request: web.Request) -> web.StreamResponse:
        port = request.url.port
        links = [link.replace("{port}", str(port)) for link in spellings]
        return html_page("home", [*links, "/calendar/0", "/grow/", "/long"])

    routes: dict[str, Handler] = {
        "/": home,
        "/calendar/{month}": calendar,
        "/grow/{tail:.*}": growing,
    }
    routes |= {"/long": long_links} | static_site({"/same": [], "/fine": []})
    site = await serve(routes)

    config = quick(site.url + "/", tmp_path, max_depth=20, ignore_robots=True)
    stats = await asyncio.wait_for(crawl(config), 60)

    assert site.count("/same?a=1&b=2") == 1
    assert all(len(path) <= 2048 for path in site.requests)
    grow_paths = [path for path in site.requests if path.startswith("/grow/")]
    assert all(path.count("a/") <= 4 and path.count("b/") <= 4 for path in grow_paths)
    assert max(int(p.rsplit("/", 1)[1]) for p in site.requests if p.startswith("/calendar/")) == 19
    assert stats.dropped_links > 0


async def test_mirror_paths_stay_inside_and_never_collide(
    serve: SiteFactory, tmp_path: Path
) -> None:
    nasty = [
        "/a/../../../../escape",
        "/%2e%2e/%2e%2e/escape2",
        "/dir%2F..%2F..%2Fescape3",
        "/nul%00byte",
        "/" + "n" * 400,
        "/Case",
        "/case",
        "/q?x=1",
        "/q?x=2",
        "/q",
        "/dir/",
        "/dir",
        "/dir/index.html",
        "/..%5c..%5cwin",
    ]

    async def anything(request: web.Request) -> web.StreamResponse:
        return html_page(request.path_qs)

    async def home(_: web.Request) -> web.StreamResponse:
        return html_page("home", nasty)

    site = await serve({"/": home, "/{tail:.+}": anything})
    out = tmp_path / "out"

    await crawl(quick(site.url + "/", out, save_html=True, ignore_robots=True))

    records = read_jsonl(out / "pages.jsonl")
    ok = [r for r in records if r["status"] == 200]
    files = [path for path in (out / "html").rglob("*") if path.is_file()]
    assert len(files) == len(ok)
    root = (out / "html").resolve()
    assert all(path.resolve().is_relative_to(root) for path in files)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    contents = {path.read_text() for path in files}
    assert len(contents) == len(files), "one page's file overwrote another's"


async def test_a_corrupt_or_unknown_encoding_is_a_record(
    serve: SiteFactory, tmp_path: Path
) -> None:
    def encoded(encoding: str, body: bytes) -> Handler:
        async def handler(_: web.Request) -> web.StreamResponse:
            headers = {"Content-Encoding": encoding, "Content-Type": "text/html"}
            return web.Response(body=body, headers=headers)

        return handler

    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = raw_deflate.compress(b"<title>raw</title>") + raw_deflate.flush()
    routes = {
        "/corrupt": encoded("gzip", b"\x1f\x8b this is not gzip"),
        "/unknown": encoded("zstd-ish", b"<html>"),
        "/raw-deflate": encoded("deflate", deflated),
    }
    site = await serve(static_site({"/": list(routes)}) | routes)

    await crawl(quick(site.url + "/", tmp_path, ignore_robots=True))

    records = records_by_path(site.url, tmp_path)
    assert records["/corrupt"]["error"] == "bad-encoding"
    assert records["/unknown"]["error"] == "bad-encoding"
    assert records["/raw-deflate"]["title"] == "raw"


@pytest.mark.parametrize("ignore_robots", [False, True])
async def test_a_host_that_refuses_connections_costs_one_request_and_its_retries(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore_robots: bool
) -> None:
    port = closed_port()
    dead = f"http://127.0.0.2:{port}"
    site = await serve(static_site({"/": [f"{dead}/p{number}" for number in range(5)]}))
    requests: list[str] = []
    real = fetcher.Fetcher.fetch

    async def counted(self: fetcher.Fetcher, url: str, **options: object) -> fetcher.Response:
        if url.startswith(dead):
            requests.append(url)
        return await real(self, url, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(fetcher.Fetcher, "fetch", counted)
    config = quick(
        site.url + "/",
        tmp_path,
        allow_domain=("127.0.0.2",),
        retries=2,
        ignore_robots=ignore_robots,
    )

    stats = await crawl(config)

    assert len(requests) == 3  # robots.txt or the first page, and its two retries
    assert stats.error_counts == {"connection-refused": 5} and stats.finished


async def test_header_bytes_that_are_not_utf8_are_records(tmp_path: Path) -> None:
    """A Location, ETag, Content-Type or reason phrase with bytes that are not UTF-8
    (aiohttp keeps them as lone surrogates) is written to pages.jsonl, state.sqlite
    and the WARC file; a redirect goes where a browser goes, its bytes percent-encoded."""
    requested: list[bytes] = []
    page = b"<title>t</title><a href='/r'>r</a><a href='/typed'>t</a>"
    answers = {
        b"/": b'200 OK\r\nContent-Type: text/html\r\nETag: "\xff\xfe"\r\n'
        b"Last-Modified: Mon\xe9\r\nX-Robots-Tag: \xffnone",
        b"/r": b"302 Tr\xe8s bien\r\nLocation: /caf\xe9",
        b"/caf%E9": b"200 OK\r\nContent-Type: text/html",
        b"/typed": b"200 OK\r\nContent-Type: text/h\xfftml",
    }

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
                requested.append(path)
                head = answers.get(path, b"404 Not Found")
                body = page if path == b"/" else b""
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    site = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    warc = tmp_path / "crawl.warc.gz"
    async with server:
        await crawl(quick(site + "/", tmp_path / "out", warc=warc, ignore_robots=True))
        await crawl(quick(site + "/", tmp_path / "out", incremental=True, ignore_robots=True))

    records = records_by_path(site, tmp_path / "out")
    assert records["/r"]["status"] == 200
    assert records["/r"]["final_url"] == site + "/caf%E9"
    assert records["/"]["change"] == "unchanged"  # its ETag and Last-Modified were kept
    assert records["/typed"]["content_type"] == "text/h\ufffdtml"
    assert b"/caf%E9" in requested
    with warc.open("rb") as stream:
        statuses = [
            r.http_headers.get_statuscode() for r in ArchiveIterator(stream) if r.http_headers
        ]
    assert statuses.count("302") == 1


# The crawler with a page reader that never returns: what a page that takes hours to
# read looks like from the loop (the work is in a thread).
_STUCK_READER = """
import sys, time
from crawler.loop import parsing
parsing.parse_response = lambda *args, **kwargs: time.sleep(3600)
from crawler.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_max_time_ends_a_crawl_whose_page_reading_never_ends(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """--max-time abandons the thread's work: the process ends, the page stays pending
    for --resume (was: the process waited for the thread at exit, for an hour)."""
    big = "<html><body>" + "<p>words</p>" * 60_000 + "</body></html>"  # read in a thread

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=big, content_type="text/html")

    site = await serve({"/": page})
    code, _, err = await run_process(
        sys.executable, "-c", _STUCK_READER, "crawl", site.url + "/", "-o", "out", "-q",
        "--max-time", "1", "--no-sitemaps", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["finished"] is False and stats["pages"] == 0, stats


def test_a_body_of_unknown_type_is_html_by_its_opening_tag_as_browsers_sniff() -> None:
    assert sniffs_as_html(b"<!DOCTYPE html>")
    assert sniffs_as_html(b"\r\n \t<HtMl lang=en>")
    assert sniffs_as_html(b"<p>short")
    assert sniffs_as_html(b"<!-- a comment -->")
    assert sniffs_as_html(b"<a href=/x>")
    assert not sniffs_as_html(b"<abbr>")  # "<A" must end the tag: "<ABBR" is no HTML opening
    assert not sniffs_as_html(b"<!--x-->")
    assert not sniffs_as_html(b"<?xml version='1.0'?><html>")
    assert not sniffs_as_html(b"\xef\xbb\xbf<html>")  # a BOM is text, as in MIME Sniffing
    assert not sniffs_as_html(b"%PDF-1.4 <html>")
    assert not sniffs_as_html(b" " * 1445 + b"<html>")  # past the resource header
    assert not sniffs_as_html(b"")


async def test_a_page_sent_without_a_media_type_is_read_as_a_browser_reads_it(
    tmp_path: Path,
) -> None:
    """No Content-Type, or one that says nothing: HTML by its first bytes (MIME
    Sniffing), unless the server says nosniff; any other body is left unread."""
    page = b"<!DOCTYPE html><title>%s</title><a href='/%s'>next</a>"
    binary = b"%PDF-1.4\n" + bytes(range(256)) * 2000
    answers = {
        b"/": (b"", page % (b"none", b"unknown")),
        b"/unknown": (
            b"Content-Type: unknown/unknown\r\n",
            b"\n <p id=here>" + page % (b"u", b"a"),
        ),
        b"/a": (
            b"Content-Type: */*\r\n",
            b"<a href=/nosniff>.</a><a href=/plain>.</a><a href=/pdf>.</a><a href=/typo>.",
        ),
        # No valid type: sniffed. Of two, the last valid one (Fetch), as Chromium reads them.
        b"/typo": (b"Content-Type: text/html charset=utf-8\r\n", page % (b"typo", b"two")),
        b"/two": (b"Content-Type: text/html, text/plain\r\n", page % (b"two", b"hidden3")),
        b"/nosniff": (b"X-Content-Type-Options: NoSniff\r\n", page % (b"nosniff", b"hidden1")),
        b"/plain": (b"Content-Type: text/plain\r\n", page % (b"plain", b"hidden2")),
        b"/pdf": (b"", binary),
    }

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
                head, body = answers.get(path, (b"", b""))
                status = b"200 OK" if path in answers else b"404 Not Found"
                writer.write(
                    b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n" % (status, head, len(body))
                    + body
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    site = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    other = await asyncio.start_server(answer, "127.0.0.2", 0)
    away = f"http://127.0.0.2:{other.sockets[0].getsockname()[1]}/away"
    answers[b"/away"] = (
        b"Content-Type: text/html\r\n",
        b"<a href=%s/unknown#here>.</a><a href=%s/unknown#gone>" % (site.encode(), site.encode()),
    )
    async with server, other:
        await crawl(quick(site + "/", tmp_path / "out"))
        await crawl(quick(site + "/pdf", tmp_path / "cut", max_bytes=1000))  # < SNIFF_BYTES
        # check reads another site's page for its ids alone: as a page all the same
        async with Crawler(
            quick(away, tmp_path / "check", check=True, check_fragments=True)
        ) as run:
            results = [result async for result in run if isinstance(result, LinkCheck)]
    fragments = {r.url.removeprefix(site): (r.result, r.error) for r in results if "#" in r.url}
    assert fragments == {
        "/unknown#here": ("ok", None),
        "/unknown#gone": ("broken", "fragment-missing"),
    }
    records = records_by_path(site, tmp_path / "out")
    assert set(records) == {"/", "/unknown", "/a", "/nosniff", "/plain", "/pdf", "/typo", "/two"}
    assert (records["/typo"]["content_type"], records["/typo"]["title"]) == ("text/html", "typo")
    assert (records["/two"]["content_type"], records["/two"]["links"]) == ("text/plain", 0)
    assert (records["/"]["content_type"], records["/"]["title"]) == ("text/html", "none")
    assert records["/unknown"]["title"] == "u" and records["/a"]["links"] == 4
    for path in ("/nosniff", "/plain"):
        assert records[path]["links"] == 0 and records[path]["title"] is None
    assert records["/nosniff"]["content_type"] is None
    assert (records["/pdf"]["content_type"], records["/pdf"]["bytes"]) == (None, 0)
    cut = records_by_path(site, tmp_path / "cut")["/pdf"]
    assert (cut["content_type"], cut["bytes"], cut["error"]) == (None, 0, None)
