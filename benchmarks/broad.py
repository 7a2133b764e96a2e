"""A broad crawl of a simulated internet on loopback (benchmarks/world.py), against
the politeness limit of the same world.

``--hosts`` hosts (addresses 127.1.x.y of loopback, one port), 30-70 pages each,
20-200 ms a response, one in ten with a Crawl-delay of 1 s, one in twenty dead, one
in twenty slow (1-2 s); 8% of links leave their host. ``crawler crawl --span-hosts --per-host 2
--delay 0.5 --concurrency 256`` from one host's front page, then:

- the ideal: the same rules played by a crawler with no CPU (an event simulation:
  robots.txt first, one request at a time until it answers, then --per-host; a
  start at least max(--delay, Crawl-delay) after the host's last; --concurrency
  in all; a dead host costs one refused connect);
- the limit: no crawler that keeps the rules can finish sooner: the latest, over
  the hosts, of when the ideal first found a host plus its requests' gaps and the
  last response; or the whole latency over --concurrency, if later;
- what the server saw: requests, the most in flight to one host, start gaps
  shorter than the host's gap.

With ``--processes 1`` on a machine of two cores or more, the world's server runs on
the first core and the crawler (or Scrapy) on the others.

Runs alternate with Scrapy's Broad Crawls settings when it is installed (``bench.py``
installs it into ~/.cache/crawler-bench the first time; ``--no-scrapy`` skips it).

    python3 benchmarks/broad.py --hosts 500 --runs 3
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bench import free_port
from world import Host, links, make_world, write_world

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--per-host", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--no-scrapy", action="store_true")
    args = parser.parse_args()
    hosts = make_world(args.hosts, seed=20261207)
    ideal, limit = simulate(hosts, args.delay, args.per_host, args.concurrency)
    pages = sum(host.pages for host in hosts if not host.dead)
    print(f"{args.hosts:,} hosts, {pages:,} pages; ideal {ideal:.1f} s, limit {limit:.1f} s")
    tools = ["crawler"] + ([] if args.no_scrapy else ["scrapy"])
    results: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
    for _ in range(args.runs):
        for tool in tools:
            result = run(tool, hosts, args)
            results[tool].append(result)
            print(
                f"  {tool:8} {result['seconds']:6.1f} s ({limit / result['seconds']:.2f} of the"
                f" limit) {result['pages']:6.0f} pages {result['cpu_ms']:.2f} CPU ms a page"
                f" {result['rss_mb']:.0f} MB; server: most in flight {result['most']:.0f},"
                f" {result['short']:.0f} short gaps (least {result['least']:.3f} s)",
                flush=True,
            )
    for tool, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        print(
            f"{tool}: median {seconds:.1f} s = {limit / seconds:.2f} of the limit,"
            f" {ideal / seconds:.2f} of the ideal; {cpu:.2f} CPU ms a page; {rss:.0f} MB"
        )


def simulate(
    hosts: list[Host], delay: float, per_host: int, concurrency: int
) -> tuple[float, float]:
    """The ideal crawler's finish, and the limit."""
    gaps = [max(delay, host.crawl_delay) for host in hosts]
    queued: list[list[int]] = [[] for _ in hosts]
    known = {(0, 0)}
    queued[0].append(0)
    robots = [False] * len(hosts)  # answered
    asked = [False] * len(hosts)
    last = [-1e9] * len(hosts)
    busy = [0] * len(hosts)
    found = [0.0] + [-1.0] * (len(hosts) - 1)
    events: list[tuple[float, int, int]] = []  # (done at, host, page or -1 for robots)
    now, in_flight, total_latency = 0.0, 0, 0.0
    ready = [(0.0, 0)]
    while ready or events:
        while ready and ready[0][0] <= now and in_flight < concurrency:
            _, index = heapq.heappop(ready)
            host = hosts[index]
            limit = per_host if robots[index] else 1
            if busy[index] >= limit or not (queued[index] or not asked[index]):
                continue
            start = max(now, last[index] + gaps[index])
            if start > now:
                heapq.heappush(ready, (start, index))
                continue
            last[index], busy[index] = now, busy[index] + 1
            in_flight += 1
            page = -1 if not asked[index] else queued[index].pop(0)
            asked[index] = True
            took = 0.0 if host.dead else host.latency
            total_latency += took
            heapq.heappush(events, (now + took, index, page))
            if queued[index] and busy[index] < limit:
                heapq.heappush(ready, (now + gaps[index], index))
        if not events:
            if not ready:
                break
            now = max(now, ready[0][0])
            continue
        if ready and in_flight < concurrency and ready[0][0] < events[0][0]:
            now = max(now, ready[0][0])
            continue
        now, index, page = heapq.heappop(events)
        in_flight -= 1
        busy[index] -= 1
        if page == -1:
            robots[index] = not hosts[index].dead
            if hosts[index].dead:
                queued[index].clear()
        else:
            for other, target in links(hosts, index, page):
                if (other, target) not in known:
                    known.add((other, target))
                    if found[other] < 0:
                        found[other] = now
                    if not hosts[other].dead or not asked[other]:
                        queued[other].append(target)
                    heapq.heappush(ready, (now, other))
        heapq.heappush(ready, (now, index))
    ideal = now
    per_host_bound = max(
        found[index] + (0 if host.dead else host.pages * gaps[index] + host.latency)
        for index, host in enumerate(hosts)
        if found[index] >= 0
    )
    return ideal, max(per_host_bound, total_latency / concurrency)


