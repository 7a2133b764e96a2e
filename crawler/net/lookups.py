"""Name lookups of one crawl: each name once, and never on a request's clock.

A resolver under load answers slowly or not at all (one that drops queries past
a rate makes a lookup wait its whole timeout, 5 s a try), and an offline
machine's resolver never answers for the names of other sites. So a host's name
is looked up before its first request, in the background: the Visitor puts the
host's URL back meanwhile (``pending``), so a lookup holds no request slot and
no other host's pages, and the request's ``--timeout`` starts once the address
is known (a dead name is reported ``dns``, never ``timeout``). The answer, or
the failure, is kept for ``TTL`` seconds: a dead host linked from every page
costs one lookup, and lookups of one name at once are one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from aiohttp.abc import AbstractResolver, ResolveResult

from crawler.offload import DaemonPool

# How long an answer (or a failure) is kept: aiohttp's own cache keeps answers as long.
TTL = 300.0
# A name not resolved in this long does not resolve (the resolver's own timeouts and
# tries are shorter: glibc's are 5 s and 2 tries).
LIMIT = 30.0

# Lookups at once: each may wait the resolver's whole timeout, and the event loop's
# default executor runs 6 on two cores. 300 dead names whose lookups take 2 s each:
# 11 s with 64 threads, 21 s with 32, 300 s before.
LOOKUP_THREADS = 64

_Key = tuple[str, int, int]
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_POOL = DaemonPool("lookup", LOOKUP_THREADS)


class SystemResolver(AbstractResolver):
    """The system's getaddrinfo (as aiohttp's default resolver asks it: /etc/hosts,
    then DNS) on daemon threads of its own: a lookup that never ends does not hold
    the end of the crawl, as the default executor's would."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await _POOL.run(
            socket.getaddrinfo, host, port, family, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG
        )
        results = []
        for found, _, proto, _, address in infos:
            if found not in (socket.AF_INET, socket.AF_INET6) or len(address) < 2:
                continue  # IPv6 without a Python built for it
            ip = str(address[0])
            if found == socket.AF_INET6 and len(address) > 3 and address[3]:
                ip = f"{ip}%{address[3]}"  # a link-local address keeps its scope
            results.append(
                ResolveResult(
                    hostname=host,
                    host=ip,
                    port=int(address[1]),
                    family=found,
                    proto=proto,
                    flags=_NUMERIC,
                )
            )
        return results

    async def close(self) -> None:
        pass


class Lookups(AbstractResolver):
    """A resolver that remembers: ``inner`` is asked once a name (and ``TTL``)."""

    def __init__(
        self, inner: AbstractResolver, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._known: dict[_Key, tuple[float, asyncio.Task[list[ResolveResult]]]] = {}

    def pending(self, host: str, port: int) -> float | None:
        """None when ``host``'s addresses (or its failure) are known; else how long it has
        been looked up so far, the lookup being started if it was not."""
        started, task = self._lookup((host, port, socket.AF_UNSPEC))
        return None if task.done() else self._clock() - started

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        _, task = self._lookup((host, port, family))
        try:
            # Shielded: a request given up on (its timeout, a stop) leaves the lookup to
            # the others that wait for it.
            return list(await asyncio.shield(task))
        except OSError as error:
            # A new error each time: the kept one is raised for every URL of the host.
            raise OSError(error.errno, error.strerror or str(error)) from None

    def _lookup(self, key: _Key) -> tuple[float, asyncio.Task[list[ResolveResult]]]:
        known = self._known.get(key)
        now = self._clock()
        if known is None or (known[1].done() and now - known[0] > TTL):
            task = asyncio.ensure_future(self._look_up(*key))
            task.add_done_callback(_retrieved)
            known = self._known[key] = (now, task)
        return known

    async def _look_up(self, host: str, port: int, family: int) -> list[ResolveResult]:
        try:
            async with asyncio.timeout(LIMIT):
                return await self._inner.resolve(host, port, socket.AddressFamily(family))
        except TimeoutError:
            raise OSError(None, f"{host} did not resolve in {LIMIT:.0f} s") from None

    async def close(self) -> None:
        for _, task in self._known.values():
            task.cancel()
        for _, task in self._known.values():
            with contextlib.suppress(BaseException):
                await task
        self._known.clear()
        await self._inner.close()


def _retrieved(task: asyncio.Task[list[ResolveResult]]) -> None:
    """A failed lookup nobody waited for (its host's URLs were never fetched) is no error."""
    if not task.cancelled():
        task.exception()
