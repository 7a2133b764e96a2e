"""Who the crawler is to each host: the headers, credentials, cookies and proxy of a request.

What a person gives for the site they crawl goes to that site only:
- ``--header 'Name: value'`` and ``--auth USER:PASS`` to the seeds' origins
  (scheme, host and port, as curl since 7.83 and RFC 9110 §11.5), and a
  seed's own ``user:pass@`` to that seed's origin; never to another origin,
  so a redirect or a link to another port, to plain http from https, or to
  another host carries none of them (each hop is its own request);
- cookies from ``--cookies FILE`` (cookies.txt, the Netscape format of
  wget --load-cookies and curl -b) and those the sites set, kept for the
  crawl in one jar, go where their domain, path and secure flag allow; a
  cookie whose Domain is a public suffix (co.uk, github.io, an unknown
  top-level name) is refused, as browsers refuse it (the Public Suffix List);
- a proxy: ``--proxy URL``, else HTTP_PROXY / HTTPS_PROXY from the
  environment as curl and wget read them (lower case first; no scheme is
  http://, a socks5:// one is refused); NO_PROXY names hosts reached directly,
  for both. The proxy's address (host and port) is trusted as the proxy only:
  a request that goes direct to it, or to another port of its host, meets the
  private-address rule like any other.
"""

from __future__ import annotations

import base64
import functools
import http.cookiejar
import http.cookies
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import (  # type: ignore[attr-defined]
    getproxies_environment,
    proxy_bypass_environment,
)

import aiohttp
from aiohttp.abc import AbstractCookieJar
from aiohttp.typedefs import LooseCookies
from publicsuffixlist import PublicSuffixList
from yarl import URL

from crawler.errors import ConfigError
from crawler.net.addresses import address_kind
from crawler.values import proxy_url
from crawler.web.urls import host_of, normalize, origin_of


def _host(url: str) -> str | None:
    """The host as the crawl names it (normalised: IDNA, lower case, no brackets)."""
    normalized = normalize(url)
    return host_of(normalized) if normalized is not None else None


def proxies(proxy: str | None) -> dict[str, str | None]:
    """The proxy for each scheme: ``proxy`` (--proxy), else the environment's as curl
    reads it; ConfigError for one that cannot be used (socks5://)."""
    environment = getproxies_environment()
    found: dict[str, str | None] = {}
    for scheme in ("http", "https"):
        value = proxy or environment.get(scheme)
        found[scheme] = proxy_url(value, f"{scheme}_proxy") if value else None
    return found


def _endpoint(url: str | None) -> tuple[str, int] | None:
    if url is None:
        return None
    parts = urlsplit(url)
    host = _host(url)
    if host is None:
        return None
    try:
        return host, parts.port or 80
    except ValueError:
        return None


def _origin(url: str) -> str | None:
    normalized = normalize(url)
    return origin_of(normalized) if normalized is not None else None


