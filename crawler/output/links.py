"""The link index: who links to each URL not yet known to work, and which are broken.

It makes broken.jsonl: each broken URL with the pages that link to it. Held
by the Output of a crawl, and by each process of the front (whose parent
merges what they noted). Memory is bounded: past ``MAX_TRACKED_URLS`` a new
URL keeps only its record's own referrer.
"""

from __future__ import annotations

from collections.abc import Iterable

from crawler.records import BrokenLink, PageRecord
from crawler.web.seen import SeenSet, url_key

MAX_REFERRERS = 20
# URLs whose referrers are remembered before they are known to work; past it
# only the first referrer (the record's) is known for a new URL. Bounds memory
# when the frontier holds millions of URLs.
MAX_TRACKED_URLS = 50_000


class LinkIndex:
    """Who links to each URL not yet known to work, and which URLs are broken
    (for broken.jsonl). Held by Output, and by each process of a front."""

    def __init__(self) -> None:
        self._referrers: dict[str, list[str]] = {}
        self._referrer_counts: dict[str, int] = {}
        self._fine = SeenSet()
        self._broken: dict[str, tuple[int | None, str | None]] = {}

    def track(self, record: PageRecord) -> BrokenLink | None:
        """Note whether a record's URL works; a broken one is returned with its referrers."""
        if record.is_broken():
            self._broken[record.url] = (record.status, record.error)
            referrers = self._referrers.setdefault(record.url, [])
            if record.referrer and record.referrer not in referrers:
                referrers.insert(0, record.referrer)
            return self._broken_link(record.url)
        self._fine.add(url_key(record.url))
        self._referrers.pop(record.url, None)
        self._referrer_counts.pop(record.url, None)
        return None

    def restore(self, links: Iterable[BrokenLink]) -> None:
        for link in links:
            self._broken[link.url] = (link.status, link.error)
            self._referrers[link.url] = list(link.referrers)
            self._referrer_counts[link.url] = link.referrer_count

    def note(self, page: str, targets: list[str]) -> None:
        """Remember who links to each URL not yet known to work."""
        tracked, counts = self._referrers, self._referrer_counts
        untracked = [target for target in targets if target not in tracked]
        # Most are known to work (fetched): asked of the fine set at once; the
        # others are tracked from now on, while there is room.
        for target in self._fine.unseen(untracked) if untracked else ():
            if len(tracked) < MAX_TRACKED_URLS:
                tracked.setdefault(target, [])
        for target in targets:
            referrers = tracked.get(target)
            if referrers is None:
                continue
            counts[target] = counts.get(target, 0) + 1
            if len(referrers) < MAX_REFERRERS and page not in referrers:
                referrers.append(page)

    def export(self, broken: Iterable[str]) -> dict[str, tuple[list[str], int]]:
        """The referrers of the ``broken`` URLs and of those this index saw break,
        for another index to merge."""
        return {
            url: (self._referrers[url], self._referrer_counts.get(url, 0))
            for url in {*broken, *self._broken}
            if url in self._referrers
        }

    def merge(self, exported: dict[str, tuple[list[str], int]]) -> None:
        """Add another index's export: the links each noted add up."""
        for url, (referrers, count) in exported.items():
            mine = self._referrers.setdefault(url, [])
            for referrer in referrers:
                if len(mine) < MAX_REFERRERS and referrer not in mine:
                    mine.append(referrer)
            self._referrer_counts[url] = self._referrer_counts.get(url, 0) + count

    def _broken_link(self, url: str) -> BrokenLink:
        status, error = self._broken[url]
        referrers = tuple(self._referrers.get(url, ()))
        # Each referrer is a page that links here, counted or not: a record's own
        # referrer was noted by another process of a front, or not at all (the
        # index was full).
        count = max(self._referrer_counts.get(url, 0), len(referrers))
        return BrokenLink(url, status, error, referrers, count)

    def broken_links(self) -> list[BrokenLink]:
        return [self._broken_link(url) for url in self._broken]

    def broken_urls(self) -> list[str]:
        return list(self._broken)
