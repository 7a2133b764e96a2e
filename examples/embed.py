"""Run a crawl inside an existing asyncio application, next to its other tasks.

    python examples/embed.py https://example.org/

The application here has a heartbeat task and a consumer that counts pages by
status while the crawl runs; all three share one event loop and one
TaskGroup, and the crawl is stopped cleanly after 200 pages or 30 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter

from crawler import CrawlConfig, Crawler, PageRecord


async def heartbeat(stop: asyncio.Event) -> int:
    beats = 0
    while not stop.is_set():
        beats += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.1)
    return beats


async def count_pages(site: str, stop: asyncio.Event) -> Counter[int | None]:
    statuses: Counter[int | None] = Counter()
    config = CrawlConfig(seeds=(site,), max_pages=200, max_time=30.0)
    try:
        async with Crawler(config) as crawl:
            async for record in crawl:
                if isinstance(record, PageRecord):
                    statuses[record.status] += 1
    finally:
        stop.set()
    return statuses


async def application(site: str) -> None:
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        beats = group.create_task(heartbeat(stop), name="heartbeat")
        pages = group.create_task(count_pages(site, stop), name="crawl")
    print(f"pages by status: {dict(pages.result())}")
    print(f"the application's heartbeat ran {beats.result()} times during the crawl")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(application(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
