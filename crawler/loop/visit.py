"""What one lease does: robots.txt first, sitemaps, then fetch, retry, redirect, record.

The engine owns the loop and hands each lease to ``Visitor.visit()``, which
returns an Outcome for the frontier. A host's robots.txt and sitemaps are
HostKnowledge's (hosts.py); whether a link, a redirect's target or a
sitemap's entry is followed is the gate's (gate.py); the record is built and
emitted by the Recorder (recording.py).

Invariants:
1. Every page lease ends in exactly one record, or in a continuation (a
   retry, a redirect hop, a deferral after robots.txt) that carries the
   record on; never both, never neither.
2. A page's followed links are queued before its record is emitted, so its
   record and its links are journaled together.
3. Network failures are already short reasons (net/fetcher.py); the only
   exceptions caught here are a user extractor's, which fail its page alone
   (the engine makes any other one the URL's ``internal`` record).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from crawler.config import CrawlConfig
from crawler.extract import Extractor, Item, Page, run_extractor
from crawler.frontier.protocol import DONE, Frontier, Lease, Outcome, queue_links
from crawler.heap import release_freed
from crawler.loop.checks import Checker
from crawler.loop.gate import DROPPED, FOLLOWED, OFFSITE, LinkGate
from crawler.loop.hosts import HOST_DOWN, HostKnowledge
from crawler.loop.parsing import BIG_PAGE_BYTES, Parsed, Parser
from crawler.loop.recording import Recorder, build_record, change, conditional, content_hash
from crawler.net.fetcher import Fetcher, Response
from crawler.output.journal import Sink
from crawler.output.state import pack_links
from crawler.records import CHECK_KINDS, TOO_LARGE, Completion, Entry, PageRecord, Validators
from crawler.web.parser import is_html
from crawler.web.urls import domain_problem, host_of

# First wait before retrying a failed URL; it doubles with each attempt.
RETRY_DELAY = 0.5
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = frozenset(
    {"timeout", "connection", "connection-reset", "connection-refused", "local-resources"}
)
# The error of a record for a URL whose holders kept dying (the shared frontier gave up).
DEAD_LETTER = "dead-letter"
# The error of a record for a URL whose visit raised what nothing expected (a bug).
INTERNAL = "internal"
# The error of a record for a leased URL the crawl's scope or rules refuse.
OUT_OF_SCOPE = "out-of-scope"
# Seeds redirected out of the crawl's scope that are named in a warning (a seed list
# may hold millions).
NAMED_SEED_REDIRECTS = 3

log = logging.getLogger(__name__)


class Visitor:
    """Turns leases into requests, records and new entries for one crawl."""

    def __init__(
        self,
        config: CrawlConfig,
        *,
        fetcher: Fetcher,
        frontier: Frontier,
        gate: LinkGate,
        hosts: HostKnowledge,
        parser: Parser,
        recorder: Recorder,
        sink: Sink | None,
        extractor: Extractor | None,
        checker: Checker | None = None,
    ) -> None:
        self.config = config
        self._fetcher = fetcher
        self._frontier = frontier
        self._gate = gate
        self._hosts = hosts
        self._parser = parser
        self._recorder = recorder
        self._sink = sink
        self._extractor = extractor
        self._checker = checker
        self._seed_redirects = SeedRedirects()

    async def visit(self, lease: Lease) -> Outcome:
        if self._checker is not None:
            lease = replace(lease, entry=self._checker.checked_only(lease.entry))
        entry = lease.entry
        if lease.given_up:
            await self._recorder.give_up(entry, DEAD_LETTER)
            return DONE
        if not self._gate.admits(entry):  # a shared frontier's entry is anyone's writing
            await self._recorder.give_up(entry, OUT_OF_SCOPE)
            return DONE
        if (looking_up := self._hosts.looking_up(lease)) is not None:
            return looking_up
        if self._hosts.needs_robots(lease.host):
            deferred = await self._hosts.learn_robots(lease)
            if deferred is not None:
                return deferred
        if self._hosts.needs_sitemaps(lease):
            await self._hosts.queue_sitemaps(lease)
        if entry.kind == "sitemap":
            return await self._hosts.read_sitemap(lease)
        if (refused := self._hosts.refusal(lease.host, entry.url)) is not None:
            await self._recorder.emit(build_record(entry, None, error=refused))
            return DONE
        if entry.kind in CHECK_KINDS:
            return await self._check(lease)
        validators = self._validators(entry)
        response = await self._fetcher.fetch(
            entry.url, max_bytes=self.config.max_bytes, headers=conditional(validators)
        )
        return self._heard(lease, response) or await self._after_fetch(entry, response, validators)

    async def _check(self, lease: Lease) -> Outcome:
        """A link requested only to see whether it works (checks.py)."""
        assert self._checker is not None
        cached = self._checker.cached(lease.entry)
        if cached is not None:
            await self._recorder.emit(cached)
            return DONE
        response = await self._checker.fetch(lease.entry)
        return self._heard(lease, response) or await self._after_fetch(lease.entry, response, None)

    async def failed(self, lease: Lease) -> None:
        """A visit raised what nothing expected: logged, its record says ``internal``."""
        entry = lease.entry
        log.error("internal error on %s; its record says so", entry.url, exc_info=True)
        if entry.kind == "sitemap" and self._sink is not None:
            self._sink.done_unrecorded(entry.url)
        await self._recorder.give_up(entry, INTERNAL)

    def _validators(self, entry: Entry) -> Validators | None:
        if self._sink is None or not self._sink.incremental or entry.origin is not None:
            return None
        validators = self._sink.validators(entry.url)
        if validators is not None and self._checker is not None and validators.refs is None:
            # A page whose links were never checked (the last pass was a crawl): a 304
            # would leave them unknown, so it is asked for whole.
            return replace(validators, etag=None, last_modified=None)
        return validators

    async def _after_fetch(
        self, entry: Entry, response: Response, validators: Validators | None
    ) -> Outcome:
        elapsed_ms = entry.elapsed_ms + response.elapsed_ms
        status = response.status
        if status == 304 and validators is not None and conditional(validators) is not None:
            # Not modified since the validators we sent (a 304 to a request without
            # them is the server's mistake: it is recorded as it came).
            await self._not_modified(entry, response, validators, elapsed_ms)
        elif status is not None and 300 <= status < 400 and response.location:
            await self._redirect(entry, response, elapsed_ms)
        elif entry.kind in CHECK_KINDS:
            assert self._checker is not None
            await self._recorder.emit(*await self._checker.answered(entry, response, elapsed_ms))
        else:
            await self._page(entry, response, validators, elapsed_ms)
            if len(response.body) >= BIG_PAGE_BYTES:
                release_freed()  # what its links cost while they were read
        return Outcome(status=status)

    async def _page(
        self, entry: Entry, response: Response, validators: Validators | None, elapsed_ms: int
    ) -> None:
        """A final answer: its links queued, its body mirrored, its record emitted."""
        parsed: Parsed | None = None
        refs: bytes | None = None
        links: list[str] = []
        items: list[dict[str, Any]] = []
        error = None
        if _is_parseable(response):
            parsed = await self._parser.parse(response)
            links = parsed.follow
            if self._extractor is not None:
                seen = _seen_page(entry, parsed.response, links)
                links, items, error = await extract(self._extractor, seen, self._gate)
            await self._queue_links(entry, response.url, links)
            if self._checker is not None:
                url = entry.origin or entry.url
                refs = await self._checker.page(parsed.page, url, entry.depth, links)
            if self._sink is not None:
                await self._sink.save_html(response.url, parsed.response.body)
        record = build_record(entry, response, parsed=parsed, elapsed_ms=elapsed_ms, error=error)
        completion = None
        if self._sink is not None:  # what state.sqlite keeps; nothing without an output
            hashed = content_hash(response.body)
            if self._sink.incremental:
                record = replace(record, change=change(record, validators, hashed))
            completion = _completed(record, response, items, hashed, links, refs)
        await self._recorder.emit(record, completion, [Item(record.url, item) for item in items])

    async def _not_modified(
        self, entry: Entry, response: Response, validators: Validators, elapsed_ms: int
    ) -> None:
        """A 304: the page is as it was; its stored links are followed, so new pages are found."""
        links = list(validators.links)
        await self._queue_links(entry, entry.url, links)
        if self._checker is not None and validators.refs is not None:
            await self._checker.unchanged(validators.refs, entry.url, entry.depth, links)
        record = replace(build_record(entry, response, elapsed_ms=elapsed_ms), change="unchanged")
        await self._recorder.emit(record, _unchanged(record, response, validators, links))

    def _heard(self, lease: Lease, response: Response) -> Outcome | None:
        """The answer to a lease's request, told to its host; the retry if the URL goes again."""
        entry = lease.entry
        retry = retry_of(entry, response, self.config)
        if retry is not None:
            self._recorder.retried()
        self._hosts.heard(lease.host, response, final=retry is None)
        return retry

    async def _redirect(self, entry: Entry, response: Response, elapsed_ms: int) -> None:
        """A hop through the frontier when its target is followed; else the record ends here."""
        hops = (*entry.hops, response.url)
        target, verdict = self._gate.judge(response.location or "", response.url)
        self._seed_redirects.judged(entry, target, verdict)
        kind = entry.kind
        if self._checker is not None and verdict != DROPPED and kind not in CHECK_KINDS:
            kind = "link" if verdict != FOLLOWED else kind  # checked where it leads
        error = None
        if target is None or verdict == DROPPED:
            error = "bad-redirect"
        elif target in hops:
            error = "redirect-loop"
        elif len(hops) > self.config.max_redirects:
            error = "too-many-redirects"
        elif verdict == FOLLOWED or kind in CHECK_KINDS:
            hop = Entry(
                target,
                entry.depth,
                entry.referrer,
                kind=kind,
                origin=entry.origin or entry.url,
                hops=hops,
                elapsed_ms=elapsed_ms,
                via_status=response.status,
            )
            if await self._frontier.add([hop], first=True):
                return
        record = build_record(entry, response, elapsed_ms=elapsed_ms, error=error)
        record = replace(record, final_url=target or response.location, redirects=len(hops))
        await self._recorder.emit(record)

    async def _queue_links(self, entry: Entry, page_url: str, links: list[str]) -> None:
        if self._sink is not None:
            self._sink.note_links(page_url, links)
        depth = entry.depth + 1
        if depth <= self.config.max_depth:
            await queue_links(self._frontier, links, depth, page_url)


