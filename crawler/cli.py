"""The command line: flags and config.toml to CrawlConfig, progress, signals, exit codes.

The only module that prints, installs signal handlers, configures
logging or exits. Exit codes (README.md, Exit codes): 0 finished; 1 --fail-on-broken
found broken links; 2 usage or config error; 3 output folder locked; 4 a process
of the front died; 5 the shared frontier stopped answering; 6 the output folder
or state could not be written (a full disk); 7 a bug; 130/143 stopped by
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from crawler.api import Crawler
from crawler.config import CrawlConfig, build_config, load_toml
from crawler.errors import ConfigError, CrawlerError, NothingToDo
from crawler.logs import setup_logging
from crawler.output.files import OutputLock
from crawler.output.report import summarize, write_report
from crawler.records import BROKEN_ERRORS, CrawlStats, PageRecord
from crawler.web.urls import redact_url

# The exit code of a bug (an exception nothing expected): never 1, which says
# "broken links found" to cron lines and CI.
INTERNAL_ERROR = 7
log = logging.getLogger("crawler")
DEFAULT_OUTPUT = "output"
STATUS_LINE_SECONDS = 5.0
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _crawl_flags(parser: argparse.ArgumentParser) -> None:
    flag = parser.add_argument
    flag("urls", nargs="*", metavar="URL", help="seed URLs (http or https)")
    flag("--config", type=Path, help="config file (default: ./config.toml when present)")
    flag("--output", help=f"output folder (default: {DEFAULT_OUTPUT}/)")
    flag("--max-pages", type=int, help="stop after N pages fetched")
    flag("--max-depth", type=int, help="link depth from the seeds (seeds are depth 0)")
    flag("--max-time", type=float, help="stop scheduling after S seconds")
    flag("--concurrency", type=int, help="requests in flight in total")
    flag("--per-host", type=int, help="requests in flight per host")
    flag("--processes", type=int, help="spread hosts over this many processes")
    flag(
        "--frontier", metavar="URL", help="redis://HOST:PORT/DB: share the crawl with other members"
    )
    flag("--delay", type=float, help="minimum gap in seconds between request starts to a host")
    flag("--allow-domain", action="append", help="also crawl this domain and its subdomains")
    flag("--ignore-robots", action="store_true", default=None, help="do not obey robots.txt")
    flag(
        "--allow-private",
        action="store_true",
        default=None,
        help="connect to loopback, private and link-local addresses although the seeds are public",
    )
    flag(
        "--ignore-nofollow",
        action="store_true",
        default=None,
        help="follow links marked nofollow (rel, meta robots, X-Robots-Tag)",
    )
    flag(
        "--no-sitemaps",
        action="store_true",
        default=None,
        help="do not read robots.txt Sitemap: lines and /sitemap.xml",
    )
    _fetch_flags(parser)


def _fetch_flags(parser: argparse.ArgumentParser) -> None:
    flag = parser.add_argument
    flag("--user-agent", help="User-Agent header, matched against robots.txt")
    flag("--retries", type=int, help="retries for timeouts, connection errors, 429, 5xx")
    flag("--max-retry-after", type=float, help="longest Retry-After honoured, in seconds")
    flag("--timeout", type=float, help="total deadline for one request, in seconds")
    flag("--max-bytes", type=int, help="largest response body (decompressed)")
    flag("--save-html", action="store_true", default=None, help="mirror pages under OUTPUT/html/")
    flag("--format", choices=("jsonl", "csv"), help="pages file format")
    flag("--keep-query-order", action="store_true", default=None, help="do not sort query params")
    flag(
        "--resume",
        action="store_true",
        default=None,
        help="continue the unfinished crawl whose state is in the output folder",
    )
    flag(
        "--incremental",
        action="store_true",
        default=None,
        help="recrawl a finished crawl with conditional requests",
    )
    flag("--allow", action="append", help="follow only URLs matching (glob, or re:REGEX)")
    flag("--deny", action="append", help="never follow URLs matching (glob, or re:REGEX)")
    flag("--extract", metavar="MOD:FUNC", help="extractor; its items go to OUTPUT/items.jsonl")
    flag("--warc", metavar="PATH", help="also write every request and response to this WARC file")
    flag("--fail-on-broken", action="store_true", default=None, help="exit 1 on broken links")
    flag("--quiet", action="store_true", default=None, help="no progress or summary")
    flag("--log-file", type=Path, help="write a readable log of the crawl here")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="crawler", description="A fast, polite asynchronous web crawler.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="serve the bundled demo site and crawl it")
    demo.add_argument("--pages", type=int, default=500, help="pages on the demo site")
    demo.add_argument("--serve", action="store_true", help="only serve it, until Ctrl-C")
    _crawl_flags(commands.add_parser("crawl", help="crawl from seed URLs"))
    report = commands.add_parser("report", help="summary of a crawl; writes DIR/report.html")
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument(
        "--broken", action="store_true", help="only the broken links, one a line, with referrers"
    )
    return parser


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """config.toml's [crawl] values overridden by the flags that were given."""
    path = args.config
    if path is None and Path("config.toml").is_file():
        path = Path("config.toml")
    settings = load_toml(path) if path is not None else {}
    flags = {key: value for key, value in vars(args).items() if value is not None}
    for key in ("command", "config", "urls"):
        flags.pop(key, None)
    settings.update(flags)
    if args.urls:
        settings["seeds"] = args.urls
    settings.setdefault("output", DEFAULT_OUTPUT)
    return settings


