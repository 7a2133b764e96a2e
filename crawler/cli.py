"""The command line: its commands, progress, signals and exit codes (flags.py: the flags).

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
import functools
import gc
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from crawler import runtime
from crawler.api import Crawler
from crawler.check_formats import FORMATS, Results, render
from crawler.config import CrawlConfig, build_config
from crawler.errors import ConfigError, CrawlerError, NothingToDo, OutputFailed
from crawler.flags import DEFAULT_OUTPUT, build_parser, settings_from
from crawler.heap import for_big_blocks, release_freed
from crawler.logs import setup_logging
from crawler.net.pool import raise_file_limit
from crawler.output.checks_file import counts_line, read_checks
from crawler.output.files import OutputLock
from crawler.output.passes import broken_changes, settle_update
from crawler.output.report import broken_links, summarize
from crawler.output.report_html import write_report
from crawler.records import CrawlStats, LinkCheck, PageRecord
from crawler.terminal import Progress, broken_line, print_broken, seed_failure, summary_table
from crawler.web.urls import redact_url

# The exit code of a bug (an exception nothing expected): never 1, which says
# "broken links found" to cron lines and CI.
INTERNAL_ERROR = 7
# No seed could be fetched (each said why on stderr): the site is down, or the
# URLs are wrong. Not 1: nothing was checked, which is worse than a broken link.
NO_SEED_FETCHED = 8
log = logging.getLogger("crawler")
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


async def _crawl(
    config: CrawlConfig, quiet: bool, checks: Results | None = None
) -> tuple[CrawlStats, int | None]:
    """Run the crawl with progress and signal handling; return stats and the signal's
    exit code (crawler check's results are counted in ``checks``)."""
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
        # --verbose writes a line a URL to stderr: no progress line between them.
        shown = not quiet and not log.isEnabledFor(logging.DEBUG)
        with Progress(stderr, shown, config.max_pages) as progress:
            async with crawl:
                async for record in crawl:
                    progress.update(crawl.stats)
                    if isinstance(record, LinkCheck):
                        if checks is not None:
                            checks.add(record)
                    elif isinstance(record, PageRecord):
                        _said(record)
    finally:
        for signum in _SIGNAL_EXIT:
            loop.remove_signal_handler(signum)
    return crawl.stats(), stopped_by[0] if stopped_by else None


def _said(record: PageRecord) -> None:
    """Every URL done, in the debug log (--verbose); a seed not fetched, on stderr; a
    broken link, in the log."""
    log.debug(
        "%s %s %s (%d ms, depth %d)",
        record.status or record.error,
        record.kind,
        record.url,
        record.elapsed_ms,
        record.depth,
    )
    if record.is_seed() and not record.answered():
        log.warning("%s", seed_failure(record))
    if record.is_broken():
        log.info(
            "broken: %s %s (linked from %s)",
            record.status or record.error,
            record.url,
            record.referrer,
        )


@dataclasses.dataclass(frozen=True)
class _Job:
    """How the command line reports a crawl: what it was told besides the crawl."""

    quiet: bool = False
    fail_on_broken: bool = False
    # --update: a pass's broken links are said when it ends, against the last pass's.
    update: bool = False
    # The command that continues the crawl when it stops unfinished.
    resume_with: str | None = None


def _finish(stats: CrawlStats, stopped_by: int | None, config: CrawlConfig, job: _Job) -> int:
    directory = config.output_dir
    if not job.quiet:
        slowest: list[tuple[str, float]] = []
        if directory is not None:
            summary = summarize(directory)
            slowest = summary.slowest_hosts(3) if len(summary.hosts) > 1 else []
        table = summary_table(
            dataclasses.asdict(stats), directory, slowest, resume_with=job.resume_with
        )
        Console().print(table)
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
    if job.update and not stats.finished:
        return 0  # the pass goes on next time; its broken links are said when it ends
    if _no_seed_fetched(stats):
        return NO_SEED_FETCHED
    if job.fail_on_broken and stats.broken:
        if directory is not None:
            print_broken(Console(highlight=False, soft_wrap=True), broken_changes(directory))
        return 1
    return 0


def _settled(args: argparse.Namespace) -> tuple[CrawlConfig, dict[str, Any]]:
    """The config of a crawl or check command, and every value it was given."""
    settings = settings_from(args)
    values = settings.values
    setup_logging(values.get("log_file"), verbose=bool(values.get("verbose")))
    if settings.note:
        log.info("%s", settings.note)
    if args.command == "check":
        values["check"] = True
    try:
        config = settle_update(build_config(values))
    except ConfigError as error:
        raise settings.named(error) from None
    given = config.seeds or config.input_file is not None
    if not given and not (config.resume or config.incremental or config.frontier):
        there = f" ({config.output_dir} holds no crawl to continue)" if values.get("update") else ""
        raise ConfigError(f"no seed URLs: give at least one URL or --input-file{there}")
    mode = "resume" if config.resume else "incremental" if config.incremental else "new crawl"
    seeds = " ".join(map(redact_url, config.seeds))
    if config.input_file is not None:
        listed = "standard input" if str(config.input_file) == "-" else str(config.input_file)
        seeds = f"{seeds} and the URLs of {listed}" if seeds else f"the URLs of {listed}"
    seeds = seeds or "(from the saved state)"
    log.info("%s into %s: %s", mode, config.output_dir, seeds)
    return config, values


def _job(args: argparse.Namespace, config: CrawlConfig, values: dict[str, Any]) -> _Job:
    resume_with = None
    if config.output_dir is not None and not config.frontier:
        how = "--update" if values.get("update") else "--resume"
        folder = shlex.quote(str(config.output_dir))
        resume_with = f"crawler {args.command} --output {folder} {how}"
    fail_on_broken = bool(values.get("fail_on_broken"))
    return _Job(bool(values.get("quiet")), fail_on_broken, bool(values.get("update")), resume_with)


def run_crawl(args: argparse.Namespace) -> int:
    config, values = _settled(args)
    job = _job(args, config, values)
    try:
        stats, stopped_by = runtime.run(_crawl(config, job.quiet))
    except NothingToDo as done:
        if not job.quiet:
            print(f"crawler: {done}", file=sys.stderr)
        return done.exit_code
    return _finish(stats, stopped_by, config, job)


def run_check(args: argparse.Namespace) -> int:
    config, values = _settled(args)
    job = _job(args, config, values)
    report_format = values.get("report_format") or "text"
    if report_format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {report_format!r}")
    report: Path | None = values.get("report")
    if report is not None:
        _writable(Path(report))
    assert config.output_dir is not None
    checks = Results(functools.partial(read_checks, config.output_dir))
    try:
        stats, stopped_by = runtime.run(_crawl(config, job.quiet, checks))
    except NothingToDo as done:
        if not job.quiet:
            print(f"crawler: {done}", file=sys.stderr)
        return done.exit_code
    # The crawl's objects (its ledger among them) are held in cycles until a collection:
    # freed before the report reads the results back.
    gc.collect()
    release_freed()
    _report_checks(checks, stats, job, report, report_format)
    # The text report ends with the summary line; any other report is a file's content.
    summary = not job.quiet and (report is not None or report_format != "text")
    return _check_exit(checks, stats, stopped_by, job, summary=summary)


def _report_checks(
    checks: Results, stats: CrawlStats, job: _Job, report: Path | None, report_format: str
) -> None:
    """The report, to --report FILE or stdout. Not for a pass of --update that goes on
    next time (it reports when it ends), nor, with --quiet, a text report of nothing
    broken (cron mails what is printed)."""
    if job.update and not stats.finished:
        return
    if report is None and report_format == "text" and job.quiet and not checks.failing():
        return
    pieces = render(checks, report_format, stats.pages)
    if report is not None:
        _write_report(Path(report), pieces)
    else:
        sys.stdout.writelines(pieces)


def _writable(path: Path) -> None:
    """--report FILE can be written: said before the crawl, not after it (and nothing
    is created meanwhile)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not os.access(path if path.exists() else folder, os.W_OK):
        raise ConfigError(f"cannot write --report {path}: not a writable file")


def _write_report(path: Path, pieces: Iterable[str]) -> None:
    try:
        with path.open("w", encoding="utf-8") as file:
            file.writelines(pieces)
    except OSError as error:
        raise OutputFailed(f"cannot write --report {path}: {error.strerror}") from None


def _check_exit(
    checks: Results, stats: CrawlStats, stopped_by: int | None, job: _Job, *, summary: bool
) -> int:
    """0 when nothing is broken, 1 when something is; a stop says so, and how to go on."""
    if summary:
        print(checks.summary_line(stats.pages), file=sys.stderr)
    if not job.quiet and not stats.finished and job.resume_with is not None:
        print(
            f"unfinished: {stats.queued:,} URLs still queued; continue with {job.resume_with}",
            file=sys.stderr,
        )
    if stopped_by is not None:
        return stopped_by
    if job.update and not stats.finished:
        return 0  # the pass goes on next time; its broken links are said when it ends
    if _no_seed_fetched(stats):
        return NO_SEED_FETCHED
    return 1 if checks.failing() else 0


def _no_seed_fetched(stats: CrawlStats) -> bool:
    """A finished crawl none of whose seeds got an answer below 400: said in one line."""
    if not stats.finished or not stats.seeds or stats.seeds_failed < stats.seeds:
        return False
    print(
        f"crawler: error: no seed could be fetched ({stats.seeds_failed} of {stats.seeds}: "
        "see the lines above, or pages.jsonl)",
        file=sys.stderr,
    )
    return True


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
    stats, stopped_by, config = runtime.run(_demo(args.pages))
    return _finish(stats, stopped_by, config, _Job())


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
        stats = summary.stats
        if summary.is_check():  # the check's counts, as report.html's cards say them
            stats = {**stats, "broken": summary.check_counts["broken"]}
        console.print(summary_table(stats, directory, summary.slowest_hosts()))
        if summary.is_check():
            console.print(counts_line(summary.check_counts, stats["pages"]))
        console.print(f"report: {write_report(directory)}")
    for link in broken_links(directory):
        # Printed as they are: rich markup would eat "[::1]" in an IPv6 URL.
        console.print(broken_line(link), markup=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for_big_blocks()
    runtime.collect_seldom()
    raise_file_limit()
    commands = {"crawl": run_crawl, "check": run_check, "demo": run_demo, "report": run_report}
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
