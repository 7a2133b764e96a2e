"""Name lookups of a broad crawl: the system's getaddrinfo on threads, against c-ares
(aiodns), both under the crawl's Lookups (one lookup a name, cached), asked for
``--names`` names at once of a DNS server on loopback that answers after
``--delay`` seconds and never answers a share ``--dead`` of them.

getaddrinfo asks the name servers of /etc/resolv.conf, on port 53: the benchmark
runs itself in a mount namespace of its own (``unshare --mount``, as root) where
/etc/resolv.conf names the local server, 127.0.0.77, so the machine's own
resolver settings are never touched. Reported: when the last name that resolves
was known (what a crawl waits for), when every lookup ended, and CPU seconds.

    sudo python3 benchmarks/dns.py --names 2000 --delay 0.02 --dead 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = "127.0.0.77"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--dead", type=float, default=0.05)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inner:
        command = ["unshare", "--mount", "--propagation", "private"]
        sys.exit(subprocess.call([*command, sys.executable, __file__, "--inner", *sys.argv[1:]]))
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write(f"nameserver {SERVER}\noptions timeout:2 attempts:2\n")
        conf.flush()
        subprocess.check_call(["mount", "--bind", conf.name, "/etc/resolv.conf"])
        server = _serve(args)
        try:
            for kind in ("threads", "c-ares"):
                asyncio.run(_measure(kind, args))
        finally:
            server.kill()
            server.wait()


def _serve(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(HERE.parent / "tests")!r})
from local_dns import LocalDns
async def main():
    records = {{f"h{{n}}.test": "127.0.0.2" for n in range({args.names})}}
    dead = {{f"h{{n}}.test" for n in range(0, {args.names}, max(1, round(1 / {args.dead})))}}
    dns = LocalDns(records, delay={args.delay}, silent=dead)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: dns, local_addr=("{SERVER}", 53))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert server.stdout is not None
    server.stdout.readline()
    return server


async def _measure(kind: str, args: argparse.Namespace) -> None:
    from aiohttp.resolver import AsyncResolver

    from crawler.net.lookups import Lookups, SystemResolver

    inner = SystemResolver() if kind == "threads" else AsyncResolver()
    lookups = Lookups(inner)
    step = max(1, round(1 / args.dead))
    live_done: list[float] = []
    start, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)

    async def one(n: int) -> None:
        try:
            await lookups.resolve(f"h{n}.test", 80)
        except OSError:
            return
        if n % step:
            live_done.append(time.monotonic() - start)

    await asyncio.gather(*(one(n) for n in range(args.names)))
    wall = time.monotonic() - start
    used = resource.getrusage(resource.RUSAGE_SELF)
    seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    await lookups.close()
    print(
        f"{kind:8} {len(live_done):5} of {args.names} resolved; the last at"
        f" {max(live_done, default=0):6.2f} s; every lookup ended at {wall:6.2f} s;"
        f" CPU {seconds:5.2f} s ({seconds / args.names * 1000:.2f} ms a name)"
    )


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("dns.py binds port 53 and mounts over /etc/resolv.conf: run it as root")
    main()
