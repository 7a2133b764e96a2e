"""Benchmark: --render against Crawlee's PlaywrightCrawler on a single-page-app site.

    python3 benchmarks/render.py                    # 2,000 app pages, 8 tabs, 3 runs each
    python3 benchmarks/render.py --pages 300 --runs 1 --no-crawlee   # a quick look
    python3 benchmarks/render.py --kill             # the browser killed mid-crawl

The site (served by aiohttp in a process of its own on 127.0.0.1, a free port):
``--pages`` app shells, ``/p/N``, each an empty ``<div id="root">`` and one
script that fetches ``/api/p/N.json`` and inserts the page's title, a paragraph
and 5 links (to N+1 and four others, so every page is reached from /p/0).

Each run starts from nothing (a fresh output folder or storage folder) and
crawls the whole site with 8 pages rendered at once, by the same browser binary
(Debian's chromium-headless-shell). Runs alternate between the crawlers. For
each: pages/s, CPU ms a page (the crawler and its browser, every process of
the tree, sampled every 0.1 s from /proc), peak memory
(the PSS of the whole process tree, sampled every 0.3 s), the first page's
time after start, and the memory of the last quarter of the run against the
first. Crawlee is installed with npm under ~/.cache/crawler-bench/crawlee the
first time (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: Debian's browser is used).

--kill: one run of ours with the browser killed (SIGKILL to its process group)
halfway; prints the pages recorded and the longest gap between two records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path.home() / ".cache" / "crawler-bench"
CRAWLEE = CACHE / "crawlee"
BROWSER = shutil.which("chromium-headless-shell") or "/usr/bin/chromium-headless-shell"
TABS = 8

SHELL = (
    '<!DOCTYPE html><html><head><title>app</title></head><body><div id="root"></div>'
    '<script src="/app.js"></script></body></html>'
)
APP = """
fetch("/api" + location.pathname + ".json").then((answer) => answer.json()).then((page) => {
  const root = document.getElementById("root");
  const heading = document.createElement("h1");
  heading.textContent = page.title;
  root.appendChild(heading);
  const text = document.createElement("p");
  text.textContent = page.text;
  root.appendChild(text);
  for (const link of page.links) {
    const anchor = document.createElement("a");
    anchor.href = link;
    anchor.textContent = link;
    root.appendChild(anchor);
  }
});
"""
CRAWLEE_SCRIPT = textwrap.dedent(
    """
    import { PlaywrightCrawler, Configuration } from "crawlee";
    import { chromium } from "playwright";
    const [start, browser] = process.argv.slice(2);
    let pages = 0;
    const crawler = new PlaywrightCrawler({
      launchContext: {
        launcher: chromium, launchOptions: { executablePath: browser, headless: true },
      },
      minConcurrency: 8, maxConcurrency: 8, maxRequestRetries: 0, useSessionPool: false,
      browserPoolOptions: { useFingerprints: false },
      async requestHandler({ page, enqueueLinks }) {
        await page.waitForLoadState("networkidle");
        pages += 1;
        await enqueueLinks({ strategy: "same-hostname" });
      },
    }, new Configuration({ persistStorage: false }));
    await crawler.run([start]);
    console.log(JSON.stringify({ pages }));
    """
)


def serve(port: int, pages: int) -> None:
    """The app site (runs in its own process: ``render.py --serve PORT PAGES``)."""
    from aiohttp import web

    async def shell(request: web.Request) -> web.StreamResponse:
        number = int(request.match_info["number"])
        if not 0 <= number < pages:
            raise web.HTTPNotFound()
        return web.Response(text=SHELL, content_type="text/html")

    async def app_js(_: web.Request) -> web.StreamResponse:
        return web.Response(text=APP, content_type="application/javascript")

    async def data(request: web.Request) -> web.StreamResponse:
        number = int(request.match_info["number"])
        targets = {(number + 1) % pages}
        targets |= {(number * 7 + step * 131) % pages for step in range(1, 5)}
        links = [f"/p/{target}" for target in sorted(targets)]
        text = f"Page {number} of the app, written by its script. " * 8
        return web.json_response({"title": f"page {number}", "text": text, "links": links})

    app = web.Application()
    app.router.add_get("/p/{number}", shell)
    app.router.add_get("/app.js", app_js)
    app.router.add_get("/api/p/{number}.json", data)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@dataclass
class Run:
    name: str
    pages: int
    seconds: float
    cpu_seconds: float
    peak_mb: float
    first_page_s: float | None
    memory_drift: float | None
    samples: list[float] = field(default_factory=list)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Each process's own CPU seconds so far (user and system, not its children's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def measured(name: str, command: list[str], cwd: Path, first: Path | None, **popen: object) -> Run:
    """Run ``command`` to its end, sampling the memory of its process tree; the first
    page is the moment ``first`` (a file) has a line."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, **popen)  # type: ignore[call-overload]
    samples: list[float] = []
    first_page: list[float] = []
    done = threading.Event()

    spent: dict[int, float] = {}

    def sample() -> None:
        beat = 0
        while not done.wait(0.1):
            pids = tree(process.pid)
            spent.update(cpu_seconds(pids))
            beat += 1
            if beat % 3 == 0:
                samples.append(pss_mb(pids))
            if first is not None and not first_page and first.exists() and first.stat().st_size:
                first_page.append(time.monotonic() - started)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{name} failed: {command}")
    drift = None
    if len(samples) >= 8:
        quarter = len(samples) // 4
        # The first quarter's samples after the browser is up (the first two: start-up).
        early, late = samples[2 : quarter + 2], samples[-quarter:]
        drift = statistics.mean(late) / statistics.mean(early) - 1
    run = Run(
        name,
        0,
        seconds,
        # Every process's own CPU as last sampled (every 0.1 s): wait4's count of the
        # descendants misses a browser's helpers killed at the end, reaped by no one.
        max(sum(spent.values()), usage.ru_utime + usage.ru_stime),
        max(samples, default=0.0),
        first_page[0] if first_page else None,
        drift,
        samples,
    )
    run.pages = pages_of(name, out, cwd)
    return run


