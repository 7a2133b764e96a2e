"""Benchmark: `crawler check` against LinkChecker on the same generated site, served by nginx.

    python3 benchmarks/linkcheck.py                   # 2,000 pages, 3 runs each
    python3 benchmarks/linkcheck.py --pages 500 --runs 1

What it does: generates a deterministic site (pages with relative links, a
navigation block, images with srcset, a stylesheet with url()s, a script,
fragments, mailto: links; and, on a share of the pages, every kind of broken
link: missing pages, a page answering 500, missing images and srcset
candidates, a missing stylesheet, a missing url() inside one, missing pages
on an offsite host, a dead host) into a temporary folder. nginx (one worker)
serves it on 127.0.0.2 (the site) and 127.0.0.3 (the offsite host); the dead
host is a closed port on 127.0.0.4. LinkChecker is installed into a virtual
environment under ~/.cache/crawler-bench the first time.

Both are run alternately, --runs times each, on the same site, with the same
work: recursion through the whole site, offsite links checked
(LinkChecker's --check-extern), robots.txt obeyed, 32 requests in flight
(LinkChecker's --threads 32). LinkChecker waits 0.1-0.6 s between two
requests to a host unless the server answers with a "LinkChecker" header;
nginx sends it, as its documentation says a site owner may, so both run at
full speed. Printed for each: seconds (median), CPU seconds, peak RSS, and
the broken http(s) URLs each reported against the ones the generator made
broken: found, missed, false positives. nginx is stopped by its pid.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import CACHE, free_port, launch_nginx

from crawler.web.urls import normalize

LINKCHECKER_VENV = CACHE / "linkchecker-venv"
SITE, OFFSITE, DEAD = "127.0.0.2", "127.0.0.3", "127.0.0.4"
CSS = "body {{ background: url(/img/0.png) }}\n.banner {{\n  background: url({missing});\n}}\n"


# The broken links of the site: on every N-th page (from the page numbered at), the
# markup, and the URL it makes broken ({n}: the page's number).
BROKEN_KINDS = (
    (25, 3, '<a href="/p/missing-{n}.html">gone</a>', "{site}/p/missing-{n}.html"),
    (40, 5, '<img src="/img/missing-{n}.png">', "{site}/img/missing-{n}.png"),
    (
        60,
        7,
        '<img src="/img/1.png" srcset="/img/missing-2x-{n}.png 2x">',
        "{site}/img/missing-2x-{n}.png",
    ),
    (30, 11, '<a href="{offsite}/ext/missing-{n}.html">gone</a>', "{offsite}/ext/missing-{n}.html"),
    (100, 13, '<link rel="stylesheet" href="/css/missing.css">', "{site}/css/missing.css"),
    (100, 13, '<a href="/p/error.html">fails</a>', "{site}/p/error.html"),
    (200, 17, '<a href="{dead}/">a dead host</a>', "{dead}/"),
)


@dataclass
class Run:
    name: str
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    broken: set[str]


def generate(root: Path, pages: int, port: int, dead_port: int) -> set[str]:
    """The site under ``root``; returns the URLs it makes broken (the truth)."""
    chooser = random.Random(7)
    site, offsite = f"http://{SITE}:{port}", f"http://{OFFSITE}:{port}"
    broken = {f"{site}/img/bg-missing.png"}
    for folder in ("p", "img", "css", "js", "ext"):
        (root / folder).mkdir(parents=True)
    for number in range(50):
        (root / "img" / f"{number}.png").write_bytes(b"\x89PNG" + bytes(200))
    for number in range(200):
        (root / "ext" / f"{number}.html").write_text(f"<p id='top'>external {number}</p>")
    (root / "css" / "site.css").write_text(CSS.format(missing="/img/bg-missing.png"))
    (root / "js" / "app.js").write_text("console.log(1);\n")
    for number in range(pages):
        lines = [
            f"<!doctype html><html><head><title>Page {number}</title>",
            '<link rel="stylesheet" href="/css/site.css">',
            '<script src="/js/app.js"></script></head><body>',
            '<nav><a href="/p/0.html">home</a> <a href="../p/1.html#top">one</a></nav>',
            f'<h1 id="top">Page {number}</h1>',
        ]
        for _ in range(8):
            target = chooser.randrange(pages)
            lines.append(f'<p>See <a href="{target}.html">page {target}</a> for more.</p>')
        image = chooser.randrange(50)
        lines.append(f'<img src="/img/{image}.png" srcset="/img/{image}.png 1x">')
        lines.append(f'<a href="{offsite}/ext/{chooser.randrange(200)}.html">elsewhere</a>')
        lines.append('<a href="mailto:team@example.org">mail us</a>')
        for every, at, markup, url in BROKEN_KINDS:
            if number % every == at:
                values = {"n": number, "site": site, "offsite": offsite}
                values["dead"] = f"http://{DEAD}:{dead_port}"
                lines.append(markup.format(**values))
                broken.add(url.format(**values))
        lines.append("</body></html>")
        (root / "p" / f"{number}.html").write_text("\n".join(lines) + "\n")
    return broken


def ensure_linkchecker() -> Path:
    python = LINKCHECKER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LINKCHECKER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "linkchecker"], check=True)
    return LINKCHECKER_VENV / "bin" / "linkchecker"


def measured(command: list[str], cwd: Path) -> tuple[float, float, float, bytes]:
    """Seconds, CPU seconds and peak RSS (MB) of ``command``, and its stdout."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"failed: {command}")
        out.seek(0)
        return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def http_urls(urls: set[str]) -> set[str]:
    """The http(s) URLs, normalised alike for both tools (mailto: is left out)."""
    return {url for url in map(normalize, urls) if url is not None}


