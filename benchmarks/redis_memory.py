"""Redis memory of the shared frontier: bytes per seen URL and per queued URL.

    python3 benchmarks/redis_memory.py              # 1,000,000 URLs over 1,000 hosts
    python3 benchmarks/redis_memory.py --urls 200000

Starts a redis-server of its own (no persistence) on a free loopback port,
creates a crawl, adds --urls distinct URLs through SharedFrontier.add (the
path a crawl's links take), then reads MEMORY USAGE of every seen-set bucket
(the fingerprints) and of every host queue (the queued entries), and Redis's
used_memory. The server is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import free_port, start_redis

from crawler.config import CrawlConfig
from crawler.frontier.redis_codec import PREFIX
from crawler.frontier.shared import SharedFrontier
from crawler.records import Entry
from crawler.stats import Tally


async def key_bytes(client: aioredis.Redis, pattern: str) -> tuple[int, int, dict[str, int]]:
    """Total MEMORY USAGE of the keys matching ``pattern``, their count, their encodings."""
    total = count = 0
    encodings: dict[str, int] = {}
    async for key in client.scan_iter(match=pattern, count=1000):
        total += await client.memory_usage(key, samples=0) or 0
        encoding = await client.object("ENCODING", key)
        encodings[encoding] = encodings.get(encoding, 0) + 1
        count += 1
    return total, count, encodings


async def measure(urls: int, hosts: int, port: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url, decode_responses=True)
    before = (await client.info("memory"))["used_memory"]
    front = SharedFrontier(url, Tally())
    await front.open(CrawlConfig(seeds=("http://h0.example/",), ignore_robots=True))
    started = time.monotonic()
    batch = 1000
    for first in range(0, urls, batch):
        entries = [
            Entry(f"http://h{n % hosts}.example/section/page-{n}.html", 3, None)
            for n in range(first, min(first + batch, urls))
        ]
        await front.add(entries)
    seconds = time.monotonic() - started
    await front.aclose()
    after = (await client.info("memory"))["used_memory"]
    seen, buckets, encodings = await key_bytes(client, PREFIX + "seen:*")
    queued, queues, _ = await key_bytes(client, PREFIX + "q:*")
    await client.aclose()
    print(f"{urls:,} URLs added over {hosts} hosts in {seconds:.1f} s ({urls / seconds:,.0f}/s)")
    grew = after - before
    print(
        f"seen set: {buckets} buckets {encodings}, {seen / 2**20:.1f} MiB, {seen / urls:.2f} B/URL"
    )
    print(f"queues: {queues} lists, {queued / 2**20:.1f} MiB, {queued / urls:.1f} B/queued URL")
    print(f"used_memory grew {grew / 2**20:.1f} MiB: {grew / urls:.1f} B/URL in all")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=1000)
    args = parser.parse_args()
    port = free_port()
    server = start_redis(port)
    try:
        asyncio.run(measure(args.urls, args.hosts, port))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
