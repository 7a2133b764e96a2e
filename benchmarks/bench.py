"""Benchmark: our crawler against Scrapy on the same generated static site, served by nginx.

    python3 benchmarks/bench.py                       # 20,000 realistic pages, 5-15 KB, 1 host
    python3 benchmarks/bench.py --site flat           # the first site: absolute links in a list
    python3 benchmarks/bench.py --pages 2000 --runs 1 # a quick look
    python3 benchmarks/bench.py --page-kb 200 2000 --pages 2000   # large pages
    python3 benchmarks/bench.py --hosts 4 --processes 1 2         # several loopback hosts
    python3 benchmarks/bench.py --hosts 16 --redis-workers 1 2 4 --no-scrapy   # shared frontier
    python3 benchmarks/bench.py --no-scrapy --ours-flags "--render auto"   # auto costs nothing?

What it does: generates a deterministic site (sites.py: realistic pages by
default, with relative links, navigation, fragments and offsite links; pages,
page size, links per page, hosts on 127.0.0.2, 127.0.0.3, ...) into a
temporary folder; serves it
with nginx (one worker; apt-get installs nginx if it is missing) on a free
port with its own config; installs Scrapy into a virtual environment under
~/.cache/crawler-bench the first time; then runs each crawler on the same
site with the same settings (64 requests in flight, robots.txt off), in
alternation, --runs times each, with the ceiling (ceiling.py: a bare aiohttp
loop fetching the same pages from a list and parsing each with lxml), and
prints for each: pages/s (median), CPU ms a page, peak RSS, and the ratios to
Scrapy and to the ceiling. nginx is
stopped by its pid at the end. Loopback only.

--redis-workers N...: also the shared frontier, with N worker processes (one
redis-server of its own on a free port, emptied before each run; all
workers are given the seeds: the first creates the crawl, the others join).
Its CPU seconds include redis-server's; its peak RSS is the largest
worker's, and Redis's used_memory at the end is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from sites import generate, host_of, page_path

CACHE = Path.home() / ".cache" / "crawler-bench"
SCRAPY_VENV = CACHE / "scrapy-venv"

SCRAPY_SPIDER = textwrap.dedent(
    """
    import scrapy
    from scrapy.linkextractors import LinkExtractor
    from scrapy.spiders import CrawlSpider, Rule


    class BenchSpider(CrawlSpider):
        name = "bench"
        rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)

        def __init__(self, seeds="", domains="", **kwargs):
            self.start_urls = seeds.split(",")
            self.allowed_domains = domains.split(",")
            super().__init__(**kwargs)

        def parse_start_url(self, response):
            return self.parse_page(response)

        def parse_page(self, response):
            yield {"url": response.url, "status": response.status}
    """
)


@dataclass(frozen=True)
class Run:
    name: str
    pages: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds


def count_lines(path: Path) -> int:
    with path.open() as file:
        return sum(1 for _ in file)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_nginx() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True)
    return nginx


def start_nginx(root: Path, work: Path, port: int, hosts: int) -> subprocess.Popen[bytes]:
    """nginx serving ``root`` on 127.0.0.2, 127.0.0.3, ... (``hosts`` of them)."""
    listens = "".join(f"listen 127.0.0.{2 + h}:{port}; " for h in range(hosts))
    return launch_nginx(work, port, f"{listens} root {root};")


def launch_nginx(work: Path, port: int, server: str) -> subprocess.Popen[bytes]:
    """nginx (one worker, its own config and pid file in ``work``) with one server
    block; returns once 127.0.0.2:``port`` answers. The caller stops it."""
    config = work / "nginx.conf"
    config.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {work}/nginx.pid;
            error_log {work}/error.log;
            events {{ worker_connections 4096; }}
            http {{
              access_log off;
              default_type text/html;
              keepalive_requests 100000;
              server {{ {server} }}
            }}
            """
        )
    )
    process = subprocess.Popen([ensure_nginx(), "-c", str(config), "-p", str(work)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.2", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("nginx did not start")


def ensure_scrapy() -> Path:
    python = SCRAPY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SCRAPY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "scrapy"], check=True)
    return python


