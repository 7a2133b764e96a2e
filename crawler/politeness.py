"""Per-host slots: how many requests may be in flight to a host, and when the next may start.

Layer 2: imports nothing from crawler. A slot is a small data model (after
Scrapy's downloader Slot); the frontier asks it when a host is ready and tells
it when a request starts and how it ended. The gap between two request starts
to one host is max(--delay, robots.txt Crawl-delay, current back-off), and a
Retry-After pushes the next start out on top of that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Back-off after a 429/503: the gap doubles from this floor up to the slot's
# cap (--max-retry-after), and halves again on each success until it falls
# below the floor.
BACKOFF_FLOOR = 0.5
THROTTLE_STATUSES = frozenset({429, 503})


@dataclass(slots=True)
class HostSlot:
    """The politeness state of one host (scheme-less network location)."""

    limit: int
    delay: float
    backoff_cap: float = 60.0
    in_flight: int = 0
    last_start: float = -math.inf
    crawl_delay: float = 0.0
    backoff: float = 0.0
    not_before: float = -math.inf

    def gap(self) -> float:
        return max(self.delay, self.crawl_delay, self.backoff)

    def ready_at(self) -> float:
        """The monotonic time the next request may start, inf while the slot is full."""
        if self.in_flight >= self.limit:
            return math.inf
        return max(self.last_start + self.gap(), self.not_before)

    def start(self, now: float) -> None:
        self.in_flight += 1
        self.last_start = now

    def finish(self, now: float, status: int | None, retry_after: float | None) -> None:
        self.in_flight -= 1
        if status in THROTTLE_STATUSES:
            self.backoff = min(max(self.backoff * 2, BACKOFF_FLOOR), self.backoff_cap)
        elif status is not None and status < 400 and self.backoff:
            self.backoff = self.backoff / 2 if self.backoff / 2 >= BACKOFF_FLOOR else 0.0
        if retry_after is not None:
            self.not_before = max(self.not_before, now + retry_after)


class Politeness:
    """The slots of every host of one crawl."""

    def __init__(
        self, per_host: int, delay: float, *, robots_first: bool, backoff_cap: float = 60.0
    ) -> None:
        self._per_host = per_host
        self._delay = delay
        self._backoff_cap = backoff_cap
        # Until a host's robots.txt is known, one request at a time: the robots fetch.
        self._first_limit = 1 if robots_first else per_host
        self._slots: dict[str, HostSlot] = {}

    def slot(self, host: str) -> HostSlot:
        slot = self._slots.get(host)
        if slot is None:
            slot = HostSlot(self._first_limit, self._delay, self._backoff_cap)
            self._slots[host] = slot
        return slot

    def robots_known(self, host: str, crawl_delay: float) -> None:
        slot = self.slot(host)
        slot.limit = self._per_host
        slot.crawl_delay = crawl_delay
