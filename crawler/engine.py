"""The crawl loop of one event loop: dispatcher, workers, parser stage, records.

Layer 3: imports layers 0-2. Shape: the dispatcher leases entries from the
frontier (which only hands out hosts that are ready) whenever a worker is
idle; a worker fetches, sends HTML to the parser stage, queues the page's new
links and writes the record; redirects and retries go back into the frontier
as continuations, so every request passes its host's politeness slot.

Invariants:
1. Every lease is matched by exactly one ack or requeue, in a ``finally``.
2. The dispatcher leases only while a worker is idle (the ``_idle``
   semaphore), so a leased entry starts at once and host gaps hold.
3. A page's links are queued before its lease is acked: the frontier can only
   look finished when nothing is in flight and nothing is queued.
4. One record per URL taken from the frontier, written when it is done
   (redirect hops and retries carry the record on to their last request).
5. Per-URL failures are records; anything else raised here is a bug and
   propagates out of the TaskGroup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from crawler.config import CrawlConfig
from crawler.fetcher import Fetcher, Response
from crawler.frontier import Entry, Lease, MemoryFrontier
from crawler.output import Output
from crawler.parser import ParsedPage, header_directives, is_html, parse_html
from crawler.politeness import Politeness
from crawler.records import CrawlStats, PageRecord
from crawler.robots import MAX_ROBOTS_BYTES, MAX_ROBOTS_REDIRECTS, RobotsPolicy, policy_from
from crawler.sitemaps import MAX_SITEMAP_BYTES, parse_sitemap
from crawler.stats import Tally
from crawler.urls import Scope, host_of, is_trap, normalize

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
# Sitemap indexes may list indexes; this many levels are read, no deeper.
MAX_SITEMAP_NESTING = 2
# A robots.txt Crawl-delay above this is honoured only up to it.
MAX_CRAWL_DELAY = 60.0
# First wait before retrying a failed URL; it doubles with each attempt.
RETRY_DELAY = 0.5
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = frozenset({"timeout", "connection", "connection-reset", "connection-refused"})

RecordSink = Callable[[PageRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a processed lease tells the frontier."""

    # The entry that carries the record on (a retry, a deferred page), if any.
    continuation: Entry | None = None
    # The answer's status and Retry-After, for the host's politeness slot.
    status: int | None = None
    retry_after: float | None = None
    # Seconds the continuation alone waits (its host is not held back).
    delay: float = 0.0


DONE = Outcome()