class _Progress:
    """A live line on a terminal; a status line every few seconds elsewhere (cron logs)."""

    def __init__(self, console: Console, enabled: bool, max_pages: int | None) -> None:
        self._console = console
        self._max_pages = max_pages
        self._latest = CrawlStats()
        self._last_update = 0.0
        self._live: Live | None = None
        self._enabled = enabled
        if enabled and console.is_terminal:
            self._live = Live(console=console, get_renderable=self._line, transient=True)

    def __enter__(self) -> _Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, crawl: Crawler) -> None:
        now = time.monotonic()
        interval = 0.2 if self._live is not None else STATUS_LINE_SECONDS
        if not self._enabled or now - self._last_update < interval:
            return
        self._last_update = now
        self._latest = crawl.stats()
        if self._live is None:
            self._console.print(self._line(), highlight=False)

    def _line(self) -> Text:
        stats = self._latest
        line = (
            f"{stats.pages} pages  {stats.pages_per_s:.0f} pages/s  queue {stats.queued}  "
            f"in flight {stats.in_flight}  errors {stats.errors}  {stats.duration_s:.0f}s"
        )
        if self._max_pages and stats.pages_per_s > 0:
            left = max(self._max_pages - stats.pages, 0) / stats.pages_per_s
            line += f"  ~{left:.0f}s left"
        return Text(line)


def summary_table(
    stats: dict[str, Any], directory: Path | None, slowest_hosts: Sequence[tuple[str, float]] = ()
) -> Table:
    codes = {int(code): count for code, count in stats.get("status_counts", {}).items()}
    errors = stats.get("error_counts", {})
    table = Table(title="crawl summary", show_header=False, title_justify="left")
    rows = [
        ("pages", stats["pages"]),
        ("ok", stats["ok"]),
        ("redirected", stats.get("redirects", 0)),
        ("client errors (4xx)", sum(n for code, n in codes.items() if 400 <= code < 500)),
        ("server errors (5xx)", sum(n for code, n in codes.items() if code >= 500)),
        ("network errors", sum(n for error, n in errors.items() if error in BROKEN_ERRORS)),
        ("refused by robots.txt", stats.get("robots_refused", 0)),
        ("broken links", stats.get("broken", 0)),
        ("retries", stats.get("retries", 0)),
        ("bytes", f"{stats['bytes']:,}"),
        ("duration", f"{stats['duration_s']:.1f} s"),
        ("pages/s", f"{stats['pages_per_s']:.1f}"),
    ]
    rows += [("slow host", f"{host} ({ms:.0f} ms on average)") for host, ms in slowest_hosts]
    if directory is not None:
        rows.append(("output", str(directory)))
    for name, value in rows:
        table.add_row(name, str(value))
    return table


async def _crawl(config: CrawlConfig, quiet: bool) -> tuple[CrawlStats, int | None]:
    """Run the crawl with progress and signal handling; return stats and the signal's exit code."""
    stderr = Console(stderr=True)
    crawl = Crawler(config)
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stopped_by:
            os._exit(stopped_by[0])
        stopped_by.append(_SIGNAL_EXIT[signum])
        crawl.stop()
        if not quiet:
            stderr.print("stopping: finishing requests in flight (again to quit at once)")

    for signum in _SIGNAL_EXIT:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        with _Progress(stderr, not quiet, config.max_pages) as progress:
            async with crawl:
                async for record in crawl:
                    progress.update(crawl)
                    if isinstance(record, PageRecord) and record.is_broken():
                        log.info(
                            "broken: %s %s (linked from %s)",
                            record.status or record.error,
                            record.url,
                            record.referrer,
                        )
    finally:
        for signum in _SIGNAL_EXIT:
            loop.remove_signal_handler(signum)
    return crawl.stats(), stopped_by[0] if stopped_by else None


