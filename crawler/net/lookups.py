"""Name lookups of one crawl: each name once, and never on a request's clock.

A resolver under load answers slowly or not at all (one that drops queries past
a rate makes a lookup wait its whole timeout), and an offline machine's resolver
never answers for the names of other sites. So a host's name is looked up before
its first request, in the background: the Visitor puts the host's URL back
meanwhile (``pending``), so a lookup holds no request slot and no other host's
pages, and the request's ``--timeout`` starts once the address is known (a dead
name is reported ``dns``, never ``timeout``). The answer, or the failure, is kept
for ``TTL`` seconds: a dead host linked from every page costs one lookup, and
lookups of one name at once are one. At most ``KEPT`` names are kept, the least
recently used dropped first (a broad crawl meets millions of names).

The lookups themselves are c-ares's (aiohttp's AsyncResolver, through aiodns): asked
of the name servers of /etc/resolv.conf (and /etc/hosts first) from the event loop,
every lookup at once, none on a thread. benchmarks/dns.py, 2,000 names at once of a
name server on loopback that answers in 100 ms and never answers 5% of them: the
last name that resolves is known after 0.42 s, against 7.9 s with getaddrinfo on 64
threads, each dead name holding its thread for its resolver's whole timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp.abc import AbstractResolver, ResolveResult

# How long an answer (or a failure) is kept: aiohttp's own cache keeps answers as long.
TTL = 300.0
# A name not resolved in this long does not resolve (the resolver's own timeouts and
# tries are shorter: 2 s and 3 tries in resolv.conf's defaults).
LIMIT = 30.0
# Names whose answers are kept (about 500 bytes each); a dropped one is asked again.
KEPT = 20_000

_Key = tuple[str, int, int]
# An answer as kept: (address, port, family, proto, flags) a result, or why it failed.
_Answer = tuple[tuple[str, int, int, int, int], ...] | str


class Lookups(AbstractResolver):
    """A resolver that remembers: ``inner`` is asked once a name (and ``TTL``)."""

    def __init__(
        self,
        inner: AbstractResolver,
        clock: Callable[[], float] = time.monotonic,
        kept: int = KEPT,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._kept = kept
        self._running: dict[_Key, tuple[float, asyncio.Task[_Answer]]] = {}
        self._known: OrderedDict[_Key, tuple[float, _Answer]] = OrderedDict()

    def pending(self, host: str, port: int) -> float | None:
        """None when ``host``'s addresses (or its failure) are known; else how long it has
        been looked up so far, the lookup being started if it was not."""
        key = (host, port, socket.AF_UNSPEC)
        if self._answer(key) is not None:
            return None
        started, _ = self._start(key)
        return self._clock() - started

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        key = (host, port, family)
        answer = self._answer(key)
        if answer is None:
            # Shielded: a request given up on (its timeout, a stop) leaves the lookup to
            # the others that wait for it.
            answer = await asyncio.shield(self._start(key)[1])
        if isinstance(answer, str):
            raise OSError(None, answer)  # a new error each time: one per URL of the host
        return [
            ResolveResult(hostname=host, host=ip, port=at, family=kind, proto=proto, flags=flags)
            for ip, at, kind, proto, flags in answer
        ]

    def _answer(self, key: _Key) -> _Answer | None:
        known = self._known.get(key)
        if known is None:
            return None
        if self._clock() - known[0] > TTL:
            del self._known[key]
            return None
        self._known.move_to_end(key)
        return known[1]

    def _start(self, key: _Key) -> tuple[float, asyncio.Task[_Answer]]:
        running = self._running.get(key)
        if running is None:
            task = asyncio.ensure_future(self._look_up(*key))
            task.add_done_callback(lambda done: self._keep(key, done))
            running = self._running[key] = (self._clock(), task)
        return running

    def _keep(self, key: _Key, task: asyncio.Task[_Answer]) -> None:
        self._running.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # a lookup that broke is asked again (its waiters saw the error)
        self._known[key] = (self._clock(), task.result())
        while len(self._known) > self._kept:
            self._known.popitem(last=False)

    async def _look_up(self, host: str, port: int, family: int) -> _Answer:
        try:
            async with asyncio.timeout(LIMIT):
                results = await self._inner.resolve(host, port, socket.AddressFamily(family))
        except TimeoutError:
            return f"{host} did not resolve in {LIMIT:.0f} s"
        except (OSError, ValueError, UnicodeError) as error:  # a name c-ares refuses too
            return getattr(error, "strerror", None) or str(error) or f"{host} does not resolve"
        return tuple((r["host"], r["port"], r["family"], r["proto"], r["flags"]) for r in results)

    async def close(self) -> None:
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._running.clear()
        self._known.clear()
        await self._inner.close()
