"""Name lookups (net/lookups.py): c-ares against a real DNS server on loopback that
answers slowly or not at all, and the kept answers' bounds."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import AsyncResolver
from local_dns import LocalDns

from conftest import SiteFactory, html_page
from crawler import CrawlConfig, Crawler, PageRecord
from crawler.net import fetcher
from crawler.net.lookups import TTL, Lookups


async def test_a_crawl_across_names_of_a_slow_name_server_that_drops_some(
    serve: SiteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 live names (all served by one server on 127.0.0.2) and 20 dead ones, each
    linked from every page of the seed's site: every live page is fetched, each name is
    asked of the name server once (an A and an AAAA question), and every link to a dead
    name is reported dns."""

    async def any_page(request: web.Request) -> web.Response:
        return html_page(request.host)

    other = await serve({"/{path:.*}": any_page}, host="127.0.0.2")
    live = [f"live{n}.test" for n in range(20)]
    dead = [f"dead{n}.test" for n in range(20)]
    port = other.url.rsplit(":", 1)[1]
    links = [f"http://{name}:{port}/" for name in live + dead]
    site = await serve({f"/{n}": _page([*links, f"/{n + 1}"]) for n in range(10)})
    dns = await LocalDns(dict.fromkeys(live, "127.0.0.2"), delay=0.2, silent=set(dead)).start()
    monkeypatch.setattr(
        fetcher, "resolver", lambda: AsyncResolver(nameservers=[dns.server], timeout=1, tries=1)
    )
    config = CrawlConfig(
        seeds=[site.url + "/0"], span_hosts=True, concurrency=4, timeout=5, max_retry_after=0
    )
    try:
        async with Crawler(config) as crawl:
            records = [r async for r in crawl if isinstance(r, PageRecord)]
    finally:
        dns.close()

    by_host = {r.url.split("/")[2].split(":")[0]: r for r in records if ".test" in r.url}
    assert {name for name in live if by_host[name].status == 200} == set(live)
    assert {by_host[name].error for name in dead} == {"dns"}
    assert len(records) == 11 + 40  # /0 to /10 (a 404), and each name's page once
    for name in live:
        assert dns.asked[name] == 2, name  # A and AAAA, once


@pytest.mark.parametrize(
    ("budget", "setting", "shared"),
    [(5, "max_pages", False), (3, "max_pages_per_host", False), (5, "max_pages", True)],
)
async def test_a_page_waiting_for_its_host_name_is_counted_once_in_the_budgets(
    serve: SiteFactory,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    budget: int,
    setting: str,
    shared: bool,
) -> None:
    """The seed's host is a name the name server answers in 0.2 s: its first page goes
    back in line while the name is looked up, and comes out again as the same page. It
    was counted as a new page each time: --max-pages 5 recorded 4 pages."""

    async def endless(request: web.Request) -> web.Response:
        number = request.path.strip("/") or "0"
        if not number.isdigit():  # robots.txt
            raise web.HTTPNotFound()
        return html_page(request.path, [f"/{int(number) + 1}", f"/{int(number) + 2}"])

    site = await serve({"/{path:.*}": endless})
    port = site.url.rsplit(":", 1)[1]
    dns = await LocalDns({"site.test": "127.0.0.1"}, delay=0.2).start()
    monkeypatch.setattr(
        fetcher, "resolver", lambda: AsyncResolver(nameservers=[dns.server], timeout=2, tries=1)
    )
    frontier = request.getfixturevalue("redis_server").url if shared else None
    config = CrawlConfig(
        seeds=[f"http://site.test:{port}/"],
        allow_private=True,
        concurrency=2,
        frontier=frontier,
        **{setting: budget},
    )
    try:
        async with Crawler(config) as crawl:
            records = [r async for r in crawl if isinstance(r, PageRecord)]
    finally:
        dns.close()
    assert [r.status for r in records] == [200] * budget


class _Counting(AbstractResolver):
    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked[host] += 1
        if host.startswith("dead"):
            raise OSError(None, f"{host}: no such name")
        return [
            ResolveResult(
                hostname=host, host="127.0.0.2", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


async def test_answers_and_failures_are_kept_for_a_while_and_only_so_many() -> None:
    now = [0.0]
    inner = _Counting()
    lookups = Lookups(inner, clock=lambda: now[0], kept=3)

    for name in ("a", "b", "dead", "a", "b", "dead"):
        try:
            answer = await lookups.resolve(name, 80)
        except OSError as error:
            assert "dead: no such name" in str(error)
        else:
            assert [(r["host"], r["port"]) for r in answer] == [("127.0.0.2", 80)]
    assert inner.asked == {"a": 1, "b": 1, "dead": 1}

    await lookups.resolve("c", 80)  # a fourth name: the least recently used ("a") goes
    await lookups.resolve("b", 80)
    await lookups.resolve("a", 80)
    assert inner.asked == {"a": 2, "b": 1, "dead": 1, "c": 1}

    now[0] += TTL + 1  # every answer too old: asked again
    await lookups.resolve("b", 80)
    assert inner.asked["b"] == 2
    assert lookups.pending("b", 80) is not None  # AF_UNSPEC: its own lookup, just started
    await lookups.close()


async def test_a_name_no_resolver_takes_is_a_failed_lookup() -> None:
    lookups = Lookups(AsyncResolver(nameservers=["127.0.0.1:9"], timeout=0.2, tries=1))
    for name in ("a" * 64 + ".test", "bad..name", "x" * 300):
        with pytest.raises(OSError):
            await lookups.resolve(name, 80)
    await lookups.close()


def _page(links: list[str]) -> web.Handler:
    async def handler(request: web.Request) -> web.Response:
        return html_page(request.path, links)

    return handler
