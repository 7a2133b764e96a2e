"""The crawl's vocabulary: frozen values that cross packages.

A PageRecord's field names are the output schema (``RECORD_FIELDS`` fixes the
column order of pages.jsonl and CSV; output/lines.py writes them). An Entry
is a URL waiting in a frontier; a Completion is a URL done, as the output
layer keeps it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

ROBOTS_UNAVAILABLE = "robots-unavailable"
# Reasons that mean "the link does not work" for broken.jsonl, as opposed to
# reasons that mean "we chose not to fetch it" (robots, too-large, ...).
BROKEN_ERRORS = frozenset(
    {
        "timeout",
        "dns",
        "tls",
        "certificate",
        "connection-refused",
        "connection",
        "connection-reset",
        "bad-response",
        "redirect-loop",
        "too-many-redirects",
        "bad-redirect",
        "bad-encoding",
        # robots.txt answered 5xx: RFC 9309 has nothing of the host fetched, and a site
        # answering 5xx everywhere is down, not excluded.
        ROBOTS_UNAVAILABLE,
    }
)


# The error of a body cut at --max-bytes: the part read is kept, and parsed.
TOO_LARGE = "too-large"


def shown_reason(status: int | None, error: str | None) -> int | str | None:
    """What a broken link shows, wherever it is printed: its failing status, else its
    error (a network reason; a fragment missing from a page that answered 200)."""
    return error if error and (status is None or status < 400) else status


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
    # "page" for a page crawled; for a URL only checked (crawler check), what links
    # to it: "link", "image", "script", "stylesheet", ... (CHECK_KINDS' fetch modes).
    kind: str = "page"
    # --render: None (not rendered), "always", or the evidence auto rendered it on
    # ("empty-mount", "noscript", "only-scripts"); the render's milliseconds, the
    # requests the page made, and why a render failed ("timeout", "renderer-crashed",
    # "browser-crashed": the page's links are then those of its body as fetched).
    rendered: str | None = None
    render_ms: int | None = None
    render_requests: int | None = None
    render_error: str | None = None

    def is_broken(self) -> bool:
        """A 4xx/5xx answer or a network failure: something a link checker reports."""
        if self.status is not None:
            return self.status >= 400
        return self.error in BROKEN_ERRORS

    def is_seed(self) -> bool:
        """A URL the crawl was given (a sitemap's pages name their sitemap as referrer)."""
        return self.kind == "page" and self.depth == 0 and self.referrer is None

    def answered(self) -> bool:
        """An answer below 400 came (a redirect, a 304, a page cut at --max-bytes too)."""
        return self.status is not None and self.status < 400

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RECORD_FIELDS}


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(PageRecord))


# Entry kinds of crawler check: URLs requested to see whether they work, never crawled.
# "link": HEAD (GET when HEAD is refused); "anchors": GET, its ids read (offsite
# pages with --check-fragments); "stylesheet": GET, its url()s checked in turn.
CHECK_KINDS = frozenset({"link", "anchors", "stylesheet"})


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

    def deferred(self) -> Entry:
        """The entry sent back to be leased again (its host's robots.txt or name was
        not known yet): a continuation, counted in no budget again."""
        return dataclasses.replace(self, leases=self.leases + 1)

    def counts_as_page(self) -> bool:
        """Leasing it starts a new record: it counts toward --max-pages."""
        return self.kind == "page" and not self.is_continuation()

    def outside_budget(self) -> bool:
        """Leased even once --max-pages is reached: a record already started, or a
        link to check (the pages crawled decide what is checked, not the budget)."""
        return self.is_continuation() or self.kind in CHECK_KINDS


# A seed whose path says it is a sitemap (XML, gzipped, or a text list) is read as one.
_SITEMAP_PATH = re.compile(r"(?:sitemap[^/]*\.(?:xml|txt)|\.xml\.gz)(?:\.gz)?$", re.IGNORECASE)


def seed_entry(url: str, *, check: bool = False) -> Entry:
    """A seed URL as the frontier takes it: a sitemap (by its name: sitemap.xml,
    sitemap_index.xml.gz, sitemap.txt, any .xml.gz) is read as a sitemap, whose pages
    become seeds; with ``check``, a stylesheet (.css) is read for its url()s."""
    path = url.partition("?")[0].partition("#")[0]
    if _SITEMAP_PATH.search(path):
        return Entry(url, 0, kind="sitemap")
    if check and path.lower().endswith(".css"):
        return Entry(url, 0, kind="stylesheet")
    return Entry(url, 0)


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last crawl knew of a page, for a conditional request."""

    previous_status: int | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    links: tuple[str, ...]
    # crawler check: the page's links as checked (output.state.pack_refs), if kept.
    refs: bytes | None = None


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
    # crawler check: the record of a URL only checked (kept as a cache for later
    # passes if it worked), and a page's links as checked (output.state.pack_refs).
    checked: bool = False
    refs: bytes | None = None


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """One line of broken.jsonl: a broken URL and the pages that link to it."""

    url: str
    status: int | None
    error: str | None
    referrers: tuple[str, ...]
    referrer_count: int


@dataclass(frozen=True, slots=True)
class Referrer:
    """Where a link appears: the page (or stylesheet) and the line of the tag (1-based;
    0 when not known, as for a sitemap's entry)."""

    page: str
    line: int


# The results of crawler check. "broken" and "timeout" fail the check.
RESULTS = ("ok", "redirected", "broken", "timeout", "excluded", "unsupported")
FAILING = frozenset({"broken", "timeout"})


@dataclass(frozen=True, slots=True)
class LinkCheck:
    """One URL checked by crawler check, however many pages link to it.

    ``url`` is normalised, with ``#fragment`` for a fragment's own check (its
    page works; ``error`` "fragment-missing" when no element has that id or
    name); for an unsupported link (mailto:, tel:, data:...) it is as written.
    ``error`` says why a URL was excluded ("excluded" for ``--exclude``,
    "robots") or how it broke (a network failure; else ``status`` says).
    """

    url: str
    result: str
    kind: str
    status: int | None
    error: str | None
    final_url: str | None
    referrers: tuple[Referrer, ...]

    def is_failing(self) -> bool:
        return self.result in FAILING

    def as_dict(self) -> dict[str, Any]:
        """checks.jsonl's line (dataclasses.asdict deep-copies each referrer: a third of
        a check's CPU on a site whose every page links to the same few URLs)."""
        return {
            "url": self.url,
            "result": self.result,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "final_url": self.final_url,
            "referrers": [{"page": r.page, "line": r.line} for r in self.referrers],
        }


@dataclass(frozen=True, slots=True)
class CrawlStats:
    """A snapshot of a crawl's counters; stats.json is this object."""

    pages: int = 0
    ok: int = 0
    errors: int = 0
    # The URLs the crawl was given, and those of them that got no answer below 400.
    seeds: int = 0
    seeds_failed: int = 0
    # Lines of the seed list (--input-file) that were no http(s) URL, skipped.
    seeds_skipped: int = 0
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
    # crawler check: URLs requested only to see whether they work (not pages).
    checked: int = 0
    # --render: pages whose DOM was rendered, pages whose render failed (their body
    # as fetched was parsed), and times the browser was started again after dying.
    rendered: int = 0
    render_failed: int = 0
    browser_restarts: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_counts: dict[str, int] = field(default_factory=dict)
    # --max-pages-per-host: pages skipped (no request, no record), hosts that hit it.
    budget_skipped: int = 0
    budget_hosts: list[str] = field(default_factory=list)
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
