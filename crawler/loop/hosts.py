"""What the crawl knows of each host: its robots.txt policy and its sitemaps.

The Visitor asks it before a host's first page (robots.txt is fetched with
that page's lease, which then goes back first in line, so the host's gap
holds between the two requests) and before each page (the policy). Sitemaps
are queued once per host and read as entries of the frontier like pages,
through the host's politeness slot. When processes share a host (the Redis
frontier, a split host of the front), a RobotsStore gives them the
robots.txt one of them fetched, so it is fetched once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol
from urllib.parse import urlsplit

from crawler.config import CrawlConfig
from crawler.frontier.politeness import Politeness
from crawler.frontier.protocol import DONE, Frontier, Lease, Outcome, queue_links
from crawler.loop.gate import LinkGate
from crawler.net.fetcher import Fetcher, Response
from crawler.offload import in_thread
from crawler.output.journal import Sink
from crawler.records import Entry
from crawler.stats import Tally
from crawler.web.robots import (
    MAX_ROBOTS_BYTES,
    MAX_ROBOTS_REDIRECTS,
    RobotsAnswer,
    RobotsPolicy,
    policy_from,
)
from crawler.web.sitemaps import MAX_SITEMAP_BYTES, parse_sitemap
from crawler.web.urls import host_of

# Sitemap indexes may list indexes; this many levels are read, no deeper.
MAX_SITEMAP_NESTING = 2
# Failures that say the host itself cannot be reached, not only one URL.
HOST_DOWN = frozenset({"connection-refused", "dns", "tls", "certificate", "private-address"})
# How soon a host whose name is being looked up is asked again, at first (then
# half the time the lookup has taken so far, up to half a second).
LOOKUP_POLL = 0.02
# A robots.txt Crawl-delay above this is honoured only up to it.
MAX_CRAWL_DELAY = 60.0


class RobotsStore(Protocol):
    """robots.txt shared by the processes of a crawl (shared frontier, split host): fetched once."""

    async def load_robots(self, host: str) -> RobotsAnswer | None: ...

    async def save_robots(self, host: str, answer: RobotsAnswer, crawl_delay: float) -> None: ...


class HostKnowledge:
    """robots.txt policies and sitemaps, per host, for one crawl."""

    def __init__(
        self,
        config: CrawlConfig,
        *,
        fetcher: Fetcher,
        politeness: Politeness,
        frontier: Frontier,
        gate: LinkGate,
        tally: Tally,
        sink: Sink | None,
        robots_store: RobotsStore | None = None,
    ) -> None:
        self.config = config
        self._fetcher = fetcher
        self._politeness = politeness
        self._frontier = frontier
        self._gate = gate
        self._tally = tally
        self._sink = sink
        self._store = robots_store
        self._robots: dict[str, RobotsPolicy] = {}
        self._robots_failures: dict[str, int] = {}
        self._sitemap_hosts: set[str] = set()
        # Hosts that have answered once (their slots opened to --per-host), and hosts
        # that could not be reached at all, with the reason.
        self._answered: set[str] = set()
        self._unreachable: dict[str, str] = {}
        # Hosts whose name was looked up (or needs none).
        self._named: set[str] = set()

    def looking_up(self, lease: Lease) -> Outcome | None:
        """While the host's name is looked up (net/lookups.py), its entry goes back first
        in line and the host waits a moment: a slow or dead name holds no request slot
        and no other host's pages. It goes back as a continuation: the page was counted
        in --max-pages and --max-pages-per-host when first leased, and is not again."""
        if lease.host in self._named:
            return None
        looked = self._fetcher.looking_up(lease.entry.url)
        if looked is None:
            self._named.add(lease.host)
            return None
        return Outcome(lease.entry.deferred(), retry_after=min(max(looked / 2, LOOKUP_POLL), 0.5))

    def needs_robots(self, host: str) -> bool:
        return not self.config.ignore_robots and host not in self._robots

    def needs_sitemaps(self, lease: Lease) -> bool:
        """A host named by the seeds or --allow-domain has its sitemaps read once; a host
        only --span-hosts reaches is crawled by its links (its sitemaps would list all
        of every site a link touches)."""
        return (
            not self.config.no_sitemaps
            and lease.host not in self._sitemap_hosts
            and self._gate.scope.names(host_of(lease.entry.url))
        )

    def refusal(self, host: str, url: str) -> str | None:
        """Why ``url`` is not requested, if it is not: its host's robots.txt refuses it
        (or could not be had), or the host could not be reached at all (its other
        URLs then cost no request)."""
        policy = self._robots.get(host)
        if policy is not None and not policy.allows(url):
            return policy.refuse_all or "robots"
        return self._unreachable.get(host)

    def _closed(self, host: str) -> bool:
        """Nothing of the host is requested: its robots.txt could not be had (RFC 9309:
        disallow all), or it could not be reached. Not even its sitemaps."""
        policy = self._robots.get(host)
        return (policy is not None and policy.refuse_all is not None) or host in self._unreachable

    def heard(self, host: str, response: Response, *, final: bool) -> None:
        """What a request to the host got. Until a host first answers, it takes one
        request at a time (its robots.txt, or with --ignore-robots its first page):
        a host that refuses connections costs one request and its retries in all."""
        if response.status is not None:
            if host not in self._answered:
                self._answered.add(host)
                if self.config.ignore_robots:
                    self._politeness.robots_known(host, 0.0)
        elif final and response.error in HOST_DOWN:
            self._unreachable[host] = response.error

    async def learn_robots(self, lease: Lease) -> Outcome | None:
        """The host's robots.txt: from the shared crawl if another process fetched it
        (None: the visit goes on), else fetched with this lease, whose entry goes
        back first in line."""
        if self._store is not None:
            stored = await self._store.load_robots(lease.host)
            if stored is not None:
                self._know(lease.host, self._policy(stored))
                return None
        scheme = urlsplit(lease.entry.url).scheme
        response = await self._fetch_robots(f"{scheme}://{lease.host}/robots.txt")
        answer = RobotsAnswer(response.status, response.error, response.body)
        policy = self._policy(answer)
        failures = self._robots_failures.get(lease.host, 0)
        retry_after = None
        # A name that does not resolve is not asked again (its lookup is kept).
        retried = policy.refuse_all not in (None, "dns")
        if retried and failures < self.config.retries:
            # RFC 9309 §2.3.1.4: unreachable means disallow all, but not forever.
            self._robots_failures[lease.host] = failures + 1
            retry_after = min(2.0**failures, self.config.max_retry_after)
        else:
            delay = self._know(lease.host, policy)
            if self._store is not None:
                await self._store.save_robots(lease.host, answer, delay)
        return Outcome(lease.entry.deferred(), response.status, retry_after)

    def _policy(self, answer: RobotsAnswer) -> RobotsPolicy:
        return policy_from(answer.status, answer.body, self.config.user_agent, answer.error)

    def _know(self, host: str, policy: RobotsPolicy) -> float:
        """Keep the host's policy; return its Crawl-delay (capped)."""
        self._robots[host] = policy
        delay = min(policy.crawl_delay(), MAX_CRAWL_DELAY)
        self._politeness.robots_known(host, delay)
        return delay

    async def _fetch_robots(self, url: str) -> Response:
        """robots.txt, following up to five redirects (RFC 9309 §2.3.1.2), cut at 500 KiB."""
        for _ in range(MAX_ROBOTS_REDIRECTS + 1):
            response = await self._fetcher.fetch(url, max_bytes=MAX_ROBOTS_BYTES, any_type=True)
            location = response.location
            target = self._gate.robots_redirect(location, url) if location else None
            if response.status is None or not 300 <= response.status < 400 or target is None:
                return response
            url = target
        return replace(response, body=b"")

    async def queue_sitemaps(self, lease: Lease) -> None:
        """The host's sitemaps: its robots.txt Sitemap: lines and /sitemap.xml."""
        self._sitemap_hosts.add(lease.host)
        if self._closed(lease.host):
            return
        origin = f"{urlsplit(lease.entry.url).scheme}://{lease.host}"
        policy = self._robots.get(lease.host)
        listed = policy.sitemaps() if policy is not None else ()
        urls = (self._gate.sitemap(url, origin) for url in (*listed, "/sitemap.xml"))
        await self._frontier.add([Entry(url, 0, kind="sitemap") for url in urls if url is not None])

    async def read_sitemap(self, lease: Lease) -> Outcome:
        """Queue a sitemap's pages as seeds (depth 0) and an index's sitemaps to read next."""
        entry = lease.entry
        if self._closed(lease.host):
            if self._sink is not None:
                self._sink.done_unrecorded(entry.url)
            return DONE
        response = await self._fetcher.fetch(entry.url, max_bytes=MAX_SITEMAP_BYTES, any_type=True)
        if self._sink is not None:
            self._sink.done_unrecorded(entry.url)
        if response.status is None or not 200 <= response.status < 300 or not response.body:
            return Outcome(status=response.status)
        # In a thread: a sitemap of the protocol's maximum size takes a while to read.
        sitemap = await in_thread(parse_sitemap, response.body)
        self._tally.sitemaps += 1
        pages = self._gate.follow(sitemap.pages, entry.url)
        self._tally.sitemap_urls += len(pages)
        if self._sink is not None:
            self._sink.note_links(entry.url, pages)
        await queue_links(self._frontier, pages, 0, entry.url)
        if entry.depth < MAX_SITEMAP_NESTING:
            children = (self._gate.sitemap(url, entry.url) for url in sitemap.sitemaps)
            nested = [
                Entry(url, entry.depth + 1, entry.url, kind="sitemap")
                for url in children
                if url is not None
            ]
            await self._frontier.add(nested)
        return Outcome(status=response.status)
