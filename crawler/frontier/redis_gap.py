"""A host's gap between the requests of a shared crawl's members as they are sent.

LEASE stamps a host's start when it hands out an entry, and the next lease of
the host comes a gap (and scripts.GAP_MARGIN_MS) later, whichever member takes
it. A request held up on its way (a busy loop, a slow connect) would leave
right beside the next member's: so a member whose request leaves more than
``SEND_TOLERANCE_MS`` after its lease runs SENT, and the host's next start
counts from now; if another member leased the host meanwhile, this request
waits a gap after that lease. A request on time costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from crawler.errors import FrontierUnavailable
from crawler.frontier.politeness import sleep_until
from crawler.frontier.protocol import Lease
from crawler.frontier.redis_link import RedisLink

# Half the gap's margin (scripts.GAP_MARGIN_MS): a later send would eat into it.
SEND_TOLERANCE_MS = 10
# The largest clock offset seen is trusted this long, then the latest replaces it.
CLOCK_REFRESH_SECONDS = 30.0


class RedisClock:
    """Redis's clock (TIME, ms) as this member reads it between round trips: the local
    monotonic clock plus an offset, the largest seen lately (a reply that came back
    late makes Redis's time look earlier than it is, never later)."""

    def __init__(self) -> None:
        self._offset = -math.inf
        self._taken = -math.inf

    def heard(self, redis_ms: int) -> None:
        local = time.monotonic()
        offset = redis_ms / 1000 - local
        if offset > self._offset or local - self._taken > CLOCK_REFRESH_SECONDS:
            self._offset, self._taken = offset, local

    def redis_ms(self) -> float:
        return (time.monotonic() + self._offset) * 1000


class MemberGap:
    """One member's side of the rule: ``keep`` before each request of a lease."""

    def __init__(
        self, link: RedisLink, common: Callable[[], list[Any]], fail: Callable[[Exception], None]
    ) -> None:
        self.clock = RedisClock()
        self._link = link
        self._common = common
        self._fail = fail

    async def keep(self, lease: Lease, gap: float) -> None:
        """The request of ``lease`` leaves now; ``gap``: its host's, as this member knows
        it (Politeness keeps it among this member's own requests)."""
        if gap <= 0 or not lease.leased_ms:
            return
        if self.clock.redis_ms() - lease.leased_ms <= SEND_TOLERANCE_MS:
            return
        try:
            wait_ms = await self._link.eval("sent", [*self._common(), lease.host, lease.leased_ms])
        except FrontierUnavailable as error:
            self._fail(error)  # the member's next lease raises it; this request may go
            return
        if int(wait_ms) > 0:
            await sleep_until(time.monotonic() + int(wait_ms) / 1000)