class SeedRedirects:
    """Says which seeds redirect out of the crawl's scope (``http://example.org/`` to
    ``https://www.example.org/``, say): the crawl ends at that redirect, as wget's
    does, and a crawl of one page is otherwise a puzzle. A seed list may hold
    millions: the first NAMED_SEED_REDIRECTS are named."""

    def __init__(self) -> None:
        self._count = 0

    def judged(self, entry: Entry, target: str | None, verdict: str) -> None:
        """A redirect of ``entry`` to ``target`` was judged ``verdict`` by the gate."""
        if verdict != OFFSITE or entry.depth != 0 or entry.referrer is not None:
            return
        self._count += 1
        if self._count > NAMED_SEED_REDIRECTS or target is None:
            return
        host = host_of(target)
        widen = f", or add --allow-domain {host}" if domain_problem(host) is None else ""
        more = " (no more such seeds are named)" if self._count == NAMED_SEED_REDIRECTS else ""
        log.warning(
            "seed %s redirects out of the crawl's scope, to %s (not followed): give that URL"
            " as the seed%s%s",
            entry.origin or entry.url,
            target,
            widen,
            more,
        )


def retry_of(entry: Entry, response: Response, config: CrawlConfig) -> Outcome | None:
    """The entry again, if its request failed in a way worth another try (--retries)."""
    retryable = response.status in RETRY_STATUSES or response.error in RETRY_ERRORS
    if not retryable or entry.attempts >= config.retries:
        return None
    elapsed_ms = entry.elapsed_ms + response.elapsed_ms
    again = replace(
        entry, attempts=entry.attempts + 1, leases=entry.leases + 1, elapsed_ms=elapsed_ms
    )
    if response.retry_after is not None:
        # The server asked the whole host to wait (RFC 9110 §10.2.3).
        wait = min(response.retry_after, config.max_retry_after)
        return Outcome(again, response.status, retry_after=wait)
    pause = RETRY_DELAY * 2**entry.attempts
    if response.error in HOST_DOWN:
        # The host itself is not there: it waits whole, so its other URLs are not
        # tried meanwhile (a refusing host costs one request and its retries).
        return Outcome(again, None, retry_after=pause)
    return Outcome(again, response.status, delay=pause)


