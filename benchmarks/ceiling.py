"""The ceiling: a bare aiohttp loop over the benchmark's URLs, as fast as the stack goes.

    python3 benchmarks/ceiling.py URLS_FILE [--concurrency 64] [--no-parse]

Fetches every URL of the file (one a line) with one aiohttp session, 64 in
flight, reads each body whole and builds an lxml tree of it (--no-parse:
fetching alone). No frontier, no dedup, no politeness, no output: what the
crawler's own stack can do on the same site, so bench.py prints the
crawler's ratio to it. Prints the number of pages fetched.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiohttp
import lxml.html


async def fetch_all(urls: list[str], concurrency: int, parse: bool) -> int:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                url = queue.get_nowait()
                async with session.get(url) as response:
                    body = await response.read()
                if parse and body:
                    lxml.html.fromstring(body)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-parse", action="store_true")
    args = parser.parse_args()
    urls = args.urls.read_text().split()
    print(asyncio.run(fetch_all(urls, args.concurrency, not args.no_parse)))


if __name__ == "__main__":
    main()
