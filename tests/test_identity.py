"""Headers, credentials, cookies and proxies reach the host they were given for, and only it."""

from __future__ import annotations

import base64
import contextlib
import http.cookies
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from conftest import SiteFactory, html_page, read_jsonl, static_site
from crawler import CrawlConfig, crawl
from crawler.loop.engine import fetcher_for
from crawler.net import fetcher
from crawler.net.identity import Identity, cookie_jar, proxies
from test_cli import assert_one_line_error, run_cli


def capture(seen: list[tuple[str, dict[str, str]]], links: dict[str, Any]) -> dict[str, Any]:
    """Routes that keep each request's path and headers; a str value is a redirect."""

    def handler(path: str, target: Any) -> Any:
        async def serve(request: web.Request) -> web.StreamResponse:
            seen.append((request.path, dict(request.headers)))
            if isinstance(target, str):
                raise web.HTTPFound(target)
            response = html_page(path, target)
            if path == "/":
                response.set_cookie("sid", "s3cret")
            return response

        return serve

    return {path: handler(path, target) for path, target in links.items()}


async def test_what_is_given_for_the_site_goes_to_the_site_only(
    serve: SiteFactory, tmp_path: Path
) -> None:
    theirs: list[tuple[str, dict[str, str]]] = []
    other = await serve(capture(theirs, {"/landing": [], "/robots.txt": []}), host="127.0.0.2")
    ours: list[tuple[str, dict[str, str]]] = []
    site = await serve(
        capture(ours, {"/": ["/a", "/away"], "/a": [], "/away": other.url + "/landing"})
    )
    host, port = site.url.removeprefix("http://").split(":")
    (tmp_path / "cookies.txt").write_text(
        "# Netscape HTTP Cookie File\n"
        f"{host}\tFALSE\t/\tFALSE\t0\tpref\tdark\n"
        "other.example\tFALSE\t/\tFALSE\t0\tleak\tno\n"
    )
    seed = f"http://ann:pa%3Ass@{host}:{port}/"
    code, _, err = await run_cli(
        "crawl",
        seed,
        "-o",
        "out",
        "-q",
        "--header",
        "X-Token: abc",
        "--cookies",
        "cookies.txt",
        "--allow-domain",
        "127.0.0.2",
        "--no-sitemaps",
        cwd=tmp_path,
    )
    assert code == 0, err
    requested = {path: headers for path, headers in ours}
    expected_auth = "Basic " + base64.b64encode(b"ann:pa:ss").decode()
    for path in ("/", "/a", "/away"):
        assert requested[path]["Authorization"] == expected_auth
        assert requested[path]["X-Token"] == "abc"
        assert "pref=dark" in requested[path]["Cookie"]
    assert "sid=s3cret" in requested["/a"]["Cookie"]  # set by the site, kept for the crawl
    assert "leak" not in requested["/a"]["Cookie"]
    assert [path for path, _ in theirs] == ["/robots.txt", "/landing"]
    for _, headers in theirs:  # after the redirect to another host: none of it
        assert not {"Authorization", "X-Token", "Cookie"} & set(headers)


@pytest.fixture
async def proxy() -> Any:
    """A forward HTTP proxy on 127.0.0.1 that keeps the absolute URLs it was asked for."""
    asked: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        asked.append(str(request.url))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(str(request.url), headers=headers, allow_redirects=False) as answer,
        ):
            body = await answer.read()
            kept = {
                k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "location")
            }
            return web.Response(status=answer.status, body=body, headers=kept)

    async with every_path(forward) as port:
        yield f"http://127.0.0.1:{port}", asked