def _seen_page(entry: Entry, response: Response, links: list[str]) -> Page:
    """What an extractor sees of a parseable (2xx HTML) answer."""
    assert response.status is not None
    return Page(
        entry.origin or entry.url,
        response.url,
        response.status,
        response.headers,
        response.body,
        response.charset,
        list(links),
    )


def _completed(
    record: PageRecord,
    response: Response,
    items: list[dict[str, Any]],
    hashed: str | None,
    links: list[str],
    refs: bytes | None,
) -> Completion:
    """What state.sqlite keeps of a final answer. Its links are kept for a later
    pass's 304, which only a page with a validator can answer: no zlib work and no
    bytes for the others (10-16 us a page)."""
    validated = response.etag or response.last_modified
    return Completion(
        record.url,
        record,
        tuple(items),
        record.status,
        response.etag,
        response.last_modified,
        hashed,
        pack_links(links) if validated else None,
        refs=refs,
    )


def _unchanged(
    record: PageRecord, response: Response, validators: Validators, links: list[str]
) -> Completion:
    """What state.sqlite keeps of a page that answered 304: the last pass's, carried on."""
    return Completion(
        record.url,
        record,
        (),
        validators.previous_status,
        response.etag or validators.etag,
        response.last_modified or validators.last_modified,
        validators.content_hash,
        pack_links(links),
        refs=validators.refs,
    )


def _is_parseable(response: Response) -> bool:
    """A 2xx HTML body, whole or cut at --max-bytes (the links of the part read are
    followed and checked; the record says "too-large"): the only answers whose
    links are followed."""
    status = response.status
    ok = status is not None and 200 <= status < 300 and response.error in (None, TOO_LARGE)
    return ok and is_html(response.content_type) and bool(response.body)


async def extract(
    extractor: Extractor, page: Page, gate: LinkGate
) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """An extractor's items from a page, and the links it chose to follow (judged by
    the gate again if it changed them), or its failure: whatever the user's code
    raises fails this page alone."""
    links = list(page.follow)
    try:
        items = await run_extractor(extractor, page)
    except Exception:
        log.warning("extractor failed on %s", page.url, exc_info=True)
        return links, [], "extractor-failed"
    if page.follow != links:
        links = gate.follow(page.follow, page.final_url)
    return links, items, None