def basic(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class Identity:
    """The extra headers of each request and the proxy it goes through."""

    def __init__(
        self,
        seeds: Iterable[str],
        *,
        headers: Iterable[str] = (),
        auth: str | None = None,
        proxies: Mapping[str, str | None] | None = None,
    ) -> None:
        given: dict[str, str] = {}
        for header in headers:
            name, _, value = header.partition(":")
            given[name.strip()] = value.strip()
        if auth is not None:
            user, _, password = auth.partition(":")
            given["Authorization"] = basic(user, password)
        self._by_origin: dict[str, dict[str, str]] = {}
        for seed in seeds:
            origin = _origin(seed)
            if origin is None:
                continue
            own = dict(given)
            parts = urlsplit(seed)
            if parts.username is not None:
                own["Authorization"] = basic(unquote(parts.username), unquote(parts.password or ""))
            self._by_origin.setdefault(origin, {}).update(own)
        self._by_origin = {key: values for key, values in self._by_origin.items() if values}
        self._proxies = dict(proxies or {})
        # (host, port) of each proxy: the resolver trusts these, as the proxy only.
        self.proxy_endpoints = frozenset(filter(None, map(_endpoint, self._proxies.values())))

    def headers(self, url: str) -> dict[str, str] | None:
        """The headers given for ``url``'s origin (a normalised URL), if any."""
        if not self._by_origin:
            return None
        return self._by_origin.get(origin_of(url))  # ``url`` is normalised

    def proxy(self, url: str) -> str | None:
        """The proxy ``url`` goes through, if any (NO_PROXY hosts go direct)."""
        if not self.proxy_endpoints:
            return None
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy is None or proxy_bypass_environment(parts.netloc):
            return None
        return proxy


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def public_suffix_refusal(domain: str, host: str) -> bool | None:
    """What RFC 6265 §5.3 step 5 makes of a cookie's Domain that is a public suffix:
    None if it is none (the cookie is kept as it is), False if it names the very host
    that set it (kept as a host-only cookie), True otherwise (refused)."""
    domain = domain.strip().lstrip(".").lower()
    if not domain or address_kind(domain) is not None or not _suffixes().is_public(domain):
        return None
    return domain != host.lower().rstrip(".")


_NO_URL = URL()


class CookieJar(aiohttp.CookieJar):
    """aiohttp's jar, less the cookies whose Domain is a public suffix: an offsite host
    the crawl merely checks sets no cookie for ``co.uk``, ``github.io`` or ``test``.

    ``unsafe``: cookies of hosts named by IP address are kept too (a site on
    127.0.0.1 or 10.0.0.5 sets them like any other)."""

    def __init__(self) -> None:
        super().__init__(unsafe=True)

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NO_URL) -> None:
        items = cookies.items() if isinstance(cookies, Mapping) else cookies
        kept: list[tuple[str, str | http.cookies.Morsel[str]]] = []
        for name, cookie in items:
            if isinstance(cookie, http.cookies.Morsel) and cookie["domain"]:
                refused = public_suffix_refusal(cookie["domain"], response_url.raw_host or "")
                if refused:
                    continue
                if refused is not None:  # a host-only cookie
                    cookie = cookie.copy()
                    cookie["domain"] = ""
            kept.append((name, cookie))  # type: ignore[arg-type]
        super().update_cookies(kept, response_url)

    def update_cookies_from_headers(self, headers: Sequence[str], response_url: URL) -> None:
        # The abstract jar's way: parse, then update_cookies (above); aiohttp's own
        # jar parses into its private store and would skip the check.
        AbstractCookieJar.update_cookies_from_headers(self, headers, response_url)


def cookie_jar(path: Path | None) -> CookieJar:
    """The crawl's cookie jar, with the unexpired cookies of a cookies.txt if given."""
    jar = CookieJar()
    if path is None:
        return jar
    loaded = http.cookiejar.MozillaCookieJar()
    try:
        # Expiry checked below: curl writes 0 for a session cookie, which is kept.
        with warnings.catch_warnings():  # a bad line: a warning with a traceback, then
            warnings.simplefilter("ignore")  # LoadError, which says it in one line
            loaded.load(os.fspath(path), ignore_discard=True, ignore_expires=True)
    except http.cookiejar.LoadError as error:  # an OSError too: first
        raise ConfigError(f"{path} is not a cookies.txt (Netscape format): {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read cookies file {path}: {error.strerror}") from None
    now = time.time()
    for cookie in loaded:
        if cookie.value is None or (cookie.expires and cookie.expires < now):
            continue
        morsel: http.cookies.Morsel[str] = http.cookies.Morsel()
        morsel.set(cookie.name, cookie.value, cookie.value)
        morsel["path"] = cookie.path or "/"
        if cookie.domain_specified:  # a leading dot: the domain and its subdomains
            morsel["domain"] = cookie.domain.lstrip(".")
        if cookie.secure:
            morsel["secure"] = True
        scheme = "https" if cookie.secure else "http"
        jar.update_cookies({cookie.name: morsel}, URL(f"{scheme}://{cookie.domain.lstrip('.')}/"))
    return jar