def pages_of(name: str, out: bytes, cwd: Path) -> int:
    if name.startswith("crawlee"):
        return int(json.loads(out.decode().strip().splitlines()[-1])["pages"])
    with (cwd / "ours" / "pages.jsonl").open() as pages:
        return sum(
            1 for line in pages if '"render_error": null' in line or '"render_error":null' in line
        )


def run_ours(base: str, work: Path, extra: list[str] = ()) -> Run:  # type: ignore[assignment]
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "crawler", "crawl", base + "/p/0", "--output", str(out)]
    command += ["--quiet", "--render", "always", "--render-tabs", str(TABS)]
    command += ["--concurrency", str(TABS), "--per-host", str(TABS), "--no-sitemaps"]
    command += ["--browser", BROWSER, *extra]
    return measured("crawler --render always", command, work, out / "pages.jsonl")


def ensure_crawlee() -> Path:
    script = CRAWLEE / "bench.mjs"
    if not (CRAWLEE / "node_modules" / "crawlee").is_dir():
        CRAWLEE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=CRAWLEE, check=True, capture_output=True)
        env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "crawlee", "playwright"],
            cwd=CRAWLEE,
            check=True,
            env=env,
        )
    script.write_text(CRAWLEE_SCRIPT)
    return script


def run_crawlee(base: str, work: Path, script: Path) -> Run:
    storage = work / "crawlee-storage"
    shutil.rmtree(storage, ignore_errors=True)
    env = {**os.environ, "CRAWLEE_STORAGE_DIR": str(storage), "CRAWLEE_LOG_LEVEL": "ERROR"}
    command = ["node", str(script), base + "/p/0", BROWSER]
    return measured("crawlee PlaywrightCrawler", command, CRAWLEE, None, env=env)


