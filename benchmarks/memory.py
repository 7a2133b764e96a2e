"""Memory at scale: a frontier of a million URLs not yet fetched, ours against Scrapy.

    python3 benchmarks/memory.py                      # 500 new links a page, 2,500 pages
    python3 benchmarks/memory.py --links 300 --pages 1000

nginx answers every path with the same page of ``--links`` relative links
("1/", "2/", ...), so each page fetched adds that many new URLs: with the
defaults the frontier reaches about 1.25 million URLs while ``--pages``
limits what is fetched. Prints pages fetched, URLs queued, seconds and peak
RSS for each crawler. Loopback only; nginx is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import count_lines, free_port, launch_nginx, measured, run_scrapy_command


def start_fanout_server(work: Path, port: int, links: int) -> subprocess.Popen[bytes]:
    """nginx answering every path with one page of ``links`` relative links."""
    anchors = "".join(f'<a href="{n}/">{n}</a> ' for n in range(1, links + 1))
    page = f"<!doctype html><html><head><title>fan-out</title></head>{anchors}</html>"
    (work / "page.html").write_text(page)
    server = f"listen 127.0.0.2:{port}; root {work}; location / {{ try_files /page.html =404; }}"
    return launch_nginx(work, port, server)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--pages", type=int, default=2500)
    parser.add_argument("--no-scrapy", action="store_true")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="crawler-memory-") as folder:
        work = Path(folder)
        work.chmod(0o755)
        seed = f"http://127.0.0.2:{port}/"
        server = start_fanout_server(work, port, args.links)
        try:
            out = work / "ours"
            command = [sys.executable, "-m", "crawler", "crawl", seed, "--output", str(out)]
            command += ["--quiet", "--concurrency", "64", "--per-host", "64", "--ignore-robots"]
            command += ["--no-sitemaps", "--max-pages", str(args.pages)]
            ours = measured(
                "crawler", command, work, lambda: sum(1 for _ in (out / "pages.jsonl").open())
            )
            stats = json.loads((out / "stats.json").read_text())
            print(
                f"crawler: {ours.pages} pages, {stats['queued']} URLs left queued, "
                f"{ours.seconds:.1f} s, peak RSS {ours.peak_rss_mb:.1f} MB",
                flush=True,
            )
            if not args.no_scrapy:
                scrapy = measured(
                    "scrapy",
                    run_scrapy_command(
                        [seed], ["127.0.0.2"], work, [f"CLOSESPIDER_PAGECOUNT={args.pages}"]
                    ),
                    work,
                    lambda: count_lines(work / "scrapy-items.jsonl"),
                )
                print(
                    f"scrapy: {scrapy.pages} pages, {scrapy.seconds:.1f} s, "
                    f"peak RSS {scrapy.peak_rss_mb:.1f} MB",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