def measured(name: str, command: list[str], cwd: Path, count_pages: callable) -> Run:  # type: ignore[valid-type]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{name} failed: {command}")
    pages = count_pages()
    return Run(name, pages, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def run_ceiling(work: Path) -> Run:
    """The bare fetch-and-parse loop over the same pages (ceiling.py)."""
    ceiling = Path(__file__).with_name("ceiling.py")
    command = [sys.executable, str(ceiling), str(work / "urls.txt")]
    total = len((work / "urls.txt").read_text().split())
    return measured("ceiling (aiohttp+lxml)", command, work, lambda: total)


def run_ours(seeds: list[str], work: Path, processes: int, extra: list[str]) -> Run:
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "crawler", "crawl", *seeds, "--output", str(out)]
    command += ["--quiet", "--concurrency", "64", "--per-host", "64", "--ignore-robots"]
    command += ["--no-sitemaps", "--timeout", "60", *extra]
    if processes > 1:
        command += ["--processes", str(processes)]
    name = " ".join(["crawler", f"--processes {processes}", *extra])

    def count() -> int:
        return sum(1 for _ in (out / "pages.jsonl").open())

    run = measured(name, command, work, count)
    if "--render" in extra:
        stats = json.loads((out / "stats.json").read_text())
        print(f"  {name}: {stats['rendered']} pages rendered", flush=True)
    return run


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--redis-workers needs redis-server (apt-get install redis-server)")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    server = subprocess.Popen([*command, "no"], stdout=subprocess.DEVNULL)
    for _ in range(500):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.01)
    raise SystemExit("redis-server did not start")


def redis_cli(port: int, *command: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, check=True
    )
    return result.stdout


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_shared(
    seeds: list[str], work: Path, workers: int, redis: subprocess.Popen[bytes], port: int
) -> Run:
    """N workers of one crawl over the shared frontier; pages = distinct URLs recorded."""
    redis_cli(port, "FLUSHALL")
    redis_cpu = cpu_of(redis.pid)
    outputs = [work / f"shared-{n}" for n in range(workers)]
    started = time.monotonic()
    processes = []
    for out in outputs:
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "crawler", "crawl", *seeds, "--output", str(out)]
        command += ["--quiet", "--concurrency", "64", "--per-host", "64", "--ignore-robots"]
        command += ["--no-sitemaps", "--timeout", "60", "--frontier", f"redis://127.0.0.1:{port}/0"]
        processes.append(subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL))
    cpu, rss = 0.0, 0.0
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"a shared-frontier worker failed: {process.args}")
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
    seconds = time.monotonic() - started
    cpu += cpu_of(redis.pid) - redis_cpu
    urls = set()
    for out in outputs:
        with (out / "pages.jsonl").open() as pages:
            urls.update(json.loads(line)["url"] for line in pages)
    memory = redis_cli(port, "INFO", "memory").split("used_memory:", 1)[1].split()[0]
    print(f"  redis used_memory after the crawl: {int(memory) / 2**20:.1f} MiB", flush=True)
    return Run(f"redis x{workers}", len(urls), seconds, cpu, rss)


def run_scrapy_command(
    seeds: list[str], hosts: list[str], work: Path, settings: list[str] = ()
) -> list[str]:
    """The Scrapy command for the same crawl: its items go to work/scrapy-items.jsonl."""
    spider = work / "bench_spider.py"
    spider.write_text(SCRAPY_SPIDER)
    items = work / "scrapy-items.jsonl"
    items.unlink(missing_ok=True)
    command = [str(ensure_scrapy()), "-m", "scrapy", "runspider", str(spider), "-o", str(items)]
    command += ["-a", f"seeds={','.join(seeds)}", "-a", f"domains={','.join(hosts)}"]
    for setting in (
        "CONCURRENT_REQUESTS=64",
        "CONCURRENT_REQUESTS_PER_DOMAIN=64",
        "ROBOTSTXT_OBEY=False",
        "LOG_LEVEL=ERROR",
        "TELNETCONSOLE_ENABLED=False",
        "DOWNLOAD_TIMEOUT=60",
        *settings,
    ):
        command += ["-s", setting]
    return command


