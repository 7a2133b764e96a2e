"""Requests of crawler check: a link is asked whether it works, nothing more.

The Visitor (visit.py) leases check entries (records.CHECK_KINDS) like pages,
through their hosts' politeness slots (an offsite host has its own, so one
slow or dead host holds up only its own links) and robots.txt (obeyed, as
LinkChecker does; ``--ignore-robots`` checks them all), and hands them here:

- "link": HEAD; when HEAD is refused (405, 501, any other 4xx/5xx, a reset
  or a malformed answer, as servers that mishandle HEAD give) a GET at once,
  whose body is not read;
- "anchors" (an offsite page with ``--check-fragments``): a GET whose HTML is
  read for its ids;
- "stylesheet": a GET whose text is read for ``url(...)``, each checked in turn.

A working link's record is kept in state.sqlite for ``--cache-age`` seconds:
a later pass (``--update``) reuses it instead of asking the site again. A
failing one is asked again every pass, so a fix is seen the next night.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Container
from dataclasses import replace
from typing import Any, TypeVar

from crawler.config import CrawlConfig
from crawler.frontier.protocol import Frontier
from crawler.loop.gate import LinkGate
from crawler.loop.linkbook import Followed, Found, LinkBook, restore_book, unpack_found
from crawler.loop.parsing import BIG_PAGE_BYTES
from crawler.loop.recording import RecordSink, build_record
from crawler.loop.runs import Opened
from crawler.net.fetcher import Fetcher, Response
from crawler.offload import in_thread
from crawler.output.check_cache import RefsPacker, pack_refs
from crawler.output.journal import Journal, Sink
from crawler.records import Completion, Entry, PageRecord
from crawler.web.parser import ParsedPage, decode_html, is_html, parse_html
from crawler.web.refs import PageAnchors, Refs, css_refs

# A HEAD answered 4xx or 5xx is asked again with GET: servers that refuse HEAD say
# 405 or 501 (RFC 9110 §9.3.2 lets them), and many answer it 400, 403 or 404
# while GET works; a broken link costs one request more. So is a HEAD that got
# no proper answer (some servers close the connection on it); a timeout is not
# (the GET would wait as long again).
_HEAD_DOUBTFUL_ERRORS = frozenset({"bad-response", "connection-reset"})
_CSS_TYPES = frozenset({"text/css", "text/plain"})
# A page with this many links has them resolved and judged in a thread.
BIG_LINK_COUNT = 5000
REPORT_BATCH = 1000
T = TypeVar("T")


class Checker:
    """Fetches the check entries of one crawl and feeds the LinkBook."""

    def __init__(
        self,
        config: CrawlConfig,
        *,
        book: LinkBook,
        fetcher: Fetcher,
        frontier: Frontier,
        cache: Callable[[str, float], PageRecord | None] | None,
        pages_done: int = 0,
    ) -> None:
        self.book = book
        self._config = config
        self._fetcher = fetcher
        self._frontier = frontier
        self._cache = cache
        # Pages started, against --max-pages (the frontier leases every page to a check).
        self._pages = pages_done

    def checked_only(self, entry: Entry) -> Entry:
        """The entry as it is visited: a page past --max-pages is only checked (and read
        for its ids), not crawled, so every link of the pages crawled gets its result."""
        limit = self._config.max_pages
        if not entry.counts_as_page() or limit is None:
            return entry
        if self._pages < limit:
            self._pages += 1
            return entry
        return replace(entry, kind="anchors")  # read for its ids, as a page not crawled

    def cached(self, entry: Entry) -> PageRecord | None:
        """A working record of this URL from an earlier pass, younger than --cache-age."""
        if self._cache is None or entry.origin is not None:  # a redirect's hop: not cached
            return None
        cached = self._cache(entry.url, self._config.cache_age)
        if cached is None:
            return None
        return replace(cached, depth=entry.depth, referrer=entry.referrer)

    async def fetch(self, entry: Entry) -> Response:
        max_bytes = self._config.max_bytes
        if entry.kind == "anchors":
            return await self._fetcher.fetch(entry.url, max_bytes=max_bytes)
        if entry.kind == "stylesheet":
            return await self._fetcher.fetch(entry.url, max_bytes=max_bytes, any_type=True)
        head = await self._fetcher.fetch(entry.url, max_bytes=max_bytes, method="HEAD")
        doubtful = head.status is not None and head.status >= 400
        if not doubtful and head.error not in _HEAD_DOUBTFUL_ERRORS:
            return head
        get = await self._fetcher.fetch(entry.url, max_bytes=max_bytes, read=False)
        return replace(get, elapsed_ms=head.elapsed_ms + get.elapsed_ms)

    async def answered(
        self, entry: Entry, response: Response, elapsed_ms: int
    ) -> tuple[PageRecord, Completion]:
        """A check's final answer: its record, and what it tells (read, noted, queued)."""
        refs = await self._read(entry, response, entry.origin or entry.url)
        record = build_record(entry, response, elapsed_ms=elapsed_ms)
        return record, Completion(record.url, record, status=record.status, checked=True, refs=refs)

    async def _read(self, entry: Entry, response: Response, url: str) -> bytes | None:
        """An offsite page's anchors, a stylesheet's url()s (noted, and queued to be
        checked), packed for state.sqlite."""
        status = response.status
        if status is None or not 200 <= status < 300 or not response.body:
            return None
        big = len(response.body) >= BIG_PAGE_BYTES
        if entry.kind == "anchors" and is_html(response.content_type):
            args = (response.body, response.url, response.charset)
            page = await _off_loop(big, functools.partial(parse_html, *args, refs=PageAnchors))
            self.book.note(url, (), page.anchors)
            return pack_refs((), page.anchors)
        if entry.kind == "stylesheet" and response.content_type in (*_CSS_TYPES, None):
            found = await _off_loop(big, self._stylesheet_links, response)
            await self._queue(url, found, entry.depth)
            return pack_refs([link.row() for link in found], "")
        return None

    def _stylesheet_links(self, response: Response) -> list[Found]:
        text = decode_html(response.body, response.charset)
        return self.book.resolve(css_refs(text), response.url)

    async def page(self, page: ParsedPage, url: str, depth: int, followed: list[str]) -> bytes:
        """A crawled page's links: noted with its anchors, and queued to be checked
        (but those it ``followed``, queued as pages); packed. A page of many links is
        resolved and queued BIG_LINK_COUNT at a time, its links as written let go of
        as they are: they are never held three times over (as written, resolved, and
        as entries). The page's refs are read once: empty after."""
        self.book.note(url, (), page.anchors)
        queued = Followed(self._queued(depth, followed))
        refs, packer = page.refs, RefsPacker()
        big = len(refs) >= BIG_LINK_COUNT
        chunks = refs.drain(BIG_LINK_COUNT) if isinstance(refs, Refs) else [list(refs)]
        for chunk in chunks:
            args = (chunk, page.base, queued, page.query_codec)
            found = await _off_loop(big, self.book.resolve, *args)
            await self._queue(url, found, depth, queued)
            packer.add([link.row() for link in found])
        return packer.packed(page.anchors)

    async def unchanged(self, refs: bytes, url: str, depth: int, followed: list[str]) -> None:
        """A page that answered 304: its links as the last pass found them."""
        found, anchors = unpack_found(refs)
        self.book.note(url, (), anchors)
        await self._queue(url, found, depth, Followed(self._queued(depth, followed)))

    def _queued(self, depth: int, followed: list[str]) -> list[str]:
        """The links a page at ``depth`` followed that the Visitor queued as pages (none
        past --max-depth: those are checked)."""
        return followed if depth < self._config.max_depth else []

    async def report(self, sink: Sink | None, on_record: RecordSink | None) -> None:
        """The results, once every page that links to them is known: to checks.jsonl
        and broken.jsonl, and to the library's iterator, REPORT_BATCH at a time (a
        page of 225,000 links has as many results: made as they are written)."""
        results = self.book.results()
        while True:
            batch = list(itertools.islice(results, REPORT_BATCH))
            if isinstance(sink, Journal):
                sink.write_checks(batch)
            if on_record is not None:
                for check in batch:
                    await on_record(check)
            if len(batch) < REPORT_BATCH:
                return

    async def _queue(
        self, url: str, found: list[Found], depth: int, queued: Container[str] = ()
    ) -> None:
        self.book.note(url, found)
        big = len(found) >= BIG_LINK_COUNT
        await self._frontier.add(
            await _off_loop(big, self.book.to_check, found, url, depth, queued)
        )


async def _off_loop(big: bool, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``; in a thread when the work is big, for parsing.py's reason:
    the loop, and every request in flight, would wait for it (a page of 100,000 links
    takes a second to judge)."""
    if big:
        return await in_thread(function, *args)
    return function(*args)


def open_checker(opened: Opened, gate: LinkGate, fetcher: Fetcher, pages_done: int) -> Checker:
    """crawler check's: its ledger restored from the state when the pass goes on
    (``pages_done``: the pages of the pass crawled before this run)."""
    book = LinkBook(opened.config, gate)
    journal = opened.sink if isinstance(opened.sink, Journal) else None
    if journal is not None:
        pages, records = journal.checked_so_far()
        restore_book(book, pages, records)
    return Checker(
        opened.config,
        book=book,
        fetcher=fetcher,
        frontier=opened.frontier,
        cache=journal.cached_check if journal is not None else None,
        pages_done=pages_done,
    )