def run(tool: str, hosts: list[Host], args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        spec = work / "world.json"
        port = free_port()
        write_world(spec, hosts, args.delay, port)
        server = subprocess.Popen(
            [sys.executable, str(HERE / "world.py"), str(spec)], stdout=subprocess.PIPE
        )
        cores = sorted(os.sched_getaffinity(0))
        # One process crawling: the world gets a core of its own (the first, which takes
        # more of the machine's interrupts), the crawler the others, so neither's CPU time
        # counts the other's cache misses and waits (unpinned, one build's CPU ms a page
        # went from 0.61 to 0.66 between two runs).
        pinned = args.processes == 1 and len(cores) >= 2
        if pinned:
            os.sched_setaffinity(server.pid, cores[:1])
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != b"ready":
                raise SystemExit("the world did not start")
            seed = f"http://{hosts[0].address}:{port}/p/0.html"
            command = _scrapy(work, seed, args) if tool == "scrapy" else _crawler(work, seed, args)
            if pinned:
                command = ["taskset", "-c", ",".join(map(str, cores[1:])), *command]
            timed = ["/usr/bin/time", "-f", "%e %U %S %M", *command]
            done = subprocess.run(timed, capture_output=True, text=True, cwd=work, check=False)
            pages = _pages(tool, work)
        finally:
            server.terminate()
            server.wait()
        seen = json.loads(Path(str(spec) + ".seen").read_text())
    wall, user, system, rss = done.stderr.strip().splitlines()[-1].split()
    short = seen["short_gaps"]
    return {
        "seconds": float(wall),
        "pages": pages,
        "cpu_ms": (float(user) + float(system)) * 1000 / max(pages, 1),
        "rss_mb": int(rss) / 1024,
        "most": seen["most_in_flight"],
        "short": len(short),
        "least": min(short, default=0.0),
    }


def _crawler(work: Path, seed: str, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "crawler", "crawl", seed, "-o", str(work / "out"), "-q"]
    command += ["--span-hosts", "--per-host", str(args.per_host), "--delay", str(args.delay)]
    command += ["--concurrency", str(args.concurrency), "--processes", str(args.processes)]
    return [*command, "--no-sitemaps", "--allow-private"]


def _scrapy(work: Path, seed: str, args: argparse.Namespace) -> list[str]:
    """Scrapy with the settings of its Broad Crawls page."""
    from bench import ensure_scrapy

    spider = work / "broad_spider.py"
    spider.write_text(
        textwrap.dedent(
            f"""
            import scrapy
            from scrapy.linkextractors import LinkExtractor

            class Broad(scrapy.Spider):
                name = "broad"
                start_urls = [{seed!r}]
                custom_settings = {{
                    "CONCURRENT_REQUESTS": {args.concurrency},
                    "CONCURRENT_REQUESTS_PER_DOMAIN": {args.per_host},
                    "DOWNLOAD_DELAY": {args.delay},
                    "RANDOMIZE_DOWNLOAD_DELAY": False,
                    "ROBOTSTXT_OBEY": True,
                    "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
                    "REACTOR_THREADPOOL_MAXSIZE": 20,
                    "LOG_LEVEL": "ERROR",
                    "COOKIES_ENABLED": False,
                    "RETRY_ENABLED": False,
                    "DOWNLOAD_TIMEOUT": 15,
                    "REDIRECT_ENABLED": False,
                    "AJAXCRAWL_ENABLED": True,
                    "DEPTH_PRIORITY": 1,
                    "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
                    "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
                }}
                extractor = LinkExtractor()

                def parse(self, response):
                    yield {{"url": response.url}}
                    for link in self.extractor.extract_links(response):
                        yield response.follow(link.url, self.parse)
            """
        )
    )
    output = work / "scrapy.jsonl"
    return [str(ensure_scrapy()), "-m", "scrapy", "runspider", str(spider), "-o", str(output)]


def _pages(tool: str, work: Path) -> float:
    if tool == "scrapy":
        path = work / "scrapy.jsonl"
        return float(sum(1 for line in path.open() if line.strip())) if path.exists() else 0.0
    records = (work / "out" / "pages.jsonl").read_text().splitlines()
    return float(sum(1 for line in records if re.search(r'"status": ?200', line)))


if __name__ == "__main__":
    main()