def run_scrapy(seeds: list[str], hosts: list[str], work: Path) -> Run:
    command = run_scrapy_command(seeds, hosts, work)

    def count() -> int:
        return sum(1 for _ in (work / "scrapy-items.jsonl").open())

    return measured("scrapy", command, work, count)


def report(runs: list[Run]) -> None:
    names = list(dict.fromkeys(run.name for run in runs))
    medians = {
        name: statistics.median(run.pages_per_s for run in runs if run.name == name)
        for name in names
    }
    header = ("pages", "pages/s", "CPU ms/page", "peak RSS MB", "vs scrapy", "vs ceiling")
    print(f"{'crawler':<26}" + "".join(f"{column:>12}" for column in header))
    ceiling = medians.get("ceiling (aiohttp+lxml)", float("nan"))
    for name in names:
        mine = [run for run in runs if run.name == name]
        cpu = statistics.median(run.cpu_seconds / run.pages * 1000 for run in mine)
        rss = max(run.peak_rss_mb for run in mine)
        scrapy = f"{medians[name] / medians['scrapy']:.2f}x" if "scrapy" in medians else "-"
        values = (f"{mine[0].pages}", f"{medians[name]:.1f}", f"{cpu:.2f}", f"{rss:.1f}", scrapy)
        share = f"{medians[name] / ceiling:.0%}"
        print(f"{name:<26}" + "".join(f"{v:>12}" for v in (*values, share)))
    print("raw runs (pages/s):")
    for name in names:
        print(f"  {name}: " + ", ".join(f"{r.pages_per_s:.1f}" for r in runs if r.name == name))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--site", choices=("realistic", "flat"), default="realistic", help="see sites.py"
    )
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--page-kb", type=int, nargs=2, default=(5, 15), metavar=("MIN", "MAX"))
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--no-scrapy", action="store_true", help="measure only our crawler")
    parser.add_argument("--redis-workers", type=int, nargs="*", default=[])
    parser.add_argument(
        "--ours-flags",
        action="append",
        default=[],
        help="also run ours with these flags, in turn with the plain run ('--render auto')",
    )
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="crawler-bench-") as folder:
        work = Path(folder)
        work.chmod(0o755)  # nginx's worker runs as an unprivileged user
        print(f"generating {args.pages} {args.site} pages on {args.hosts} host(s)...", flush=True)
        urls = generate(
            work / "site", args.site, args.pages, tuple(args.page_kb), args.links, args.hosts, port
        )
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        hosts = [f"127.0.0.{2 + h}" for h in range(args.hosts)]
        seeds = [
            f"http://{host_of(h, args.hosts)}:{port}{page_path(h, args.site)}"
            for h in range(args.hosts)
        ]
        server = start_nginx(work / "site", work, port, args.hosts)
        redis_port = free_port()
        redis = start_redis(redis_port) if args.redis_workers else None
        runs: list[Run] = []
        try:
            for number in range(args.runs):
                runs.append(run_ceiling(work))
                print(f"run {number + 1}: ceiling: {runs[-1].pages_per_s:.1f} pages/s", flush=True)
                for processes in args.processes:
                    for extra in ([], *(flags.split() for flags in args.ours_flags)):
                        runs.append(run_ours(seeds, work, processes, extra))
                        print(
                            f"run {number + 1}: {runs[-1].name}: {runs[-1].pages_per_s:.1f}"
                            " pages/s",
                            flush=True,
                        )
                for workers in args.redis_workers:
                    assert redis is not None
                    runs.append(run_shared(seeds, work, workers, redis, redis_port))
                    print(
                        f"run {number + 1}: {runs[-1].name}: {runs[-1].pages_per_s:.1f} pages/s",
                        flush=True,
                    )
                if not args.no_scrapy:
                    runs.append(run_scrapy(seeds, hosts, work))
                    print(
                        f"run {number + 1}: scrapy: {runs[-1].pages_per_s:.1f} pages/s", flush=True
                    )
        finally:
            server.terminate()
            server.wait(10)
            if redis is not None:
                redis.terminate()
                redis.wait(10)
        report(runs)


if __name__ == "__main__":
    main()
