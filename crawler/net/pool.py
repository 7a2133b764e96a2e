"""The crawl's connections: aiohttp's pool, with a bound on the idle ones that fits the
process's open-file limit.

aiohttp keeps every idle connection for its keep-alive time, however many there
are. A broad crawl meets thousands of hosts in seconds (each host's robots.txt,
then its pages once every other new host's robots.txt is in), and held a socket
for each: past ``ulimit -n``, connects failed with EMFILE, which read as the
hosts refusing (with 1024 files, 2 of every 3 pages of a 3,000-host crawl were
recorded connection-refused, and their hosts marked down). Here at most ``idle``
are kept (the ones last used are closed first: see ``_trim``); with the requests
in flight they stay within the limit, less ``RESERVE`` for the crawl's files.
"""

from __future__ import annotations

import contextlib
import resource
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest, ConnectionKey
from aiohttp.tracing import Trace

from crawler.errors import ConfigError

# Files a crawl keeps open besides its sockets: state.sqlite and its journal, the
# output files, a WARC, pipes to the front's processes, the resolver's sockets.
RESERVE = 64
# Idle connections kept at most (about 6 KB each), whatever the file limit allows. A
# broad crawl keeps one to each host it is crawling, used again a gap later: with
# 1,024 kept and the oldest closed first, at 2,000 hosts and --delay 0.5 nearly every
# request connected again (benchmarks/broad.py: 0.84 CPU ms a page, against 0.59).
IDLE_MAX = 4096
# Seconds an idle connection waits for its host's next request. A site's pages follow
# each other far sooner; a broad crawl leaves thousands of hosts behind, and each kept
# connection holds a socket and a few KB (benchmarks/hosts_memory.py). A host whose pages
# are further apart (--delay, Crawl-delay) connects again for each: one handshake.
KEEP_ALIVE = 3.0


def pool_for(
    concurrency: int, resolver: AbstractResolver, connected: Callable[[], None] | None = None
) -> BoundedPool:
    """The crawl's one pool: ``concurrency`` requests in flight, any number a host (the
    politeness slots bound those), names from ``resolver`` (which keeps the answers);
    ``connected`` is called as each request has its connection (see BoundedPool)."""
    return BoundedPool(
        idle=idle_bound(concurrency),
        connected=connected,
        limit=concurrency,
        limit_per_host=0,
        use_dns_cache=False,  # the lookups keep answers, bounded (aiohttp's would not be)
        keepalive_timeout=KEEP_ALIVE,
        family=socket.AF_UNSPEC,
        resolver=resolver,
    )


def raise_file_limit() -> None:
    """The soft limit on open files up to the hard one, as servers do (systemd's default is
    1024 of 524,288): a broad crawl keeps a socket for each host it reuses. The command
    line calls it; the library leaves its host's limits alone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def open_file_limit() -> int:
    """This process's soft limit on open files (``ulimit -n``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def idle_bound(concurrency: int) -> int:
    """How many idle connections a crawl of ``concurrency`` requests in flight may keep;
    ConfigError if the requests alone would not fit the file limit."""
    limit = open_file_limit()
    room = limit - RESERVE - concurrency
    if room < 0:
        raise ConfigError(
            f"--concurrency {concurrency} needs as many sockets, and this process may open"
            f" {limit} files (ulimit -n): lower --concurrency or raise the limit",
            setting="concurrency",
        )
    return min(IDLE_MAX, room)


class BoundedPool(aiohttp.TCPConnector):
    """aiohttp's TCPConnector keeping at most ``idle`` idle connections. The count is
    taken again only when what was added since the last count could pass the bound,
    so a crawl of a few hosts never counts.

    ``connected`` is called, in the request's own task, the moment a request has its
    connection (new or kept): aiohttp writes the request in the same step. The fetcher
    stamps its host's politeness gap there. An aiohttp trace could tell the same, but
    tracing every request cost 4% of a broad crawl's CPU (benchmarks/broad.py)."""

    def __init__(
        self, *, idle: int, connected: Callable[[], None] | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self._idle_bound = idle
        self._idle_at_most = 0
        self._connected = connected

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        if self._connected is not None:
            self._connected()
        return connection

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        kept = len(self._conns.get(key, ()))
        super()._release(key, protocol, should_close=should_close)
        if len(self._conns.get(key, ())) > kept:
            self._idle_at_most += 1
            if self._idle_at_most > self._idle_bound:
                self._trim()

    def _trim(self) -> None:
        """Close the connections idle the shortest time, down to three quarters of the
        bound (the next count comes a quarter of the bound of additions later). A crawl
        asks each host again a gap after its last request: the connections idle longest
        are the next to be used (aiohttp closes those idle past KEEP_ALIVE itself)."""
        idle = [
            (used, key, protocol) for key, queue in self._conns.items() for protocol, used in queue
        ]
        excess = len(idle) - (self._idle_bound - self._idle_bound // 4)
        if excess > 0:
            idle.sort(key=lambda item: item[0], reverse=True)
            closing = {id(protocol) for _, _, protocol in idle[:excess]}
            for _, _, protocol in idle[:excess]:
                protocol.close()
            for key in {key for _, key, protocol in idle[:excess]}:
                queue = self._conns[key]
                kept = [item for item in queue if id(item[0]) not in closing]
                if kept:
                    queue.clear()
                    queue.extend(kept)
                else:
                    del self._conns[key]
        self._idle_at_most = len(idle) - max(excess, 0)
