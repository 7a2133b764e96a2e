"""Who the crawler is to each host: the headers, credentials, cookies and proxy of a request.

What a person gives for the site they crawl goes to that site only:
- ``--header 'Name: value'`` and ``--auth USER:PASS`` to the seeds' hosts
  (host names, any port, as the crawl's scope), and a seed's own
  ``user:pass@`` to that seed's host; never to another host, so a redirect
  or a link elsewhere carries none of them (each hop is its own request);
- cookies from ``--cookies FILE`` (cookies.txt, the Netscape format of
  wget --load-cookies and curl -b) and those the sites set, kept for the
  crawl in one jar, go where their domain, path and secure flag allow;
- a proxy: ``--proxy URL``, else HTTP_PROXY / HTTPS_PROXY from the
  environment as curl and wget read them (lower case first); NO_PROXY names
  hosts reached directly, for both.
"""

from __future__ import annotations

import base64
import http.cookiejar
import http.cookies
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import (  # type: ignore[attr-defined]
    getproxies_environment,
    proxy_bypass_environment,
)

import aiohttp
from yarl import URL

from crawler.errors import ConfigError
from crawler.web.urls import host_of, normalize


def _host(url: str) -> str | None:
    """The host as the crawl names it (normalised: IDNA, lower case, no brackets)."""
    normalized = normalize(url)
    return host_of(normalized) if normalized is not None else None


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
        proxy: str | None = None,
    ) -> None:
        given: dict[str, str] = {}
        for header in headers:
            name, _, value = header.partition(":")
            given[name.strip()] = value.strip()
        if auth is not None:
            user, _, password = auth.partition(":")
            given["Authorization"] = basic(user, password)
        self._by_host: dict[str, dict[str, str]] = {}
        for seed in seeds:
            host = _host(seed)
            if host is None:
                continue
            own = dict(given)
            parts = urlsplit(seed)
            if parts.username is not None:
                own["Authorization"] = basic(unquote(parts.username), unquote(parts.password or ""))
            self._by_host.setdefault(host, {}).update(own)
        self._by_host = {host: values for host, values in self._by_host.items() if values}
        environment = getproxies_environment()
        self._proxies = {scheme: proxy or environment.get(scheme) for scheme in ("http", "https")}
        self.proxy_hosts = {host for url in self._proxies.values() if url and (host := _host(url))}

    def headers(self, url: str) -> dict[str, str] | None:
        """The headers given for ``url``'s host (a normalised URL), if any."""
        if not self._by_host:
            return None
        return self._by_host.get(host_of(url))  # ``url`` is normalised

    def proxy(self, url: str) -> str | None:
        """The proxy ``url`` goes through, if any (NO_PROXY hosts go direct)."""
        if not self.proxy_hosts:
            return None
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy is None or proxy_bypass_environment(parts.netloc):
            return None
        return proxy


def cookie_jar(path: Path | None) -> aiohttp.CookieJar:
    """The crawl's cookie jar, with the unexpired cookies of a cookies.txt if given.

    ``unsafe``: cookies of hosts named by IP address are kept too (a site on
    127.0.0.1 or 10.0.0.5 sets them like any other)."""
    jar = aiohttp.CookieJar(unsafe=True)
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
