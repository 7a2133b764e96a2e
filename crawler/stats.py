"""Tally: the counters of one crawl, turned into a frozen CrawlStats on demand.

Layer 0: imports only records.
"""

from __future__ import annotations

import time
from collections import Counter

from crawler.records import CrawlStats, PageRecord


class Tally:
    """Counts records as they are written; ``snapshot()`` is cheap and frozen."""

    def __init__(self) -> None:
        self.pages = 0
        self.ok = 0
        self.broken = 0
        self.redirects = 0
        self.retries = 0
        self.robots_refused = 0
        self.offsite_links = 0
        self.dropped_links = 0
        self.sitemaps = 0
        self.sitemap_urls = 0
        self.bytes = 0
        self.status_counts: Counter[str] = Counter()
        self.error_counts: Counter[str] = Counter()
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()

    def add(self, record: PageRecord) -> None:
        self.pages += 1
        self.bytes += record.bytes
        if record.status is not None:
            self.status_counts[str(record.status)] += 1
        if record.error is not None:
            self.error_counts[record.error] += 1
            if record.error in ("robots", "robots-unavailable"):
                self.robots_refused += 1
        elif record.status is not None and record.status < 400:
            self.ok += 1
        if record.redirects:
            self.redirects += 1
        if record.is_broken():
            self.broken += 1

    def snapshot(self, queued: int, in_flight: int, *, finished: bool = False) -> CrawlStats:
        duration = time.monotonic() - self._started
        return CrawlStats(
            pages=self.pages,
            ok=self.ok,
            errors=self.pages - self.ok,
            broken=self.broken,
            redirects=self.redirects,
            retries=self.retries,
            robots_refused=self.robots_refused,
            offsite_links=self.offsite_links,
            dropped_links=self.dropped_links,
            sitemaps=self.sitemaps,
            sitemap_urls=self.sitemap_urls,
            status_counts=dict(sorted(self.status_counts.items())),
            error_counts=dict(sorted(self.error_counts.items())),
            bytes=self.bytes,
            queued=queued,
            in_flight=in_flight,
            duration_s=round(duration, 3),
            pages_per_s=round(self.pages / duration, 1) if duration > 0 else 0.0,
            finished=finished,
        )
