"""Which addresses a crawl may connect to: no public site steers it into a private network.

When the seeds are public, the crawler never connects to a loopback, private
(RFC 1918, IPv6 unique-local), link-local (a cloud's metadata service at
169.254.169.254) or otherwise special address, IPv4 or IPv6, whatever a link,
a redirect or a robots.txt redirect says. The check is made on the
addresses the connection is actually made to: the resolver hands aiohttp only
allowed addresses (so a name that resolves to a public address once and a
private one the next time, DNS rebinding, gets nowhere), and a URL whose host
is an address literal is checked before its request. Seeds that are
themselves of a private kind (the demo on 127.0.0.1, ``localhost``, a
10.x host) allow their own kind; ``--allow-private`` allows every kind.
A seed given by a name counts as public: an intranet crawl by name needs
``--allow-private``, and the refusal says so. A proxy the person gives is
trusted as the proxy (its host and port, when the connection is to it), never
as a destination: a URL that goes direct to the proxy's own address is
refused, unless --allow-private; through it, only address literals in URLs can
be checked (the proxy resolves the names).
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from crawler.web.urls import host_of, normalize, port_of

PUBLIC = "public"
KINDS = ("loopback", "link-local", "private", PUBLIC)


class PrivateAddress(OSError):
    """Every address of a host is of a kind the crawl may not connect to."""


@functools.lru_cache(maxsize=4096)
def address_kind(address: str) -> str | None:
    """loopback, link-local, private or public; None if ``address`` is no IP address.
    Remembered: a crawl asks about the same few hosts for every request."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return "private"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_SPACE:
        return "private"  # RFC 6598, carrier-grade NAT
    return PUBLIC


_SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")


class AddressPolicy:
    """The kinds of address one crawl may connect to."""

    def __init__(
        self,
        seeds: Iterable[str],
        *,
        allow_private: bool,
        trusted: Iterable[tuple[str, int]] = (),
        seed_hosts: Iterable[str] = (),
    ) -> None:
        # The proxy's (host, port), given by the person: any address it resolves to is
        # allowed for a connection to that port, the proxy's.
        self.trusted = frozenset(trusted)
        self.allow_private = allow_private
        allowed = {PUBLIC}
        hosts = (host_of(url) for url in filter(None, map(normalize, seeds)))
        for host in itertools.chain(hosts, seed_hosts):
            kind = address_kind(host)
            if kind is None and (host == "localhost" or host.endswith(".localhost")):
                kind = "loopback"
            allowed.add(kind or PUBLIC)
        self._allowed = frozenset(KINDS) if allow_private else frozenset(allowed)

    def allows(self, address: str) -> bool:
        return address_kind(address) in self._allowed

    def refuses_url(self, url: str, *, direct: bool = True) -> bool:
        """A URL whose host is an address literal of a kind not allowed (aiohttp does not
        ask the resolver for those), or, for a request that goes ``direct``, the proxy's
        own address (trusted as the proxy only)."""
        host = host_of(url)
        kind = address_kind(host)
        if kind is not None and kind not in self._allowed:
            return True
        return (
            direct
            and bool(self.trusted)
            and not self.allow_private
            and ((host, port_of(url)) in self.trusted)
        )


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, handing on only the addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._inner.resolve(host, port, family)
        if (host.lower(), port) in self._policy.trusted:
            return addresses  # the proxy (a direct request to it was refused before)
        allowed = [entry for entry in addresses if self._policy.allows(entry["host"])]
        if not allowed:
            raise PrivateAddress(
                f"{host} resolves only to addresses the crawl may not connect to"
                " (loopback, private, link-local): --allow-private allows them"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()
