"""What one lease does: robots.txt first, sitemaps, then fetch, retry, redirect, record.

Layer 3: imports layers 0-2 and hosts (robots.txt and sitemaps per host);
the engine (same layer) owns the loop and hands each lease to
``Visitor.visit()``, which returns an Outcome for the frontier.

Invariants:
1. Every page lease ends in exactly one record, or in a continuation (a
   retry, a redirect hop, a deferral after robots.txt) that carries the
   record on; never both, never neither.
2. A page's in-scope links are queued before its record is emitted, so its
   record and its links are journaled together.
3. Network failures are already short reasons (fetcher.py); the only
   exceptions caught here are a user extractor's, which fail its page alone.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from crawler.config import CrawlConfig
from crawler.extract import Item, LinkRules, Page, load_extractor, run_extractor
from crawler.fetcher import Fetcher, Response
from crawler.frontier import DONE, Entry, Lease, Outcome
from crawler.hosts import Enqueue, HostKnowledge, RobotsStore
from crawler.journal import Sink
from crawler.parser import ParsedPage, is_html
from crawler.politeness import Politeness
from crawler.records import PageRecord
from crawler.state import Completion, Validators, pack_links
from crawler.stats import Tally
from crawler.urls import Scope, host_of, is_trap, normalize

MAX_REDIRECTS = 10
# First wait before retrying a failed URL; it doubles with each attempt.
RETRY_DELAY = 0.5
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = frozenset({"timeout", "connection", "connection-reset", "connection-refused"})
REMOVED_STATUSES = frozenset({404, 410})


Parse = Callable[[Response], Awaitable[ParsedPage]]
RecordSink = Callable[[PageRecord | Item], Awaitable[None]]
log = logging.getLogger(__name__)


class Visitor:
    """Turns leases into requests, records and new entries for one crawl."""

    def __init__(
        self,
        config: CrawlConfig,
        *,
        fetcher: Fetcher,
        politeness: Politeness,
        scope: Scope,
        tally: Tally,
        sink: Sink | None,
        enqueue: Enqueue,
        parse: Parse,
        on_record: RecordSink | None,
        robots_store: RobotsStore | None = None,
    ) -> None:
        self.config = config
        self._fetcher = fetcher
        self._politeness = politeness
        self._scope = scope
        self._tally = tally
        self._sink = sink
        self._enqueue = enqueue
        self._parse = parse
        self._on_record = on_record
        self._sort_query = not config.keep_query_order
        self._hosts = HostKnowledge(
            config,
            fetcher=fetcher,
            politeness=politeness,
            scope=scope,
            tally=tally,
            sink=sink,
            enqueue=enqueue,
            in_scope=self._in_scope,
            robots_store=robots_store,
        )
        self._rules = LinkRules(config.allow, config.deny, config.link_filter)
        extract = config.extract
        self._extractor = load_extractor(extract) if isinstance(extract, str) else extract

    async def visit(self, lease: Lease) -> Outcome:
        entry = lease.entry
        if self._hosts.needs_robots(lease.host):
            deferred = await self._hosts.learn_robots(lease)
            if deferred is not None:
                return deferred
        if self._hosts.needs_sitemaps(lease.host):
            await self._hosts.queue_sitemaps(lease)
        if entry.kind == "sitemap":
            return await self._hosts.read_sitemap(entry)
        policy = self._hosts.policy(lease.host)
        if policy is not None and not policy.allows(entry.url):
            await self._emit(self._record(entry, None, error=policy.refuse_all or "robots"))
            return DONE
        validators = self._validators(entry)
        response = await self._fetcher.fetch(
            entry.url, max_bytes=self.config.max_bytes, headers=_conditional(validators)
        )
        return await self._after_fetch(entry, response, validators)

    def _validators(self, entry: Entry) -> Validators | None:
        if self._sink is None or not self._sink.incremental or entry.origin is not None:
            return None
        return self._sink.validators(entry.url)

    def _in_scope(self, links: Iterable[str], base: str) -> list[str]:
        """Normalised, requestable, in-scope URLs of ``links``; the rest are counted."""
        urls: list[str] = []
        for link in links:
            url = normalize(link, base, sort_query=self._sort_query)
            if url is None or is_trap(url):
                self._tally.dropped_links += 1
            elif not self._scope.allows(host_of(url)):
                self._tally.offsite_links += 1
            elif not self._rules.admits(url):
                self._tally.excluded_links += 1
            else:
                urls.append(url)
        return urls

    async def _after_fetch(
        self, entry: Entry, response: Response, validators: Validators | None
    ) -> Outcome:
        elapsed_ms = entry.elapsed_ms + response.elapsed_ms
        retry = self._retry(entry, response, elapsed_ms)
        if retry is not None:
            return retry
        status = response.status
        if status == 304 and validators is not None:
            await self._unchanged(entry, response, validators, elapsed_ms)
            return Outcome(status=status)
        if status is not None and 300 <= status < 400 and response.location:
            await self._redirect(entry, response, elapsed_ms)
            return Outcome(status=status)
        parsed, links, error = None, [], None
        items: list[dict[str, Any]] = []
        if _is_parseable(response):
            parsed = await self._parse(response)
            links = [] if parsed.nofollow else self._in_scope(parsed.links, parsed.base)
            if self._extractor is not None:
                links, items, error = await self._extract(entry, response, links)
            await self._queue_targets(entry, response.url, links)
            if self._sink is not None:
                await self._sink.save_html(response.url, response.body)
        record = self._record(entry, response, parsed=parsed, elapsed_ms=elapsed_ms, error=error)
        completion = None
        if self._sink is not None:  # what state.sqlite keeps; nothing without an output
            content_hash = _content_hash(response.body)
            if self._sink.incremental:
                record = replace(record, change=_change(record, validators, content_hash))
            completion = Completion(
                record.url,
                _as_json(record),
                tuple(json.dumps(item, ensure_ascii=False, default=str) for item in items),
                record.status,
                response.etag,
                response.last_modified,
                content_hash,
                pack_links(links),
            )
        await self._emit(record, completion, [Item(record.url, item) for item in items])
        return Outcome(status=status)

    async def _extract(
        self, entry: Entry, response: Response, links: list[str]
    ) -> tuple[list[str], list[dict[str, Any]], str | None]:
        """The extractor's items and the links it chose to follow, or its failure."""
        assert self._extractor is not None and response.status is not None
        page = Page(
            entry.origin or entry.url,
            response.url,
            response.status,
            response.headers,
            response.body,
            response.charset,
            list(links),
        )
        try:
            items = await run_extractor(self._extractor, page)
        except Exception:  # the user's code: whatever it raises is this page's failure only
            log.warning("extractor failed on %s", page.url, exc_info=True)
            return links, [], "extractor-failed"
        if page.follow != links:
            links = self._in_scope(page.follow, response.url)
        return links, items, None

    async def _unchanged(
        self, entry: Entry, response: Response, validators: Validators, elapsed_ms: int
    ) -> None:
        """A 304: the page is as it was; its stored links are followed, so new pages are found."""
        links = await self._queue_targets(entry, entry.url, list(validators.links))
        record = replace(self._record(entry, response, elapsed_ms=elapsed_ms), change="unchanged")
        completion = Completion(
            record.url,
            _as_json(record),
            (),
            validators.previous_status,
            response.etag or validators.etag,
            response.last_modified or validators.last_modified,
            validators.content_hash,
            pack_links(links),
        )
        await self._emit(record, completion)

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
                via_status=response.status,
            )
            if await self._enqueue([hop], True):
                return
        else:
            self._tally.offsite_links += 1
        record = self._record(entry, response, elapsed_ms=elapsed_ms, error=error)
        final_url = target or response.location
        record = replace(record, final_url=final_url, redirects=len(hops))
        await self._emit(record, Completion(record.url, _as_json(record), (), record.status))

    async def redirect_seen(self, hop: Entry) -> None:
        """A hop routed from another process led to a URL seen here: its record ends there."""
        origin = replace(hop, url=hop.origin or hop.url, origin=None, hops=hop.hops[:-1])
        record = replace(
            self._record(origin, None, elapsed_ms=hop.elapsed_ms),
            final_url=hop.url,
            status=hop.via_status,
            redirects=len(hop.hops),
        )
        await self._emit(record, Completion(record.url, _as_json(record), (), record.status))

    async def give_up(self, entry: Entry, reason: str) -> None:
        """A record for an entry the crawl gave up on without an answer."""
        if entry.kind != "page":
            return
        record = self._record(entry, None, error=reason)
        await self._emit(record, Completion(record.url, _as_json(record)))

    async def _queue_targets(self, entry: Entry, page_url: str, targets: list[str]) -> list[str]:
        if self._sink is not None:
            self._sink.note_links(page_url, targets)
        depth = entry.depth + 1
        if depth <= self.config.max_depth:
            await self._enqueue((Entry(url, depth, page_url) for url in targets), False)
        return targets

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
            # A redirect hop refused before its request still names where it led.
            final_url=response.url if response is not None else entry.origin and entry.url,
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

    async def _emit(
        self,
        record: PageRecord,
        completion: Completion | None = None,
        items: Iterable[Item] = (),
    ) -> None:
        """The record (and its page's items) to the journal and the library's iterator."""
        self._tally.add(record)
        if self._sink is not None:
            self._sink.record(record, completion or Completion(record.url, _as_json(record)))
        for item in items:
            self._tally.items += 1
            if self._on_record is not None:
                await self._on_record(item)
        if self._on_record is not None:
            await self._on_record(record)