class Engine:
    """One crawl in the running event loop."""

    def __init__(self, config: CrawlConfig, on_record: RecordSink | None = None) -> None:
        self.config = config
        self._on_record = on_record
        self._seeds = [url for url in (normalize(seed) for seed in config.seeds) if url]
        hosts = frozenset(host_of(url) for url in self._seeds)
        self._scope = Scope(hosts, frozenset(domain.lower() for domain in config.allow_domain))
        self._politeness = Politeness(
            config.per_host, config.delay, robots_first=not config.ignore_robots
        )
        self._frontier = MemoryFrontier(self._politeness, max_pages=config.max_pages)
        self._robots: dict[str, RobotsPolicy] = {}
        self._robots_failures: dict[str, int] = {}
        self._sitemap_hosts: set[str] = set()
        self._tally = Tally()
        self._output = (
            Output(config.output_dir, format=config.format, save_html=config.save_html)
            if config.output_dir is not None
            else None
        )
        self._idle = asyncio.Semaphore(config.concurrency)
        self._work: asyncio.Queue[Lease | None] = asyncio.Queue()
        self._parse_jobs: asyncio.Queue[tuple[Response, asyncio.Future[ParsedPage]] | None]
        self._parse_jobs = asyncio.Queue(maxsize=config.concurrency)
        self._fetcher: Fetcher | None = None

    def stop(self) -> None:
        """Lease nothing more; in-flight pages finish and every file is written."""
        self._frontier.close()

    def stats(self) -> CrawlStats:
        return self._tally.snapshot(self._frontier.pending(), self._frontier.in_flight())

    async def run(self) -> CrawlStats:
        """Crawl to the end (or to a limit or stop()); return the final CrawlStats."""
        if self._output is not None:
            self._output.open()
        loop = asyncio.get_running_loop()
        deadline = None
        if self.config.max_time is not None:
            deadline = loop.call_later(self.config.max_time, self.stop)
        self._tally.start()
        try:
            await self._frontier.add(Entry(url, 0) for url in self._seeds)
            async with Fetcher(
                concurrency=self.config.concurrency,
                timeout=self.config.timeout,
                user_agent=self.config.user_agent,
            ) as self._fetcher:
                await self._run_stages()
        finally:
            if deadline is not None:
                deadline.cancel()
            stats = self._tally.snapshot(
                self._frontier.pending(), self._frontier.in_flight(), finished=True
            )
            if self._output is not None:
                self._output.finish(stats)
        return stats

    async def _run_stages(self) -> None:
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._parse_loop(), name="parser")
            async with asyncio.TaskGroup() as crawl:
                crawl.create_task(self._dispatch(), name="dispatcher")
                for number in range(self.config.concurrency):
                    crawl.create_task(self._worker(), name=f"worker-{number}")
            self._parse_jobs.put_nowait(None)

    async def _dispatch(self) -> None:
        try:
            while True:
                await self._idle.acquire()
                lease = await self._frontier.lease()
                if lease is None:
                    self._idle.release()
                    return
                self._work.put_nowait(lease)
        finally:
            for _ in range(self.config.concurrency):
                self._work.put_nowait(None)

    async def _worker(self) -> None:
        while (lease := await self._work.get()) is not None:
            try:
                await self._handle(lease)
            finally:
                self._idle.release()

    async def _handle(self, lease: Lease) -> None:
        outcome = DONE
        try:
            outcome = await self._process(lease)
        finally:
            if outcome.continuation is None:
                await self._frontier.ack(lease, outcome.status, outcome.retry_after)
            else:
                await self._frontier.requeue(
                    lease, outcome.continuation, outcome.status, outcome.retry_after, outcome.delay
                )

    async def _process(self, lease: Lease) -> Outcome:
        entry = lease.entry
        if not self.config.ignore_robots and lease.host not in self._robots:
            return await self._learn_robots(lease)
        if not self.config.no_sitemaps and lease.host not in self._sitemap_hosts:
            await self._queue_sitemaps(lease)
        if entry.kind == "sitemap":
            return await self._read_sitemap(entry)
        policy = self._robots.get(lease.host)
        if policy is not None and not policy.allows(entry.url):
            await self._emit(self._record(entry, None, error=policy.refuse_all or "robots"))
            return DONE
        assert self._fetcher is not None
        response = await self._fetcher.fetch(entry.url, max_bytes=self.config.max_bytes)
        return await self._after_fetch(entry, response)

    async def _learn_robots(self, lease: Lease) -> Outcome:
        """Fetch the host's robots.txt with this lease; the entry goes back, first in line."""
        scheme = urlsplit(lease.entry.url).scheme
        answer = await self._fetch_robots(f"{scheme}://{lease.host}/robots.txt")
        policy = policy_from(answer.status, answer.body, self.config.user_agent, answer.error)
        failures = self._robots_failures.get(lease.host, 0)
        retry_after = None
        if policy.refuse_all is not None and failures < self.config.retries:
            # RFC 9309 §2.3.1.4: unreachable means disallow all, but not forever.
            self._robots_failures[lease.host] = failures + 1
            retry_after = min(2.0**failures, self.config.max_retry_after)
        else:
            self._robots[lease.host] = policy
            delay = min(policy.crawl_delay(), MAX_CRAWL_DELAY)
            self._politeness.robots_known(lease.host, delay)
        deferred = replace(lease.entry, leases=lease.entry.leases + 1)
        return Outcome(deferred, answer.status, retry_after)

    async def _fetch_robots(self, url: str) -> Response:
        """robots.txt, following up to five redirects (RFC 9309 §2.3.1.2), cut at 500 KiB."""
        assert self._fetcher is not None
        for _ in range(MAX_ROBOTS_REDIRECTS + 1):
            response = await self._fetcher.fetch(url, max_bytes=MAX_ROBOTS_BYTES, any_type=True)
            target = normalize(response.location or "", url) if response.location else None
            if response.status is None or not 300 <= response.status < 400 or target is None:
                return response
            url = target
        return replace(response, body=b"")

    async def _queue_sitemaps(self, lease: Lease) -> None:
        """The host's sitemaps: its robots.txt Sitemap: lines and /sitemap.xml."""
        self._sitemap_hosts.add(lease.host)
        origin = f"{urlsplit(lease.entry.url).scheme}://{lease.host}"
        policy = self._robots.get(lease.host)
        listed = policy.sitemaps() if policy is not None else ()
        urls = (normalize(url, origin) for url in (*listed, "/sitemap.xml"))
        entries = [
            Entry(url, 0, kind="sitemap")
            for url in urls
            if url is not None and self._scope.allows(host_of(url))
        ]
        await self._frontier.add(entries)

    async def _read_sitemap(self, entry: Entry) -> Outcome:
        """Queue a sitemap's pages as seeds (depth 0) and an index's sitemaps to read next."""
        assert self._fetcher is not None
        response = await self._fetcher.fetch(entry.url, max_bytes=MAX_SITEMAP_BYTES, any_type=True)
        if response.status is None or not 200 <= response.status < 300 or not response.body:
            return Outcome(status=response.status)
        sitemap = parse_sitemap(response.body)
        self._tally.sitemaps += 1
        pages = self._in_scope(sitemap.pages, entry.url)
        self._tally.sitemap_urls += len(pages)
        if self._output is not None:
            self._output.note_links(entry.url, pages)
        children = self._in_scope(sitemap.sitemaps, entry.url)
        await self._frontier.add(Entry(url, 0, entry.url) for url in pages)
        if entry.depth < MAX_SITEMAP_NESTING:
            await self._frontier.add(
                Entry(url, entry.depth + 1, entry.url, kind="sitemap") for url in children
            )
        return Outcome(status=response.status)

    def _in_scope(self, links: Iterable[str], base: str) -> list[str]:
        """Normalised, requestable, in-scope URLs of ``links``; the rest are counted."""
        urls: list[str] = []
        for link in links:
            url = normalize(link, base, sort_query=self._sort_query)
            if url is None or is_trap(url):
                self._tally.dropped_links += 1
            elif not self._scope.allows(host_of(url)):
                self._tally.offsite_links += 1
            else:
                urls.append(url)
        return urls

    async def _after_fetch(self, entry: Entry, response: Response) -> Outcome:
        elapsed_ms = entry.elapsed_ms + response.elapsed_ms
        retry = self._retry(entry, response, elapsed_ms)
        if retry is not None:
            return retry
        status = response.status
        if status is not None and 300 <= status < 400 and response.location:
            await self._redirect(entry, response, elapsed_ms)
            return Outcome(status=status)
        parsed = None
        if _is_parseable(response):
            parsed = await self._parse(response)
            await self._queue_links(entry, response.url, parsed)
            if self._output is not None:
                await self._output.save_html(response.url, response.body)
        await self._emit(self._record(entry, response, parsed=parsed, elapsed_ms=elapsed_ms))
        return Outcome(status=status)

    def _retry(self, entry: Entry, response: Response, elapsed_ms: int) -> Outcome | None:
        retryable = response.status in RETRY_STATUSES or response.error in RETRY_ERRORS
        if not retryable or entry.attempts >= self.config.retries:
            return None
        self._tally.retries += 1
        again = replace(
            entry, attempts=entry.attempts + 1, leases=entry.leases + 1, elapsed_ms=elapsed_ms
        )
        if response.retry_after is not None:
            # The server asked the whole host to wait (RFC 9110 §10.2.3).
            wait = min(response.retry_after, self.config.max_retry_after)
            return Outcome(again, response.status, retry_after=wait)
        return Outcome(again, response.status, delay=RETRY_DELAY * 2**entry.attempts)

    async def _redirect(self, entry: Entry, response: Response, elapsed_ms: int) -> None:
        hops = (*entry.hops, response.url)
        target = normalize(response.location or "", response.url, sort_query=self._sort_query)
        error = None
        if target is None or is_trap(target):
            error = "bad-redirect"
        elif target in hops:
            error = "redirect-loop"
        elif len(hops) > MAX_REDIRECTS:
            error = "too-many-redirects"
        elif self._scope.allows(host_of(target)):
            hop = Entry(
                target,
                entry.depth,
                entry.referrer,
                origin=entry.origin or entry.url,
                hops=hops,
                elapsed_ms=elapsed_ms,
            )
            if await self._frontier.add([hop], front=True):
                return
        else:
            self._tally.offsite_links += 1
        record = self._record(entry, response, elapsed_ms=elapsed_ms, error=error)
        await self._emit(
            replace(record, final_url=target or response.location, redirects=len(hops))
        )

    @property
    def _sort_query(self) -> bool:
        return not self.config.keep_query_order

    async def _parse(self, response: Response) -> ParsedPage:
        future: asyncio.Future[ParsedPage] = asyncio.get_running_loop().create_future()
        await self._parse_jobs.put((response, future))
        return await future

    async def _parse_loop(self) -> None:
        while (job := await self._parse_jobs.get()) is not None:
            response, future = job
            if not future.cancelled():
                honour = not self.config.ignore_nofollow
                future.set_result(_parse_response(response, honour_nofollow=honour))

    async def _queue_links(self, entry: Entry, page_url: str, parsed: ParsedPage) -> None:
        if parsed.nofollow:
            return
        depth = entry.depth + 1
        targets = self._in_scope(parsed.links, parsed.base)
        if self._output is not None:
            self._output.note_links(page_url, targets)
        if self.config.max_depth is not None and depth > self.config.max_depth:
            return
        await self._frontier.add(Entry(url, depth, page_url) for url in targets)

    def _record(
        self,
        entry: Entry,
        response: Response | None,
        *,
        parsed: ParsedPage | None = None,
        elapsed_ms: int = 0,
        error: str | None = None,
    ) -> PageRecord:
        return PageRecord(
            url=entry.origin or entry.url,
            final_url=response.url if response is not None else None,
            status=response.status if response is not None else None,
            depth=entry.depth,
            referrer=entry.referrer,
            content_type=response.content_type if response is not None else None,
            title=parsed.title if parsed is not None else None,
            links=len(parsed.links) if parsed is not None else 0,
            bytes=len(response.body) if response is not None else 0,
            elapsed_ms=elapsed_ms,
            fetched_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            error=error or (response.error if response is not None else None),
            redirects=len(entry.hops),
            noindex=parsed is not None and parsed.noindex,
        )

    async def _emit(self, record: PageRecord) -> None:
        self._tally.add(record)
        if self._output is not None:
            self._output.write(record)
        if self._on_record is not None:
            await self._on_record(record)


def _is_parseable(response: Response) -> bool:
    """A complete 2xx HTML body: the only answers whose links are followed."""
    status = response.status
    ok = status is not None and 200 <= status < 300 and response.error is None
    return ok and is_html(response.content_type) and bool(response.body)


def _parse_response(response: Response, *, honour_nofollow: bool) -> ParsedPage:
    """Parse an HTML answer; an X-Robots-Tag header adds to the page's own directives."""
    parsed = parse_html(
        response.body, response.url, response.charset, honour_nofollow=honour_nofollow
    )
    directives = header_directives(response.x_robots_tag)
    if not directives:
        return parsed
    nofollow = parsed.nofollow or (honour_nofollow and "nofollow" in directives)
    return replace(
        parsed,
        links=() if nofollow else parsed.links,
        nofollow=nofollow,
        noindex=parsed.noindex or "noindex" in directives,
    )
