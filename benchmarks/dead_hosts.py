"""Benchmark: `crawler check` on a site whose pages link to dead hosts, against `crawl`.

    python3 benchmarks/dead_hosts.py                     # 300 pages, 300 dead names, 3 runs
    python3 benchmarks/dead_hosts.py --dead-names 30     # 30 dead names
    python3 benchmarks/dead_hosts.py --slow-dns 2        # each lookup of a dead name takes 2 s
    python3 benchmarks/dead_hosts.py --concurrency 256 --runs 1

What it does: generates a site of --pages pages (a binary tree of links, so the
crawl goes 8-9 levels deep) served by nginx (one worker) on 127.0.0.2. Every
page links to a host whose name does not resolve (one of --dead-names names
under .invalid, RFC 6761, new to the resolver each time the site is made), a
third of them also to a page on a closed port of 127.0.0.4 (a host that refuses
connections), and every tenth page to one more dead name. `crawl` follows the
site's own pages only; `check` also asks every offsite link. With --slow-dns S
every lookup of a name under .invalid answers "no such name" after S seconds, as
an offline machine's resolver does after its timeout (a sitecustomize.py put on
the crawler's PYTHONPATH; the names are looked up by the crawler's own
resolver).

Printed for each command: seconds (median), when the last of the site's own
pages was fetched (seconds after the command started), CPU seconds, peak RSS,
and for check the dead links by reason. The targets of issue 26: check within
1.5x of crawl plus one --timeout, the site's own pages within 1.2x of crawl's
time, every dead link reported `dns` or `connection-refused` (never `timeout`).
nginx is stopped by its pid. Run from the project's root, `python -m crawler`
runs the working tree's package; to measure another, run from elsewhere with
PYTHONPATH pointing at it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

from bench import free_port, launch_nginx

SLOW_DNS = textwrap.dedent(
    """
    import socket, time
    _real = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".invalid"):
            time.sleep({seconds})
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return _real(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo
    """
)


def generate(root: Path, pages: int, names: int, refused_port: int) -> None:
    # Names never asked before: a resolver that keeps answers would answer them at once.
    token = secrets.token_hex(4)
    for number in range(pages):
        children = [child for child in (2 * number + 1, 2 * number + 2) if child < pages]
        links = [f'<a href="/p/{child}.html">page {child}</a>' for child in children]
        dead = f"http://dead-{token}-{number % names}.invalid/p/{number}"
        links.append(f'<a href="{dead}">a dead host</a>')
        if number % 3 == 0:
            links.append(f'<a href="http://127.0.0.4:{refused_port}/p/{number}">refused</a>')
        if number % 10 == 0:
            links.append(f'<a href="http://dead-{token}.invalid/p/{number}">shared</a>')
        body = "\n".join(f"<p>{link}</p>" for link in links)
        html = f"<html><head><title>Page {number}</title></head><body>{body}</body></html>"
        path = root / ("index.html" if number == 0 else f"p/{number}.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)


def run(command: str, seed: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    out = work / f"out-{command}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if args.slow_dns:
        shim = work / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(SLOW_DNS.format(seconds=args.slow_dns))
        env["PYTHONPATH"] = f"{shim}{os.pathsep}{env.get('PYTHONPATH', '')}"
    argv = [sys.executable, "-m", "crawler", command, seed, "-o", str(out), "-q"]
    argv += ["--concurrency", str(args.concurrency), "--timeout", str(args.timeout)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, wall = time.monotonic(), time.time()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    records = [json.loads(line) for line in (out / "pages.jsonl").read_text().splitlines()]
    own = sorted(
        datetime.fromisoformat(record["fetched_at"]).timestamp()
        for record in records
        if record["kind"] == "page"
    )
    result = {
        "seconds": seconds,
        "own_pages_s": own[-1] - wall,
        "pages": len(own),
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "rss_mb": after.ru_maxrss / 1024,
    }
    if command == "check":
        reasons = collections.Counter(
            json.loads(line)["error"] or json.loads(line)["status"]
            for line in (out / "checks.jsonl").read_text().splitlines()
            if json.loads(line)["result"] != "ok"
        )
        result.update({f"reason {key}": count for key, count in reasons.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dead-names", type=int, default=300, help="distinct dead host names")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--slow-dns", type=float, default=0.0, help="seconds a dead lookup takes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crawler-dead-") as folder:
        work = Path(folder)
        work.chmod(0o755)  # nginx's worker runs as an unprivileged user
        generate(work / "site", args.pages, args.dead_names, free_port())
        port = free_port()
        server = f"listen 127.0.0.2:{port}; root {work / 'site'};"
        nginx = launch_nginx(work, port, server)
        try:
            seed = f"http://127.0.0.2:{port}/"
            results: dict[str, list[dict[str, float]]] = {"crawl": [], "check": []}
            for _ in range(args.runs):
                for command in results:
                    results[command].append(run(command, seed, work, args))
        finally:
            nginx.terminate()
            nginx.wait()
    for command, runs in results.items():
        keys = sorted({key for result in runs for key in result})
        medians = {key: statistics.median(result.get(key, 0) for result in runs) for key in keys}
        shown = "  ".join(f"{key} {value:.2f}" for key, value in medians.items())
        print(f"{command:6} {shown}")
    crawl = statistics.median(result["seconds"] for result in results["crawl"])
    check = statistics.median(result["seconds"] for result in results["check"])
    own = statistics.median(result["own_pages_s"] for result in results["check"])
    print(
        f"check / (crawl + timeout) = {check / (crawl + args.timeout):.2f} (target <= 1.5); "
        f"check's own pages done at {own:.2f} s = {own / crawl:.2f}x crawl (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
