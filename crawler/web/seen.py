"""The seen set: which URLs a crawl has met, at about 8 bytes a URL.

Pure: imports nothing of crawler and does no I/O. Its keys are
process-local hashes (``url_key``); a key that must be the same on every
machine is the shared frontier's ``stable_fingerprint``.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable


def url_key(url: str) -> int:
    """The seen set's key: the string's 64-bit SipHash, kept instead of the URL.

    The seen set lives in one process and is rebuilt from state.sqlite on
    --resume, so a per-process (salted) hash is enough, and a str caches its
    hash: the normalised URLs, which urls.normalize caches, cost nothing to look
    up again. A collision needs about 4e9 URLs.
    """
    return hash(url)


class SeenSet:
    """A set of 64-bit fingerprints at about 8 bytes each: a sorted array, and a
    small set of recent additions merged into it when it grows (a Python set of
    ints costs about 70 bytes an entry)."""

    MERGE_AT = 65_536

    def __init__(self) -> None:
        self._sorted = array("q")
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        index = bisect.bisect_left(self._sorted, key)
        return index < len(self._sorted) and self._sorted[index] == key

    def unseen(self, urls: Iterable[str]) -> list[str]:
        """The ``urls`` whose keys (``url_key``) are not in the set: one call for a
        page's links, which ask it in bulk."""
        recent, ordered = self._recent, self._sorted
        size, find = len(ordered), bisect.bisect_left
        missing = []
        for url in urls:
            key = hash(url)  # url_key, inlined: called for every link of every page
            if key in recent:
                continue
            if size:
                index = find(ordered, key)
                if index < size and ordered[index] == key:
                    continue
            missing.append(url)
        return missing

    def add(self, key: int) -> None:
        self._recent.add(key)
        if len(self._recent) >= self.MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        """The recent keys merged into the sorted array: the runs between them copied
        whole, so the array's keys never become Python ints (sorting them all as a
        list cost 36 bytes a key for a moment: 22 MB at 600,000 URLs)."""
        old, merged, start = self._sorted, array("q"), 0
        for key in sorted(self._recent):
            end = bisect.bisect_left(old, key, start)
            merged += old[start:end]
            merged.append(key)
            start = end
        merged += old[start:]
        self._sorted, self._recent = merged, set()

    def update(self, keys: Iterable[int]) -> None:
        for key in keys:
            if key not in self:
                self.add(key)