def _finish(
    stats: CrawlStats, stopped_by: int | None, config: CrawlConfig, settings: dict[str, Any]
) -> int:
    if not settings.get("quiet"):
        slowest: list[tuple[str, float]] = []
        if config.output_dir is not None:
            summary = summarize(config.output_dir)
            slowest = summary.slowest_hosts(3) if len(summary.hosts) > 1 else []
        Console().print(summary_table(dataclasses.asdict(stats), config.output_dir, slowest))
    state = "finished" if stats.finished else "stopped, --resume continues"
    log.info(
        "%s: %d pages, %d broken, %d queued, %.1f pages/s",
        state,
        stats.pages,
        stats.broken,
        stats.queued,
        stats.pages_per_s,
    )
    if stopped_by is not None:
        log.info("stopped by signal (exit %d)", stopped_by)
        return stopped_by
    if settings.get("fail_on_broken") and stats.broken:
        return 1
    return 0


def run_crawl(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    config = build_config(settings)
    if not config.seeds and not (config.resume or config.incremental or config.frontier):
        raise ConfigError("no seed URLs: give at least one URL (or seeds in config.toml)")
    quiet = bool(settings.get("quiet"))
    setup_logging(settings.get("log_file"))
    mode = "resume" if config.resume else "incremental" if config.incremental else "new crawl"
    seeds = " ".join(map(redact_url, config.seeds)) or "(from the saved state)"
    log.info("%s into %s: %s", mode, config.output_dir, seeds)
    try:
        stats, stopped_by = asyncio.run(_crawl(config, quiet))
    except NothingToDo as done:
        if not quiet:
            print(f"crawler: {done}", file=sys.stderr)
        return done.exit_code
    return _finish(stats, stopped_by, config, settings)


async def _demo(pages: int) -> tuple[CrawlStats, int | None, CrawlConfig]:
    """Start the demo site in its own process, crawl it into output/, stop it."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler.demo", "--pages", str(pages), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        async with asyncio.timeout(30):
            url = (await server.stdout.readline()).decode().strip()
        if not url:
            raise CrawlerError("the demo site did not start")
        Console(stderr=True).print(f"demo site: {url} ({pages} pages)")
        config = CrawlConfig(seeds=(url,), output_dir=Path(DEFAULT_OUTPUT) / "demo")
        # The demo site gets a new port each time: an earlier demo crawl, even an
        # unfinished one, is never resumed; the demo starts over.
        assert config.output_dir is not None
        config.output_dir.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(config.output_dir)
        lock.acquire()  # another demo running there: exit 3, and its state is left alone
        try:
            for stale in config.output_dir.glob("state.sqlite*"):
                stale.unlink()
        finally:
            lock.release()
        stats, stopped_by = await _crawl(config, quiet=False)
        return stats, stopped_by, config
    finally:
        if server.returncode is None:
            server.terminate()
        await server.wait()


def run_demo(args: argparse.Namespace) -> int:
    if args.pages < 1:
        raise ConfigError("--pages must be at least 1")
    if args.serve:
        from crawler import demo  # aiohttp.web: only the demo needs it

        return demo.main(["--pages", str(args.pages)])
    setup_logging(None)
    stats, stopped_by, config = asyncio.run(_demo(args.pages))
    return _finish(stats, stopped_by, config, {})


def run_report(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    try:
        summary = summarize(directory)
    except FileNotFoundError:
        raise ConfigError(f"no crawl in {directory} (no stats.json)") from None
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"cannot read the crawl in {directory}: {error}") from None
    console = Console(highlight=False, soft_wrap=True)
    if not args.broken:
        console.print(summary_table(summary.stats, directory, summary.slowest_hosts()))
        console.print(f"report: {write_report(directory)}")
    for link in summary.broken:
        referrers = " ".join(link["referrers"])
        # Printed as they are: rich markup would eat "[::1]" in an IPv6 URL.
        line = f"{link['status'] or link['error']} {link['url']} <- {referrers}"
        console.print(line, markup=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"crawl": run_crawl, "demo": run_demo, "report": run_report}
    try:
        return commands[args.command](args)
    except CrawlerError as error:
        print(f"crawler: error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a bug: its own exit code, one line, the traceback logged
        if logging.getLogger().handlers:  # else logging's last resort would print it here
            log.error("internal error", exc_info=True)
        print(
            f"crawler: internal error: {type(error).__name__}: {error} (a bug; --log-file"
            " keeps its traceback; --resume continues the crawl)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