def _as_json(record: PageRecord) -> str:
    return json.dumps(record.as_dict(), ensure_ascii=False)


def _conditional(validators: Validators | None) -> dict[str, str] | None:
    """If-None-Match / If-Modified-Since from what the last crawl saw (RFC 9110 §13.1)."""
    if validators is None:
        return None
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers or None


def _content_hash(body: bytes) -> str | None:
    """Change detection for --incremental, not security: length and CRC-32 (a
    changed page of the same length passes for unchanged once in 4e9). On
    1 MB pages BLAKE2b was a fifth of the crawler's CPU; CRC-32 is 5x faster."""
    return f"{len(body):x}-{zlib.crc32(body):08x}" if body else None


def _change(
    record: PageRecord, validators: Validators | None, content_hash: str | None
) -> str | None:
    """new / changed / unchanged / removed, against the last crawl.

    A body that was not read (not HTML) has no hash: its status decides.
    """
    if validators is None:
        return "new"
    previous = validators.previous_status
    if record.status in REMOVED_STATUSES and previous is not None and previous < 400:
        return "removed"
    if record.status is None or not 200 <= record.status < 300:
        return None
    if content_hash is None or validators.content_hash is None:
        return "unchanged" if previous == record.status else "changed"
    return "unchanged" if content_hash == validators.content_hash else "changed"


def _is_parseable(response: Response) -> bool:
    """A complete 2xx HTML body: the only answers whose links are followed."""
    status = response.status
    ok = status is not None and 200 <= status < 300 and response.error is None
    return ok and is_html(response.content_type) and bool(response.body)
