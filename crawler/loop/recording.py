"""Records: how a visit's outcome becomes a PageRecord, and where every record goes.

Every record of a crawl leaves through ``Recorder.emit``: it is counted,
handed to the sink (the journal, the front's parent, a shared crawl's
folder) with its Completion, and then to the library's iterator. In a
shared crawl the counting and the sink wait until the lease's ack holds
(``AfterAck``): a visit whose lease expired meanwhile leaves no record. Building a
record is pure (``build_record``); so are the helpers of --incremental:
conditional request headers, the content hash and the change since the
last crawl.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from crawler.extract import Item
from crawler.frontier.protocol import Lease
from crawler.loop.parsing import Parsed
from crawler.net.fetcher import Response
from crawler.output.journal import Sink
from crawler.records import Completion, Entry, LinkCheck, PageRecord, Validators
from crawler.stats import Tally

RecordSink = Callable[[PageRecord | Item | LinkCheck], Awaitable[None]]
# after_ack(lease, counters, then): the record's counters go with the lease's ack,
# and ``then`` is called once it holds (a shared frontier's; see shared.py).
AfterAck = Callable[[Lease, dict[str, Any], Callable[[], None]], None]
REMOVED_STATUSES = frozenset({404, 410})
# The lease a worker is visiting (set by the engine for each one).
CURRENT_LEASE: ContextVar[Lease | None] = ContextVar("current_lease", default=None)


class Recorder:
    """The records of one crawl: counted, journaled, then given to the library."""

    def __init__(
        self,
        tally: Tally,
        sink: Sink | None,
        on_record: RecordSink | None,
        after_ack: AfterAck | None = None,
        checked: Callable[[PageRecord], None] | None = None,
    ) -> None:
        self._tally = tally
        self._sink = sink
        self._on_record = on_record
        self._after_ack = after_ack
        # crawler check's ledger (linkbook.py) learns every record's result.
        self._checked = checked

    async def emit(
        self,
        record: PageRecord,
        completion: Completion | None = None,
        items: Iterable[Item] = (),
    ) -> None:
        """The record (and its page's items) to the sink and the library's iterator."""
        items = list(items)
        done = completion or Completion(record.url, record)

        def keep() -> None:
            if self._checked is not None:
                self._checked(record)
            self._tally.add(record)
            self._tally.items += len(items)
            if self._sink is not None:
                self._sink.record(record, done)

        lease = CURRENT_LEASE.get()
        if self._after_ack is None or lease is None:
            keep()
        else:
            self._after_ack(lease, Tally.of(record, len(items)), keep)
        if self._on_record is not None:
            for item in items:
                await self._on_record(item)
            await self._on_record(record)

    def retried(self) -> None:
        """A request failed and its URL goes back for another try (counted with the records)."""
        self._tally.retries += 1

    async def give_up(self, entry: Entry, reason: str) -> None:
        """A record for an entry the crawl gave up on without an answer."""
        if entry.kind == "page":
            await self.emit(build_record(entry, None, error=reason))

    async def redirect_seen(self, hop: Entry) -> None:
        """A redirect hop led to a URL already seen: its record ends there."""
        origin = replace(hop, url=hop.origin or hop.url, origin=None, hops=hop.hops[:-1])
        record = replace(
            build_record(origin, None, elapsed_ms=hop.elapsed_ms),
            final_url=hop.url,
            status=hop.via_status,
            redirects=len(hop.hops),
        )
        await self.emit(record)


def build_record(
    entry: Entry,
    response: Response | None,
    *,
    parsed: Parsed | None = None,
    elapsed_ms: int = 0,
    error: str | None = None,
) -> PageRecord:
    rendered = parsed.rendered if parsed is not None else None
    return PageRecord(
        url=entry.origin or entry.url,
        # A redirect hop refused before its request still names where it led.
        final_url=response.url if response is not None else entry.origin and entry.url,
        status=response.status if response is not None else None,
        depth=entry.depth,
        referrer=entry.referrer,
        content_type=response.content_type if response is not None else None,
        title=parsed.page.title if parsed is not None else None,
        links=parsed.links if parsed is not None else 0,
        bytes=len(response.body) if response is not None else 0,
        elapsed_ms=elapsed_ms,
        fetched_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        error=error or (response.error if response is not None else None),
        redirects=len(entry.hops),
        noindex=parsed is not None and parsed.page.noindex,
        kind=entry.kind,
        rendered=rendered.reason if rendered is not None else None,
        render_ms=rendered.elapsed_ms if rendered is not None else None,
        render_requests=rendered.requests if rendered is not None else None,
        render_error=rendered.error if rendered is not None else None,
    )


def conditional(validators: Validators | None) -> dict[str, str] | None:
    """If-None-Match / If-Modified-Since from what the last crawl saw (RFC 9110 §13.1)."""
    if validators is None:
        return None
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers or None


def content_hash(body: bytes) -> str | None:
    """Change detection for --incremental, not security: length and CRC-32 (a
    changed page of the same length passes for unchanged once in 4e9). On
    1 MB pages BLAKE2b was a fifth of the crawler's CPU; CRC-32 is 5x faster."""
    return f"{len(body):x}-{zlib.crc32(body):08x}" if body else None


def change(record: PageRecord, validators: Validators | None, hashed: str | None) -> str | None:
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
    if hashed is None or validators.content_hash is None:
        return "unchanged" if previous == record.status else "changed"
    return "unchanged" if hashed == validators.content_hash else "changed"