@contextlib.asynccontextmanager
async def every_path(handler: Any) -> AsyncIterator[int]:
    """A server on 127.0.0.1 answering every method and path with ``handler``: its port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_proxies_from_the_environment_and_the_flag(
    serve: SiteFactory, tmp_path: Path, proxy: Any
) -> None:
    proxy_url, asked = proxy
    direct: list[tuple[str, dict[str, str]]] = []
    other = await serve(capture(direct, {"/": []}), host="127.0.0.2")
    seen: list[tuple[str, dict[str, str]]] = []
    site = await serve(capture(seen, {"/": ["/a", other.url + "/"], "/a": []}))
    env = {**os.environ, "HTTP_PROXY": proxy_url, "NO_PROXY": "127.0.0.2"}
    code, _, err = await run_cli(
        "crawl",
        site.url + "/",
        "-o",
        "env",
        "-q",
        "--allow-domain",
        "127.0.0.2",
        "--no-sitemaps",
        cwd=tmp_path,
        env=env,
    )
    assert code == 0, err
    assert sorted(asked) == sorted(site.url + path for path in ("/robots.txt", "/", "/a"))
    assert [path for path, _ in direct] == ["/"]  # NO_PROXY: direct, not through the proxy
    asked.clear()
    code, _, err = await run_cli(
        "crawl",
        site.url + "/",
        "-o",
        "flag",
        "-q",
        "--proxy",
        proxy_url,
        "--no-sitemaps",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert sorted(asked) == sorted(site.url + path for path in ("/robots.txt", "/", "/a"))


async def test_a_bad_cookies_file_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "cookies.txt").write_text("# Netscape HTTP Cookie File\nnot a cookie line\n")
    code, _, err = await run_cli(
        "crawl", "http://127.0.0.1:9/", "-o", "out", "--cookies", "cookies.txt", cwd=tmp_path
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is not a cookies.txt" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_seed_with_an_international_name_gets_its_headers() -> None:
    identity = Identity(["http://anna:pw@Bücher.example/"], headers=["X-Token: 1"])
    given = identity.headers("http://xn--bcher-kva.example/page")
    assert (
        given is not None and given["X-Token"] == "1" and given["Authorization"].startswith("Basic")
    )
    assert identity.headers("http://other.example/") is None


async def test_credentials_and_headers_stay_with_their_origin(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """Another port of the seed's host is another origin: it gets none of what was given."""
    theirs: list[tuple[str, dict[str, str]]] = []
    other = await serve(capture(theirs, {"/old": [], "/robots.txt": []}))
    ours: list[tuple[str, dict[str, str]]] = []
    site = await serve(capture(ours, {"/": ["/a", other.url + "/old"], "/a": []}))
    for given in (["--auth", "ann:pw"], []):
        ours.clear()
        theirs.clear()
        seed = site.url.replace("http://", "http://ann:pw@") + "/" if not given else site.url + "/"
        code, _, err = await run_cli(
            "crawl", seed, "-o", "out", "-q", "--header", "X-Token: abc", *given, cwd=tmp_path
        )
        assert code == 0, err
        assert {path for path, _ in ours} >= {"/", "/a"}
        for _, headers in ours:
            assert headers["Authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()
            assert headers["X-Token"] == "abc"
        assert {path for path, _ in theirs} == {"/robots.txt", "/old"}
        for _, headers in theirs:
            assert not {"Authorization", "X-Token"} & set(headers), headers


@pytest.mark.parametrize(
    ("seed", "url", "sent"),
    [
        ("https://site.example/", "https://site.example/page", True),
        ("https://site.example/", "http://site.example/page", False),  # never in clear
        ("https://site.example/", "https://site.example:8443/", False),
        ("http://site.example:8080/", "http://site.example:8080/x", True),
        ("http://site.example:8080/", "http://site.example/x", False),
        ("http://site.example/", "https://site.example/x", False),
        ("https://site.example/", "https://www.site.example/", False),
    ],
)
def test_the_origin_rule(seed: str, url: str, sent: bool) -> None:
    for identity in (
        Identity([seed], auth="ann:pw", headers=["X-Token: 1"]),
        Identity([seed.replace("://", "://ann:pw@")], headers=["X-Token: 1"]),
    ):
        given = identity.headers(url)
        assert (given is not None) == sent
        if given is not None:
            assert set(given) == {"Authorization", "X-Token"}


@pytest.mark.parametrize(
    ("domain", "setter", "kept_for"),
    [
        ("co.uk", "evil.co.uk", []),
        ("test", "cdn.other.test", []),
        ("github.io", "mine.github.io", []),
        ("other.test", "cdn.other.test", ["other.test", "www.other.test"]),
        ("co.uk", "co.uk", ["co.uk"]),  # the suffix's own host: a host-only cookie
        (".example.co.uk", "www.example.co.uk", ["example.co.uk", "a.example.co.uk"]),
    ],
)
async def test_no_cookie_for_a_public_suffix(domain: str, setter: str, kept_for: list[str]) -> None:
    jar = cookie_jar(None)
    cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    cookie["c"] = "1"
    cookie["c"]["domain"] = domain
    jar.update_cookies(cookie, URL(f"http://{setter}/"))
    for host in (
        "co.uk",
        "bank.co.uk",
        "site.test",
        "other.test",
        "www.other.test",
        "yours.github.io",
        "example.co.uk",
        "a.example.co.uk",
    ):
        sent = bool(jar.filter_cookies(URL(f"http://{host}/")))
        assert sent == (host in kept_for), host


async def test_a_site_setting_endless_cookies_keeps_the_jar_and_each_request_bounded(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """Each page sets 200 new cookies of 100 bytes. The jar keeps a bounded number (aiohttp's,
    as browsers do) and every request's Cookie header stays small enough for the server
    to take. With aiohttp 3.13 the jar was unbounded: the second page's header passed
    the 8 KB a server reads, it was refused (400), and the jar grew with every page."""
    sent: list[int] = []
    pages = [f"/p{index}" for index in range(30)]

    async def page(request: web.Request) -> web.StreamResponse:
        sent.append(len(request.headers.get("Cookie", "")))
        index = pages.index(request.path) if request.path in pages else -1
        response = html_page(request.path, pages[index + 1 : index + 2])
        for number in range(200):
            response.set_cookie(f"c{index}_{number}", "v" * 100)
        return response

    site = await serve({"/": page, **dict.fromkeys(pages, page)})
    config = CrawlConfig(
        seeds=[site.url + "/p0"],
        output_dir=tmp_path / "out",
        allow_private=True,
        no_sitemaps=True,
        concurrency=1,
    )
    stats = await crawl(config)
    records = read_jsonl(tmp_path / "out" / "pages.jsonl")
    assert [record["status"] for record in records] == [200] * len(pages)
    assert stats.ok == len(pages)
    assert len(sent) >= len(pages) and max(sent) <= 8190


class NamesResolver(AbstractResolver):
    """www.example.test on 127.0.0.1, every other name on 127.0.0.2."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = "127.0.0.1" if host == "www.example.test" else "127.0.0.2"
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


async def test_an_offsite_host_sets_no_cookie_for_the_seed_site(
    serve: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check HEADs an offsite URL that sets a cookie for the whole top-level name:
    the seed's pages asked after it carry no such cookie."""
    monkeypatch.setattr(fetcher, "resolver", NamesResolver)

    async def tracker(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="x", content_type="image/png")
        response.headers.add("Set-Cookie", "track=1; Domain=test; Path=/")
        response.headers.add("Set-Cookie", "uk=1; Domain=co.uk; Path=/")
        return response

    other = await serve({"/pixel.png": tracker}, host="127.0.0.2")
    seen: list[tuple[str, dict[str, str]]] = []
    port = other.url.rpartition(":")[2]
    site = await serve(
        capture(
            seen,
            {
                "/": ["/next", f"http://cdn.other.test:{port}/pixel.png"],
                "/next": ["/last"],
                "/last": [],
            },
        )
    )
    seed = site.url.replace("127.0.0.1", "www.example.test") + "/"
    config = CrawlConfig(
        seeds=[seed],
        output_dir=tmp_path / "out",
        check=True,
        allow_private=True,
        no_sitemaps=True,
        concurrency=1,
    )
    await crawl(config)
    assert {path for path, _ in seen} >= {"/", "/next", "/last"}
    assert other.count("/pixel.png") >= 1
    for _, headers in seen:
        assert "track" not in headers.get("Cookie", "") and "uk=" not in headers.get("Cookie", "")


@pytest.fixture
async def answering_proxy() -> Any:
    """An HTTP proxy on localhost that answers every request itself (it resolves no name),
    keeping what it was asked."""
    asked: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(str(request.url))
        return web.Response(text="<title>via proxy</title>", content_type="text/html")

    async with every_path(answer) as port:
        yield port, asked


async def test_the_proxy_is_trusted_as_the_proxy_never_as_a_destination(
    serve: SiteFactory, answering_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY names the proxy by host name (localhost): a public crawl's requests go
    through it, but a request that goes direct (NO_PROXY, or https with no HTTPS_PROXY)
    to localhost, at the proxy's port or another, meets the private-address rule."""
    port, asked = answering_proxy
    service = await serve(static_site({"/": []}))  # a loopback service, say an admin page
    service_port = service.url.rpartition(":")[2]
    monkeypatch.setenv("HTTP_PROXY", f"localhost:{port}")  # no scheme: http://, as curl
    monkeypatch.setenv("NO_PROXY", "localhost")
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    config = CrawlConfig(seeds=("http://public.example/",))
    async with fetcher_for(config, config, None, cookie_jar(None), proxies(None)) as fetch:
        through = await fetch.fetch("http://public.example/page", max_bytes=1000)
        assert through.status == 200 and b"via proxy" in through.body
        for url in (
            f"http://localhost:{service_port}/",  # NO_PROXY: direct
            f"http://localhost:{port}/",  # the proxy itself, as a destination
            f"https://localhost:{service_port}/",  # https: no proxy, direct
        ):
            answer = await fetch.fetch(url, max_bytes=1000)
            assert answer.error == "private-address", (url, answer)
    assert asked == ["http://public.example/page"]
    assert service.requests == []


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "socks5h://p:1080", "ftp://p/"])
async def test_a_proxy_that_cannot_be_used_is_refused_never_ignored(
    tmp_path: Path, proxy: str
) -> None:
    result = await run_cli(
        "crawl", "http://127.0.0.1:9/", "-o", "out", "--proxy", proxy, cwd=tmp_path
    )
    assert_one_line_error(result, 2, "only http:// proxies are supported")
    env = {**os.environ, "HTTPS_PROXY": proxy}
    result = await run_cli("crawl", "http://127.0.0.1:9/", "-o", "out", cwd=tmp_path, env=env)
    assert_one_line_error(result, 2, "only http:// proxies are supported")
    assert not (tmp_path / "out").exists()
