"""Tally: the counters of one crawl, turned into a frozen CrawlStats on demand.

The counters survive a stop: ``counters()``
is what state.sqlite keeps, ``restore()`` takes it back on --resume, so
stats.json covers the whole crawl however many runs it took.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from crawler.records import CrawlStats, PageRecord

_COUNTS = (
    "pages",
    "ok",
    "broken",
    "redirects",
    "retries",
    "robots_refused",
    "offsite_links",
    "dropped_links",
    "sitemaps",
    "sitemap_urls",
    "bytes",
    "new",
    "changed",
    "unchanged",
    "removed",
    "excluded_links",
    "items",
    "refused_links",
    "checked",
    "seeds",
    "seeds_failed",
    "seeds_skipped",
    "budget_skipped",
    "rendered",
    "render_failed",
    "browser_restarts",
)


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
        self.new = 0
        self.changed = 0
        self.unchanged = 0
        self.removed = 0
        self.excluded_links = 0
        self.items = 0
        # Links a full shared frontier (Redis at maxmemory) could not take.
        self.refused_links = 0
        self.checked = 0
        self.seeds = 0
        self.seeds_failed = 0
        # Lines of a seed list (--input-file) that are no http(s) URL.
        self.seeds_skipped = 0
        # --max-pages-per-host: the pages skipped, and the hosts (host:port) that hit it.
        self.budget_skipped = 0
        self.budget_hosts: set[str] = set()
        self.rendered = 0
        self.render_failed = 0
        self.browser_restarts = 0
        self.status_counts: Counter[str] = Counter()
        self.error_counts: Counter[str] = Counter()
        self._earlier_duration = 0.0
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()

    def add(self, record: PageRecord) -> None:
        if record.kind != "page":
            self.checked += 1  # a link checked, not a page: crawler check reports those
            return
        self.pages += 1
        self.bytes += record.bytes
        if record.is_seed():
            self.seeds += 1
            self.seeds_failed += not record.answered()
        if record.status is not None:
            self.status_counts[str(record.status)] += 1
        if record.error is not None:
            self.error_counts[record.error] += 1
            if record.error == "robots":
                self.robots_refused += 1
        elif record.status is not None and record.status < 400:
            self.ok += 1
        if record.redirects:
            self.redirects += 1
        if record.is_broken():
            self.broken += 1
        if record.rendered is not None:
            self.render_failed += record.render_error is not None
            self.rendered += record.render_error is None
        if record.change is not None:
            setattr(self, record.change, getattr(self, record.change) + 1)

    @classmethod
    def of(cls, record: PageRecord, items: int) -> dict[str, Any]:
        """What one record and its items add to the counters (``counters()`` form)."""
        part = cls()
        part.add(record)
        part.items = items
        counters = part.counters()
        del counters["duration_s"]
        return counters

    def duration(self) -> float:
        return self._earlier_duration + time.monotonic() - self._started

    def counters(self) -> dict[str, Any]:
        """Everything needed to carry the tally on in a later run."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        values["status_counts"] = dict(self.status_counts)
        values["error_counts"] = dict(self.error_counts)
        values["duration_s"] = self.duration()
        if self.budget_hosts:
            values["budget_hosts"] = sorted(self.budget_hosts)
        return values

    def absorb(
        self, names: Iterable[str], base: dict[str, Any], parts: Iterable[dict[str, Any]]
    ) -> None:
        """The counters ``names`` and the hosts at --max-pages-per-host as the front's
        processes have counted them (``parts``), on top of ``base`` (earlier runs')."""
        parts = list(parts)
        for name in names:
            setattr(self, name, base.get(name, 0) + sum(part.get(name, 0) for part in parts))
        hosts = (part.get("budget_hosts", ()) for part in parts)
        self.budget_hosts = set(base.get("budget_hosts", ())).union(*hosts)

    def restore(self, counters: dict[str, Any]) -> None:
        for name in _COUNTS:
            setattr(self, name, int(counters.get(name, 0)))
        self.status_counts = Counter(counters.get("status_counts", {}))
        self.error_counts = Counter(counters.get("error_counts", {}))
        self.budget_hosts = set(counters.get("budget_hosts", ()))
        self._earlier_duration = float(counters.get("duration_s", 0.0))

    def snapshot(self, queued: int, in_flight: int, *, finished: bool = False) -> CrawlStats:
        duration = self.duration()
        return CrawlStats(
            **{name: getattr(self, name) for name in _COUNTS},
            errors=self.pages - self.ok,
            status_counts=dict(sorted(self.status_counts.items())),
            error_counts=dict(sorted(self.error_counts.items())),
            budget_hosts=sorted(self.budget_hosts),
            queued=queued,
            in_flight=in_flight,
            duration_s=round(duration, 3),
            pages_per_s=round(self.pages / duration, 1) if duration > 0 else 0.0,
            finished=finished,
        )
