"""Pure robots.txt policy from a fetch outcome (RFC 9309), parsed by protego.

No I/O: the crawl fetches
/robots.txt through the fetcher and hands the outcome here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from protego import Protego

# RFC 9309 §2.5: crawlers must parse at least the first 500 KiB.
MAX_ROBOTS_BYTES = 500 * 1024
# RFC 9309 §2.3.1.2: follow at least five consecutive redirects.
MAX_ROBOTS_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class RobotsAnswer:
    """A host's robots.txt as fetched: what a shared crawl keeps, once per host."""

    status: int | None
    error: str | None
    body: bytes

    def pack(self) -> str:
        head = f"{self.status or ''}\t{self.error or ''}\n"
        return head + self.body.decode("latin-1")

    @classmethod
    def unpack(cls, value: str) -> RobotsAnswer:
        head, _, body = value.partition("\n")
        status, _, error = head.partition("\t")
        return cls(int(status) if status else None, error or None, body.encode("latin-1"))


@dataclass(frozen=True, slots=True)
class RobotsPolicy:
    """What one host's robots.txt allows a user agent to do."""

    user_agent: str
    rules: Protego | None = field(default=None, compare=False)
    # None: no restrictions. A reason: every URL of the host is refused with it.
    refuse_all: str | None = None

    def allows(self, url: str) -> bool:
        if self.refuse_all is not None:
            return False
        if self.rules is None:
            return True
        return bool(self.rules.can_fetch(url, self.user_agent))

    def crawl_delay(self) -> float:
        if self.rules is None:
            return 0.0
        delay = self.rules.crawl_delay(self.user_agent)
        return float(delay) if delay else 0.0

    def sitemaps(self) -> tuple[str, ...]:
        return tuple(self.rules.sitemaps) if self.rules is not None else ()


@functools.cache
def allow_all(user_agent: str) -> RobotsPolicy:
    return RobotsPolicy(user_agent)


def policy_from(
    status: int | None, body: bytes, user_agent: str, failure: str | None = None
) -> RobotsPolicy:
    """The policy for a robots.txt fetch that ended with ``status``, or with ``failure``.

    RFC 9309 §2.3.1.3: a 4xx (or a 3xx left unfollowed) means no restrictions.
    §2.3.1.4: a 5xx or an unreachable server means complete disallow. The
    host's pages then carry "robots-unavailable" for a 5xx (a failure: the site is
    down, never a quiet exclusion), and the network
    failure itself ("dns", "timeout", ...) when the host could not be reached,
    so that a dead host shows as broken rather than as a robots refusal.
    """
    if status is None:
        return RobotsPolicy(user_agent, refuse_all=failure or "robots-unavailable")
    if status >= 500:
        return RobotsPolicy(user_agent, refuse_all="robots-unavailable")
    if status >= 400:
        return allow_all(user_agent)
    if not 200 <= status < 300:
        # §2.3.1.2: past five redirects the file "MAY be assumed unavailable",
        # and unavailable (§2.3.1.3) means no restrictions.
        return allow_all(user_agent)
    body = body[:MAX_ROBOTS_BYTES]
    if len(body) <= SHARED_BODY_BYTES:
        return _shared_policy(body, user_agent)
    return _parsed(body, user_agent)


def _parsed(body: bytes, user_agent: str) -> RobotsPolicy:
    # Garbage bytes are decoded leniently; protego skips lines it cannot read.
    text = body.decode("utf-8", errors="replace")
    return RobotsPolicy(user_agent, rules=Protego.parse(text))


# Hosts that serve the same robots.txt share one policy: a parsed robots.txt costs
# about 1 KB, and a broad crawl meets the same few (a CMS's default, an empty one)
# on thousands of hosts. Small ones only, so the kept bodies stay small.
SHARED_BODY_BYTES = 4096
_shared_policy = functools.lru_cache(maxsize=256)(_parsed)
