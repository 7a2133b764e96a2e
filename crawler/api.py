"""The library API: Crawler (async context manager and async iterator), crawl(), run().

The library never prints, configures logging or installs signal handlers;
that is cli.py's job.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from crawler.config import CrawlConfig
from crawler.extract import Item
from crawler.output.passes import settle_update
from crawler.procs.parent import ProcessFront
from crawler.records import CrawlStats, LinkCheck, PageRecord

if TYPE_CHECKING:
    from crawler.loop.engine import Engine
    from crawler.loop.recording import RecordSink

# Records waiting for the iterator; past this the crawl waits for the reader.
_BACKLOG = 1000


class Crawler:
    """One crawl, started by ``async with`` and read with ``async for``.

    Leaving the ``async with`` block before the crawl is done stops it: pages
    in flight finish and every output file is written. An error that stopped
    the crawl is raised from the iterator or from the block's exit.
    """

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config
        self._engine = _runner(config, self._deliver)
        self._records: asyncio.Queue[PageRecord | Item | LinkCheck | None] = asyncio.Queue(
            maxsize=_BACKLOG
        )
        self._task: asyncio.Task[CrawlStats] | None = None
        self._reading = True

    async def __aenter__(self) -> Crawler:
        if self._task is not None:
            raise RuntimeError("a Crawler runs once")
        self._task = asyncio.create_task(self._run(), name="crawl")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._task is not None
        if not self._task.done():
            self._engine.stop()
        self._reading = False
        while not self._records.empty():
            self._records.get_nowait()
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            self._task.cancel()
            raise

    async def _run(self) -> CrawlStats:
        try:
            return await self._engine.run()
        finally:
            if self._reading:
                await self._records.put(None)
            elif not self._records.full():
                self._records.put_nowait(None)

    async def _deliver(self, record: PageRecord | Item | LinkCheck) -> None:
        if self._reading:
            await self._records.put(record)

    def __aiter__(self) -> Crawler:
        return self

    async def __anext__(self) -> PageRecord | Item | LinkCheck:
        if self._task is None:
            raise RuntimeError("iterate inside 'async with Crawler(...)'")
        record = await self._records.get()
        if record is None:
            self._records.put_nowait(None)
            await self._task
            raise StopAsyncIteration
        return record

    def stop(self) -> None:
        """Stop scheduling; in-flight pages finish and the output is written."""
        self._engine.stop()

    def stats(self) -> CrawlStats:
        """A frozen snapshot of the crawl's counters (final once the crawl is done)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and not task.exception():
            return task.result()
        return self._engine.stats()


def _runner(config: CrawlConfig, on_record: RecordSink | None) -> Engine | ProcessFront:
    """One engine, or the multiprocessing front for --processes N (whose parent
    does without the engine and aiohttp: its start-up delays every child's)."""
    config = settle_update(config)
    if config.processes > 1:
        return ProcessFront(config, on_record)
    from crawler.loop.engine import Engine

    return Engine(config, on_record)


async def crawl(config: CrawlConfig) -> CrawlStats:
    """Run a crawl to completion, writing its output; return its stats."""
    return await _runner(config, None).run()


def run(config: CrawlConfig) -> CrawlStats:
    """``crawl()`` for scripts without an event loop."""
    return asyncio.run(crawl(config))
