"""The crawl's vocabulary: frozen values that cross packages.

A PageRecord's field names are the output schema (``RECORD_FIELDS`` fixes the
column order of pages.jsonl and CSV; output/lines.py writes them). An Entry
is a URL waiting in a frontier; a Completion is a URL done, as the output
layer keeps it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Reasons that mean "the link does not work" for broken.jsonl, as opposed to
# reasons that mean "we chose not to fetch it" (robots, too-large, ...).
BROKEN_ERRORS = frozenset(
    {
        "timeout",
        "dns",
        "tls",
        "connection-refused",
        "connection",
        "connection-reset",
        "bad-response",
        "redirect-loop",
        "too-many-redirects",
        "bad-redirect",
        "bad-encoding",
    }
)


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One line of pages.jsonl: the outcome of one URL taken from the frontier."""

    url: str
    final_url: str | None
    status: int | None
    depth: int
    referrer: str | None
    content_type: str | None
    title: str | None
    links: int
    bytes: int
    elapsed_ms: int
    fetched_at: str
    error: str | None
    redirects: int = 0
    noindex: bool = False
    # --incremental only: "new", "changed", "unchanged" or "removed" since the last crawl.
    change: str | None = None

    def is_broken(self) -> bool:
        """A 4xx/5xx answer or a network failure: something a link checker reports."""
        if self.status is not None:
            return self.status >= 400
        return self.error in BROKEN_ERRORS

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RECORD_FIELDS}


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(PageRecord))


@dataclass(frozen=True, slots=True)
class Entry:
    """A URL waiting in the frontier, with what its record needs to carry."""

    url: str
    depth: int
    referrer: str | None = None
    # "page", or "sitemap" for a sitemap to read (it gets no record of its own).
    kind: str = "page"
    # Failed requests so far (for --retries).
    attempts: int = 0
    # Times this entry's record has been leased before (deferred after robots.txt, retried).
    leases: int = 0
    # For a redirect hop: the URL the record is for, and the hops requested so far.
    origin: str | None = None
    hops: tuple[str, ...] = ()
    elapsed_ms: int = 0
    # For a redirect hop: the status of the answer that redirected here.
    via_status: int | None = None

    def is_continuation(self) -> bool:
        """Carries on a record already started (retry, deferral, redirect hop)."""
        return self.leases > 0 or self.origin is not None

    def counts_as_page(self) -> bool:
        """Leasing it starts a new record: it counts toward --max-pages."""
        return self.kind == "page" and not self.is_continuation()


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last crawl knew of a page, for a conditional request."""

    previous_status: int | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    links: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Completion:
    """A URL done: its record (None for a sitemap), the items an extractor found on
    its page, and what --incremental needs later. output/ serialises it."""

    url: str
    record: PageRecord | None
    items: tuple[dict[str, Any], ...] = ()
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    # The page's followed links, packed (output.state.pack_links): compressed
    # where the page is parsed, in the front's processes too.
    links: bytes | None = None


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """One line of broken.jsonl: a broken URL and the pages that link to it."""

    url: str
    status: int | None
    error: str | None
    referrers: tuple[str, ...]
    referrer_count: int


@dataclass(frozen=True, slots=True)
class CrawlStats:
    """A snapshot of a crawl's counters; stats.json is this object."""

    pages: int = 0
    ok: int = 0
    errors: int = 0
    broken: int = 0
    redirects: int = 0
    retries: int = 0
    robots_refused: int = 0
    offsite_links: int = 0
    dropped_links: int = 0
    excluded_links: int = 0
    refused_links: int = 0
    sitemaps: int = 0
    sitemap_urls: int = 0
    items: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    queued: int = 0
    in_flight: int = 0
    duration_s: float = 0.0
    pages_per_s: float = 0.0
    finished: bool = False
