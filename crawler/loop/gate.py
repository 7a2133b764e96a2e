"""The link gate: the one place that decides whether a URL is followed.

A page's links, a redirect's target, a sitemap's entries, the sitemaps of a
host and every entry leased from a frontier (``admits``) all ask it, and so
does robots.txt's redirect (for which only the first two rules hold: RFC 9309
§2.3.1.2 lets it leave the host). A URL is followed when, in this order:

1. it normalises (http or https, a host, nothing unparseable): else *dropped*;
2. it is no trap (too long, one path segment repeated): else *dropped*;
3. its host is in scope (the seeds' hosts, --allow-domain): else *offsite*;
4. --allow, --deny, the library's link_filter and crawler check's --exclude
   admit it: else *excluded*.

Each refusal is counted in the crawl's tally under its reason. ``sort`` is
pure (it touches no tally), so a big page's links can be judged in a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crawler.config import CrawlConfig
from crawler.extract import CheckRules, LinkFilter, LinkRules
from crawler.records import CHECK_KINDS, Entry
from crawler.stats import Tally
from crawler.web.charsets import written_in
from crawler.web.urls import Scope, host_of, is_trap, link_facts, normalize, resolver


def link_resolver(
    page: str | None, base: str, *, sort_query: bool, query_codec: str | None
) -> Callable[[str], str | None]:
    """How a page's links resolve: against ``page``, its base normalised (None when
    ``base`` does not normalise: then by the full parse against ``base`` itself), the
    queries written in ``query_codec`` (charsets.written_in)."""
    if page is not None:
        resolve = resolver(page, sort_query=sort_query)
    else:
        resolve = functools.partial(normalize, base=base, sort_query=sort_query)
    return written_in(resolve, query_codec)


FOLLOWED = "followed"
DROPPED = "dropped"
OFFSITE = "offsite"
EXCLUDED = "excluded"


@dataclass(slots=True)
class Sorted:
    """A batch of links judged: those followed, and how many were refused, by reason."""

    followed: list[str]
    dropped: int = 0
    offsite: int = 0
    excluded: int = 0


class LinkGate:
    """Whether a URL is followed, for one crawl (its settled config)."""

    def __init__(self, config: CrawlConfig, tally: Tally) -> None:
        self.scope = Scope.of(
            config.seeds, config.allow_domain, config.span_hosts, config.seed_hosts
        )
        link_filter = config.link_filter
        if config.check and config.exclude:
            # crawler check's --exclude: never requested, not even as a page to crawl.
            excluded, given = CheckRules(config.exclude, config.include), config.link_filter
            link_filter = functools.partial(_not_excluded, excluded, given)
        self._rules = LinkRules(config.allow, config.deny, link_filter)
        self._sort_query = not config.keep_query_order
        self._tally = tally

    def sort(
        self,
        links: Iterable[str],
        base: str,
        *,
        own: str | None = None,
        query_codec: str | None = None,
    ) -> Sorted:
        """Judge ``links`` (as written on a page at ``base``, their queries in
        ``query_codec``: charsets.written_in); count nothing. A link to ``own``, the page's
        own URL (``#top``, say), is neither followed nor refused: the page is fetched
        already."""
        result = Sorted([])
        followed = result.followed
        sort_query, scope, rules = self._sort_query, self.scope, self._rules
        # A page's own URL is normalised already: its links resolve against it (no <base>).
        page = own if base == own else normalize(base, sort_query=sort_query)
        resolve = link_resolver(page, base, sort_query=sort_query, query_codec=query_codec)
        if page is not None:
            # Links to the page's own origin (most of them) are on the page's host,
            # judged once for them all.
            origin = page[: page.find("/", page.find("://") + 3) + 1] or page + "/"
            on_site = scope.allows(host_of(page))
        else:
            origin, on_site = "\0", False
        for link in links:
            url = resolve(link)
            if url is None:
                result.dropped += 1
                continue
            if url.startswith(origin):
                if url == own:
                    continue
                allowed, trap = on_site, is_trap(url)
            else:
                host, trap = link_facts(url)
                allowed = scope.allows(host)
            if trap:
                result.dropped += 1
            elif not allowed:
                result.offsite += 1
            elif rules.active and not rules.admits(url):
                result.excluded += 1
            else:
                followed.append(url)
        return result

    def count(self, result: Sorted) -> list[str]:
        """Count a sorted batch's refusals; return the URLs it follows."""
        tally = self._tally
        tally.dropped_links += result.dropped
        tally.offsite_links += result.offsite
        tally.excluded_links += result.excluded
        return result.followed

    def follow(self, links: Iterable[str], base: str) -> list[str]:
        """The normalised URLs of ``links`` that are followed; the rest are counted."""
        return self.count(self.sort(links, base))

    def verdict(self, url: str) -> str:
        """The verdict on a normalised URL, counted nowhere (crawler check asks it of
        every link, to know which the crawl follows)."""
        host, trap = link_facts(url)
        if trap:
            return DROPPED
        if not self.scope.allows(host):
            return OFFSITE
        if self._rules.active and not self._rules.admits(url):
            return EXCLUDED
        return FOLLOWED

    def judge(self, link: str, base: str) -> tuple[str | None, str]:
        """One URL (a redirect's target): its normalised form, if any, and the verdict,
        counted unless followed (the same rules as ``sort``, the URL normalised once)."""
        url = normalize(link, base, sort_query=self._sort_query)
        tally = self._tally
        if url is None or is_trap(url):
            tally.dropped_links += 1
            return url, DROPPED
        if not self.scope.allows(host_of(url)):
            tally.offsite_links += 1
            return url, OFFSITE
        if self._rules.active and not self._rules.admits(url):
            tally.excluded_links += 1
            return url, EXCLUDED
        return url, FOLLOWED

    def admits(self, entry: Entry) -> bool:
        """Whether a leased entry may be fetched: its host in scope, and for a link (not
        a seed) the rules too. Every entry the crawl queued passed here already; one a
        shared frontier hands out may have been written by anyone with access to it."""
        url = entry.url
        if entry.kind in CHECK_KINDS:
            return True  # a link to check may be anywhere (crawler check runs alone)
        if not self.scope.allows(host_of(url)):
            return False
        linked = entry.referrer is not None or entry.origin is not None
        rules = self._rules
        return not (linked and entry.kind == "page" and rules.active) or rules.admits(url)

    def sitemap(self, link: str, base: str) -> str | None:
        """A sitemap's URL, if it may be read: rules 1-3 (--allow and --deny choose pages,
        not the sitemaps that list them)."""
        url = normalize(link, base, sort_query=self._sort_query)
        if url is None or is_trap(url) or not self.scope.allows(host_of(url)):
            return None
        return url

    def robots_redirect(self, location: str, base: str) -> str | None:
        """Where a robots.txt redirect leads, if it may be followed: rules 1-2."""
        url = normalize(location, base)
        return None if url is None or is_trap(url) else url


def _not_excluded(excluded: CheckRules, given: LinkFilter | None, url: str) -> bool:
    return not excluded.excludes(url) and (given is None or given(url))
