"""No public site steers the crawler into a private network (net/addresses.py).

The test servers live on loopback; a resolver that maps public-looking names to
127.0.0.1 plays the public site that turns out to be (or rebinds to) loopback.
No test here sends a packet anywhere but 127.0.0.1: a refused address is refused
before any connection.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from conftest import SiteFactory, read_jsonl, static_site
from crawler import CrawlConfig, crawl
from crawler.net import fetcher
from crawler.net.addresses import AddressPolicy, address_kind


class LoopbackResolver(AbstractResolver):
    """Every name under .public.test resolves to 127.0.0.1."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        assert host.endswith(".public.test"), host
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
def public_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher, "resolver", LoopbackResolver)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.0.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("93.184.216.34", "public"),
        ("2606:2800:220:1::1", "public"),
        ("example.org", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


def test_seeds_of_a_private_kind_allow_their_own_kind_only() -> None:
    local = AddressPolicy(["http://127.0.0.1:8080/"], allow_private=False)
    assert local.allows("127.0.0.1") and local.allows("93.184.216.34")
    assert not local.allows("169.254.169.254") and not local.allows("10.0.0.1")
    named = AddressPolicy(["http://localhost/"], allow_private=False)
    assert named.allows("::1")
    public = AddressPolicy(["https://example.org/"], allow_private=False)
    assert not public.allows("127.0.0.1") and not public.allows("fd00::1")
    assert public.refuses_url("http://[::1]/x") and public.refuses_url("http://10.0.0.1/")
    assert AddressPolicy(["https://example.org/"], allow_private=True).allows("127.0.0.1")


@pytest.mark.usefixtures("public_names")
async def test_a_public_name_that_resolves_to_loopback_is_never_connected_to(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    port = site.url.rpartition(":")[2]
    seed = f"http://www.public.test:{port}/"

    stats = await crawl(CrawlConfig(seeds=(seed,), output_dir=tmp_path, no_sitemaps=True))

    assert site.requests == []
    (record,) = read_jsonl(tmp_path / "pages.jsonl")
    assert record["url"] == seed and record["error"] == "private-address"
    assert stats.finished


@pytest.mark.usefixtures("public_names")
async def test_allow_private_lifts_the_rule(serve: SiteFactory, tmp_path: Path) -> None:
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    port = site.url.rpartition(":")[2]
    seed = f"http://www.public.test:{port}/"

    stats = await crawl(
        CrawlConfig(seeds=(seed,), output_dir=tmp_path, no_sitemaps=True, allow_private=True)
    )

    assert stats.pages == 2 and stats.error_counts == {}


async def test_a_robots_txt_redirect_to_the_metadata_service_is_not_followed(
    serve: SiteFactory, tmp_path: Path
) -> None:
    async def robots(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    routes = static_site({"/": ["/a"], "/a": []})
    routes["/robots.txt"] = robots
    site = await serve(routes)

    stats = await crawl(CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path, retries=0))

    # The redirect led nowhere the crawl may go: robots.txt is unreachable (RFC 9309:
    # disallow all), and the records say why.
    assert stats.finished
    (record,) = read_jsonl(tmp_path / "pages.jsonl")
    assert record["status"] is None and record["error"] == "private-address"
    assert site.requests.count("/robots.txt") == 1 and "/" not in site.requests
