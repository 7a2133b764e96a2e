"""A simulated internet on loopback, for benchmarks/broad.py: hosts (each an address
of 127.0.0.0/8, 127.1.x.y, on one port), their pages and links, latency, robots.txt,
dead and slow hosts; and the server that plays it, counting what a crawler did to
each host.

The world is a function of its seed: the server and the politeness limit read the
same hosts and links. ``python3 world.py WORLD.json`` serves it (a dead host's
address is left unbound: its connects are refused) until SIGTERM, then writes
WORLD.json.seen: per host, requests, the most in flight, and every gap between two
request starts shorter than the host's gap.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# A link leaves its host this often (the rest stay on it).
OFFSITE = 0.08
LINKS = 12


@dataclass
class Host:
    address: str
    pages: int
    latency: float
    crawl_delay: float = 0.0
    dead: bool = False


def make_world(count: int, seed: int) -> list[Host]:
    """``count`` hosts: 30-70 pages each, 20-200 ms a response; one in ten asks a
    Crawl-delay of 1 s, one in twenty is dead, one in twenty answers in 1-2 s."""
    chooser = random.Random(seed)
    hosts = []
    for n in range(count):
        address = f"127.1.{n // 250}.{1 + n % 250}"
        host = Host(address, chooser.randint(30, 70), chooser.uniform(0.02, 0.2))
        roll = chooser.random()
        if n and roll < 0.05:
            host.dead = True
        elif roll < 0.10:
            host.latency = chooser.uniform(1.0, 2.0)
        elif roll < 0.20:
            host.crawl_delay = 1.0
        hosts.append(host)
    return hosts


def links(hosts: list[Host], index: int, page: int) -> list[tuple[int, int]]:
    """The (host index, page) pairs page ``page`` of host ``index`` links to. Page 0 of
    a host is its front page; every page links to the next, so all are reachable."""
    chooser = random.Random(index * 1_000_003 + page)
    found = [(index, (page + 1) % hosts[index].pages)]
    for _ in range(LINKS - 1):
        if chooser.random() < OFFSITE:
            other = chooser.randrange(len(hosts))
            found.append((other, chooser.choice((0, chooser.randrange(hosts[other].pages)))))
        else:
            found.append((index, chooser.randrange(hosts[index].pages)))
    return found


def robots(host: Host) -> str:
    delay = f"Crawl-delay: {host.crawl_delay:g}\n" if host.crawl_delay else ""
    return f"User-agent: *\nDisallow: /private/\n{delay}"


def page_html(hosts: list[Host], index: int, page: int, port: int) -> str:
    anchors = "".join(
        f'<a href="http://{hosts[other].address}:{port}/p/{target}.html">{other}/{target}</a>\n'
        for other, target in links(hosts, index, page)
    )
    words = " ".join(["lorem ipsum dolor sit amet"] * 40)
    head = f"<html><head><title>{index}/{page}</title></head>"
    return f"{head}<body><p>{words}</p>{anchors}</body></html>"


class Watch:
    """Per host: requests, in flight now and at most, start gaps shorter than its gap."""

    def __init__(self, hosts: list[Host], delay: float) -> None:
        self.gap = {host.address: max(delay, host.crawl_delay) for host in hosts}
        self.requests = dict.fromkeys(self.gap, 0)
        self.in_flight = dict.fromkeys(self.gap, 0)
        self.most = dict.fromkeys(self.gap, 0)
        self.last = dict.fromkeys(self.gap, -1.0)
        self.short: dict[str, list[float]] = {address: [] for address in self.gap}

    def start(self, address: str) -> None:
        now = time.monotonic()
        if self.last[address] >= 0 and now - self.last[address] < self.gap[address] - 0.001:
            self.short[address].append(round(now - self.last[address], 4))
        self.last[address] = now
        self.requests[address] += 1
        self.in_flight[address] += 1
        self.most[address] = max(self.most[address], self.in_flight[address])

    def end(self, address: str) -> None:
        self.in_flight[address] -= 1

    def report(self) -> dict[str, object]:
        return {
            "requests": sum(self.requests.values()),
            "most_in_flight": max(self.most.values()),
            "short_gaps": sorted(gap for gaps in self.short.values() for gap in gaps),
        }


async def serve(spec: dict[str, Any]) -> dict[str, object]:
    from aiohttp import web

    hosts = [Host(**host) for host in spec["hosts"]]
    watch = Watch(hosts, spec["delay"])
    by_address = {host.address: index for index, host in enumerate(hosts)}
    port = spec["port"]

    async def handle(request: web.Request) -> web.Response:
        address = request.transport.get_extra_info("sockname")[0]  # type: ignore[union-attr]
        index = by_address[address]
        host = hosts[index]
        watch.start(address)
        try:
            await asyncio.sleep(host.latency)
            if request.path == "/robots.txt":
                return web.Response(text=robots(host))
            name = request.path.removeprefix("/p/").removesuffix(".html")
            if not name.isdigit() or int(name) >= host.pages:
                return web.Response(status=404, text="not here")
            html = page_html(hosts, index, int(name), port)
            return web.Response(text=html, content_type="text/html")
        finally:
            watch.end(address)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    for host in hosts:
        if not host.dead:
            await web.TCPSite(runner, host.address, port, backlog=256).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()
    return watch.report()


def write_world(path: Path, hosts: list[Host], delay: float, port: int) -> None:
    spec = {"delay": delay, "port": port, "hosts": [asdict(host) for host in hosts]}
    path.write_text(json.dumps(spec))


if __name__ == "__main__":
    world = Path(sys.argv[1])
    seen = asyncio.run(serve(json.loads(world.read_text())))
    Path(f"{world}.seen").write_text(json.dumps(seen))
