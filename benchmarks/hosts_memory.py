"""Memory a crawl spends on each host it knows, apart from each URL.

One nginx answers on every loopback address (127.x.y.z) of one port. A seed page
links to ``--hosts`` front pages, each on a host of its own (``127.1.y.z``), and
every host has a robots.txt; ``crawler crawl --span-hosts`` fetches the robots.txt
and the page of each. The same crawl is then made of as many pages on one host.
The difference of their peak RSS (``/usr/bin/time``'s maximum resident set size),
divided by the hosts, is what a host costs once it has nothing queued: its
politeness slot, robots rules, name and connection state.

    python3 benchmarks/hosts_memory.py --hosts 10000
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import free_port, launch_nginx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        work.chmod(0o755)  # nginx's worker reads the site as another user
        port = free_port()
        site = work / "site"
        site.mkdir()
        (site / "robots.txt").write_text("User-agent: *\nDisallow: /private\nCrawl-delay: 0\n")
        (site / "index.html").write_text("<html><title>a host</title><p>nothing to follow</p>")
        hosts = [f"http://127.1.{n // 250}.{1 + n % 250}:{port}/" for n in range(args.hosts)]
        paths = [f"http://127.0.0.2:{port}/p/{n}" for n in range(args.hosts)]
        for name, links in (("hosts.html", hosts), ("paths.html", paths)):
            anchors = "".join(f'<a href="{link}">{n}</a>\n' for n, link in enumerate(links))
            (site / name).write_text(f"<html><title>seed</title>{anchors}")
        server = f"listen {port}; root {site}; location /p/ {{ try_files /index.html =404; }}"
        nginx = launch_nginx(work, port, server)
        try:
            many = _peak(work, f"http://127.0.0.2:{port}/hosts.html")
            one = _peak(work, f"http://127.0.0.2:{port}/paths.html")
        finally:
            nginx.terminate()
            nginx.wait()
    print(f"{args.hosts:,} pages on {args.hosts:,} hosts: peak RSS {many / 1024:.1f} MB")
    print(f"{args.hosts:,} pages on one host: peak RSS {one / 1024:.1f} MB")
    print(f"a host: {(many - one) * 1024 / args.hosts:,.0f} bytes")


def _peak(work: Path, seed: str) -> int:
    """Peak RSS in KiB of one crawl from ``seed``."""
    output = work / "out"
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "crawler", "crawl", seed]
    command += ["-o", str(output), "-q", "--span-hosts", "--concurrency", "64"]
    command += ["--allow-private", "--max-pages", str(10**9)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the crawl failed: {done.stderr[:2000]}")
    subprocess.run(["rm", "-rf", str(output)], check=True)
    return int(found.group(1))


if __name__ == "__main__":
    main()