def run_killed(base: str, work: Path, pages: int) -> None:
    """Ours, with the browser killed halfway: every page recorded? the longest gap?"""
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "crawler", "crawl", base + "/p/0", "--output", str(out)]
    command += ["--quiet", "--render", "always", "--render-tabs", str(TABS)]
    command += ["--concurrency", str(TABS), "--per-host", str(TABS), "--no-sitemaps"]
    process = subprocess.Popen(command, cwd=work)
    records: list[float] = []
    killed_at = None
    lines = 0
    while process.poll() is None:
        time.sleep(0.02)
        if (out / "pages.jsonl").exists():
            now = sum(1 for _ in (out / "pages.jsonl").open())
            records.extend([time.monotonic()] * (now - lines))
            lines = now
        if killed_at is None and lines >= pages // 2:
            browsers = [pid for pid in tree(process.pid) if pid != process.pid]
            leader = min(browsers)
            os.killpg(os.getpgid(leader), signal.SIGKILL)
            killed_at = time.monotonic()
    after = [moment for moment in records if killed_at is not None and moment > killed_at]
    restart = after[0] - killed_at if after and killed_at is not None else None
    with (out / "pages.jsonl").open() as file:
        rendered = [json.loads(line) for line in file]
    errors = [record["render_error"] for record in rendered if record["render_error"]]
    print(
        f"browser killed at {pages // 2} pages: {len(rendered)} of {pages} pages recorded,"
        f" render errors {errors}, first record after the kill {restart:.2f} s later"
        if restart is not None
        else "no record after the kill"
    )


def progress(number: int, name: str, run: Run) -> None:
    print(f"run {number + 1}: {name}: {run.pages} pages, {run.pages_per_s:.1f} pages/s", flush=True)


def report(runs: list[Run]) -> None:
    names = list(dict.fromkeys(run.name for run in runs))
    print()
    print(
        f"{'crawler':28} {'pages':>6} {'pages/s':>8} {'CPU ms/page':>12} {'peak MB':>8}"
        f" {'first page s':>13} {'mem drift':>10}"
    )
    medians = {}
    for name in names:
        mine = [run for run in runs if run.name == name]
        rate = statistics.median(run.pages_per_s for run in mine)
        medians[name] = rate
        cpu = statistics.median(run.cpu_seconds * 1000 / max(run.pages, 1) for run in mine)
        peak = statistics.median(run.peak_mb for run in mine)
        firsts = [run.first_page_s for run in mine if run.first_page_s is not None]
        drifts = [run.memory_drift for run in mine if run.memory_drift is not None]
        first = f"{statistics.median(firsts):.2f}" if firsts else "-"
        drift = f"{statistics.median(drifts):+.1%}" if drifts else "-"
        pages = statistics.median(run.pages for run in mine)
        figures = f"{pages:>6.0f} {rate:>8.1f} {cpu:>12.1f} {peak:>8.0f}"
        print(f"{name:28} {figures} {first:>13} {drift:>10}")
    if len(medians) == 2:
        ours, theirs = medians.values()
        print(f"\nours / crawlee pages/s: {ours / theirs:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-crawlee", action="store_true")
    parser.add_argument("--kill", action="store_true", help="the browser killed mid-crawl")
    parser.add_argument("--samples", action="store_true", help="print ours' memory samples")
    parser.add_argument("--flags", default="", help="more flags for ours ('--render-wait 0.1')")
    parser.add_argument(
        "--serve", nargs=2, type=int, metavar=("PORT", "PAGES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(args.pages)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory(prefix="crawler-render-bench-") as folder:
            work = Path(folder)
            if args.kill:
                run_killed(base, work, args.pages)
                return
            script = None if args.no_crawlee else ensure_crawlee()
            runs = []
            for number in range(args.runs):
                runs.append(run_ours(base, work, args.flags.split()))
                progress(number, "ours", runs[-1])
                if args.samples:
                    print("memory MB every 3 s:", [round(mb) for mb in runs[-1].samples[::10]])
                if script is not None:
                    runs.append(run_crawlee(base, work, script))
                    progress(number, "crawlee", runs[-1])
            report(runs)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