def run_ours(seed: str, work: Path) -> Run:
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "crawler", "check", seed, "--output", str(out)]
    command += ["--quiet", "--format", "json", "--no-sitemaps", "--retries", "0"]
    seconds, cpu, rss, stdout = measured(command, work)
    results = json.loads(stdout)["results"]
    broken = {result["url"] for result in results if result["result"] in ("broken", "timeout")}
    return Run("crawler check", seconds, cpu, rss, http_urls(broken))


def run_linkchecker(seed: str, work: Path) -> Run:
    config = work / "linkcheckerrc"
    config.write_text("[checking]\nmaxrequestspersecond=1000\n")
    command = [str(ensure_linkchecker()), "--config", str(config), "--check-extern"]
    command += ["--threads", "32", "--no-status", "--no-warnings", "-o", "csv", seed]
    seconds, cpu, rss, stdout = measured(command, work)
    lines = [line for line in stdout.decode().splitlines() if not line.startswith("#")]
    rows = csv.DictReader(io.StringIO("\n".join(lines)), delimiter=";")
    broken = {row["url"] for row in rows if row.get("valid") == "False"}
    return Run("LinkChecker", seconds, cpu, rss, http_urls(broken))


def report(runs: list[Run], truth: set[str], pages: int) -> None:
    header = ("seconds", "CPU s", "peak RSS MB", "broken", "found", "missed", "false pos.")
    print(f"{pages:,} pages; {len(truth)} URLs made broken")
    print(f"{'checker':<16}" + "".join(f"{column:>12}" for column in header))
    for name in dict.fromkeys(run.name for run in runs):
        mine = [run for run in runs if run.name == name]
        seconds = statistics.median(run.seconds for run in mine)
        cpu = statistics.median(run.cpu_seconds for run in mine)
        rss = max(run.peak_rss_mb for run in mine)
        broken = mine[-1].broken
        values = (
            f"{seconds:.1f}",
            f"{cpu:.1f}",
            f"{rss:.1f}",
            str(len(broken)),
            str(len(broken & truth)),
            str(len(truth - broken)),
            str(len(broken - truth)),
        )
        print(f"{name:<16}" + "".join(f"{value:>12}" for value in values))
        for url in sorted(truth - broken):
            print(f"  {name} missed: {url}")
        for url in sorted(broken - truth):
            print(f"  {name} false positive: {url}")
    print("raw runs (seconds):")
    for name in dict.fromkeys(run.name for run in runs):
        print(f"  {name}: " + ", ".join(f"{run.seconds:.2f}" for run in runs if run.name == name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_linkchecker()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        root = work / "site"
        port = free_port()
        truth = generate(root, args.pages, port, free_port())
        server = (
            f"listen {SITE}:{port}; listen {OFFSITE}:{port}; root {root};"
            " add_header LinkChecker benchmark always;"
            " types { text/html html; text/css css; image/png png; text/javascript js; }"
            " location = /p/error.html { return 500; }"
        )
        nginx = launch_nginx(work, port, server)
        # LinkChecker drops root's privileges to "nobody": its files must be readable.
        os.chmod(work, 0o755)
        try:
            seed = f"http://{SITE}:{port}/p/0.html"
            runs = []
            for _ in range(args.runs):
                runs.append(run_ours(seed, work))
                runs.append(run_linkchecker(seed, work))
        finally:
            nginx.terminate()
            nginx.wait()
    report(runs, http_urls(truth), args.pages)


if __name__ == "__main__":
    main()
