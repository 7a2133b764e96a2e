"""The durable side of one crawl: the output folder and state.sqlite, in the right order.

The engine tells the journal what happened (entries queued, records done);
the journal batches it into state.sqlite and, only once a batch is committed,
appends its records to the pages file, so a stop at any instant leaves the
two consistent (state.py's invariants 1 and 2).

How a run starts, by mode:
- new crawl: lock, a new state (an unfinished one is refused), fresh pages file;
- --resume: lock, the existing unfinished state, the pages file repaired and
  completed from the state, seen set, pending entries and counters restored;
- --incremental: lock, the existing finished state turned into a new
  generation (every URL pending again, its validators kept), fresh pages file;
- a new crawl and --incremental keep the last pass's files in ``previous/``
  (passes.py); --update is whichever of the three the folder needs.

A member of a shared crawl (--frontier) has no state.sqlite: its frontier
and counters are in Redis, and SharedJournal (shared_journal.py) only writes
its folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from crawler.config import CrawlConfig
from crawler.errors import ConfigError, NothingToDo, OutputFailed
from crawler.output.checks_file import ChecksFile
from crawler.output.files import Output, WriteGuard
from crawler.output.lines import record_from_line
from crawler.output.passes import keep_previous
from crawler.output.report import broken_links
from crawler.output.report_html import write_report
from crawler.output.state import CrawlState, saved_html, unfinished_message
from crawler.records import (
    BrokenLink,
    Completion,
    CrawlStats,
    Entry,
    LinkCheck,
    PageRecord,
    Validators,
)
from crawler.stats import Tally
from crawler.values import RENDER_MODES
from crawler.web.urls import normalize, redact_url

log = logging.getLogger(__name__)

# A batch is committed this long after its first change, or when it is this big:
# after kill -9, --resume fetches again what was in flight and at most this much
# of finished work.
FLUSH_SECONDS = 0.1
FLUSH_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings a crawl keeps for its whole life: a resumed run uses these."""

    seeds: tuple[str, ...]
    allow_domain: tuple[str, ...]
    keep_query_order: bool
    span_hosts: bool = False
    # The hosts a seed list (--input-file) named: in scope as the seeds' hosts are.
    seed_hosts: tuple[str, ...] = ()
    # --render and --render-allow: a crawl that rendered goes on rendering.
    render: str = "never"
    render_allow: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: CrawlConfig) -> Settings:
        # Kept in state.sqlite: a seed's credentials are not (normalising drops them).
        seeds = tuple(redact_url(seed) for seed in config.seeds)
        return cls(
            seeds,
            config.allow_domain,
            config.keep_query_order,
            config.span_hosts,
            config.seed_hosts,
            config.render,
            config.render_allow,
        )

    def applied_to(self, config: CrawlConfig, **more: Any) -> CrawlConfig:
        """``config`` with the crawl's kept settings. Rendering is the stronger of the
        crawl's and this run's: a --resume without --render (as the summary prints
        it) still renders, and a later pass may begin to."""
        kept = asdict(self)
        kept["render"] = max(config.render, self.render, key=RENDER_MODES.index)
        kept["render_allow"] = config.render_allow or self.render_allow
        return replace(config, **kept, **more)


def _refuse_other_seeds(config: CrawlConfig, settings: Settings, folder: Path) -> None:
    """--resume, --incremental or --update given URLs that are not the folder's crawl's:
    one line naming both, never a silent recrawl of the old site."""
    given = {normalize(seed) for seed in config.seeds}
    if not config.seeds or given == {normalize(seed) for seed in settings.seeds}:
        return
    raise ConfigError(
        f"{folder} holds the crawl of {' '.join(settings.seeds)}, not of"
        f" {' '.join(map(redact_url, config.seeds))}: give the crawl of those another"
        " --output (or no URL, to go on with the folder's)"
    )


@dataclass(slots=True)
class Restored:
    """What a resumed or incremental run starts from (the pending entries stay
    in the spill, state.sqlite, and are read as the frontier needs them)."""

    settings: Settings
    seen: Iterable[str] = ()
    pending: int = 0
    pages_done: Iterable[str] = ()
    # Whether the state holds any URL: a resumed crawl with none pending is then
    # done (killed as it finished); with none at all, it starts from its seeds.
    started: bool = False

    def carries_on(self) -> bool:
        """The frontier starts from this state, not from the seeds."""
        return self.pending > 0 or self.started


class Sink(Protocol):
    """Where a crawl's results go: the Journal in one process, a shared crawl's
    folder, or the parent of the front."""

    @property
    def incremental(self) -> bool: ...

    def record(self, record: PageRecord, completion: Completion) -> None: ...

    def done_unrecorded(self, url: str) -> None:
        """A URL done that has no record of its own: a sitemap read, a page skipped by
        --max-pages-per-host."""

    def validators(self, url: str) -> Validators | None: ...

    def note_links(self, page: str, targets: list[str]) -> None: ...

    async def save_html(self, url: str, body: bytes) -> None: ...


class _CheckJournal:
    """crawler check's part of the Journal: its cache of working links, and checks.jsonl."""

    _state: CrawlState | None
    _guard: WriteGuard
    _checks: ChecksFile | None
    output: Output

    def flush(self) -> None: ...

    def cached_check(self, url: str, max_age: float) -> PageRecord | None:
        """crawler check: a working link's record younger than ``max_age`` seconds."""
        assert self._state is not None
        with self._guard:
            return self._state.checks.cached(url, max_age)

    def checked_so_far(self) -> tuple[list[tuple[str, bytes]], list[PageRecord]]:
        """crawler check, resumed: the links of the pages done and the records of this pass."""
        assert self._state is not None
        self.flush()
        with self._guard:
            pages = list(self._state.checks.pages())
            records = [record_from_line(line) for line in self._state.records_after(0)]
        return pages, records

    def write_checks(self, checks: Iterable[LinkCheck]) -> None:
        """A batch of checks.jsonl (the first creates it); broken.jsonl is made of their
        failing results, at finish."""
        with self._guard:
            if self._checks is None:
                self._checks = ChecksFile(self.output.directory)
                self.output.checked = True
            self._checks.write(checks)


class Journal(_CheckJournal):
    """Owns the Output and the CrawlState of one run; every write goes through here."""

    def __init__(self, config: CrawlConfig, tally: Tally) -> None:
        assert config.output_dir is not None
        self._config = config
        self._tally = tally
        self.output = Output(config.output_dir, format=config.format, save_html=config.save_html)
        self._state: CrawlState | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._guard = WriteGuard(self.output.directory)
        self._incremental = config.incremental
        self._checks: ChecksFile | None = None

    @property
    def incremental(self) -> bool:
        """An incremental pass, begun in this run or resumed (the state's generation > 1)."""
        return self._incremental

    def start(self) -> Restored:
        """Lock the folder and open the state for this run's mode."""
        path = self.output.directory / "state.sqlite"
        if (self._config.resume or self._config.incremental) and not path.is_file():
            raise ConfigError(f"no crawl state in {self.output.directory} (no {path.name})")
        self.output.lock()
        try:
            return self._open()
        except BaseException:
            if self._state is not None:
                self._state.close()
            self.output.release()
            raise

    def _open(self) -> Restored:
        path = self.output.directory / "state.sqlite"
        config = self._config
        if not (config.resume or config.incremental):
            settings = Settings.of(config)
            html = saved_html(path, unfinished_message(path))
            # Before the new state: a start killed anywhere leaves the last pass whole.
            keep_previous(self.output.directory, ours=html is not None, html=bool(html))
            self._state = CrawlState.create(path, _as_json(settings))
            self._state.set_meta("save_html", config.save_html)
            self.output.open_pages(append=False)
            self._open_items(append=False)
            return Restored(settings)
        state = self._state = CrawlState.open(path)
        settings = Settings(**_from_json(state.meta("settings")))
        _refuse_other_seeds(config, settings, path.parent)
        finished = state.meta("status") == "finished"
        self._incremental = config.incremental or (state.meta("generation") or 1) > 1
        if config.resume:
            if finished:
                raise NothingToDo(f"the crawl in {path.parent} is finished; nothing to resume")
            written = self.output.open_pages(append=True)
            lines = list(state.records_after(written))
            self.output.write_records([record_from_line(line) for line in lines], lines)
            self.output.write_items(state.items_after(self._open_items(append=True)))
            self.output.restore_broken(state.broken_links())
            self._tally.restore(state.meta("counters") or {})
        else:
            if not finished:
                raise ConfigError(
                    f"the crawl in {path.parent} is not finished: --resume it before --incremental"
                )
            keep_previous(self.output.directory, ours=True, html=False)  # html/ is updated
            state.start_generation()
            self.output.open_pages(append=False)
            self._open_items(append=False)
        return _restored(state, settings)

    def settle(self, config: CrawlConfig) -> Restored:
        """Keep the crawl's settings as the run settled them (a seed list's hosts);
        what the state holds now, to start the frontier from."""
        assert self._state is not None
        settings = Settings.of(config)
        with self._guard:
            self._state.set_meta("settings", _as_json(settings))
        self.flush()
        return _restored(self._state, settings)

    def _open_items(self, *, append: bool) -> int:
        """items.jsonl exists only for crawls with an extractor."""
        return self.output.open_items(append=append) if self._config.extract else 0

    def added(self, entries: Iterable[Entry]) -> None:
        assert self._state is not None
        with self._guard:
            self._state.added(entries)
            self._schedule_flush()

    def record(self, record: PageRecord, completion: Completion) -> None:
        assert self._state is not None
        with self._guard:
            self._state.completed(completion)
            # crawler check's broken links are its failing results (write_checks).
            broken = None if self._config.check else self.output.track(record)
            if broken is not None:
                self._state.broken(broken)
            self._schedule_flush()

    def note_links(self, page: str, targets: list[str]) -> None:
        if not self._config.check:
            self.output.note_links(page, targets)

    async def save_html(self, url: str, body: bytes) -> None:
        with self._guard:
            await self.output.save_html(url, body)

    def done_unrecorded(self, url: str) -> None:
        assert self._state is not None
        with self._guard:
            self._state.completed(Completion(url, None))
            self._schedule_flush()

    def mark(self) -> int:
        """The frontier's Spill: everything queued so far is written; its last position."""
        self.flush()
        assert self._state is not None
        with self._guard:
            return self._state.last_position()

    def load(self, after: int, limit: int) -> list[tuple[int, Entry]]:
        self.flush()
        assert self._state is not None
        with self._guard:
            return self._state.pending_after(after, limit)

    def validators(self, url: str) -> Validators | None:
        assert self._state is not None
        return self._state.validators(url)

    def _schedule_flush(self) -> None:
        assert self._state is not None
        if self._state.buffered() >= FLUSH_BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_later)

    def _flush_later(self) -> None:
        """The timer's flush: a failure is kept by the guard, and the crawl's next
        write raises it (a timer has no one to raise it to)."""
        with contextlib.suppress(OutputFailed):
            self.flush()

    def flush(self) -> None:
        """Commit the batch, then append its records to the pages file."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self._state is not None
        with self._guard:
            committed = self._state.flush(self._tally.counters())
            self.output.write_records(committed.records, committed.lines)
            self.output.write_items(committed.items)

    def finish(self, stats: CrawlStats, *, finished: bool) -> None:
        """The last flush; broken.jsonl and stats.json; the state marked finished or not.
        After a failure to write, only the lock is let go, and the failure raised."""
        try:
            with self._guard:
                broken: Iterable[BrokenLink] = self.output.broken_links()
                if self._checks is not None:
                    self._checks.close()
                    broken = map(_broken_link, broken_links(self.output.directory))
                if self._state is not None:
                    for link in broken:  # a row each, a batch at a time (there may be many)
                        self._state.broken(link)
                        if self._state.buffered() >= FLUSH_BATCH:
                            self.flush()
                    self.flush()
                    self._state.set_meta("status", "finished" if finished else "stopped")
                self.output.finish(stats)
                write_report(self.output.directory)
        finally:
            if self._checks is not None:
                with contextlib.suppress(OSError):
                    self._checks.close()
            if self._state is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._state.close()
                self._state = None
            self.output.release()


def _restored(state: CrawlState, settings: Settings) -> Restored:
    return Restored(
        settings, state.seen(), state.pending_count(), state.pages_done(), state.has_urls()
    )


def _broken_link(line: dict[str, Any]) -> BrokenLink:
    """A line of broken.jsonl (output/report.broken_links) as the state keeps it."""
    referrers = tuple(line["referrers"])
    return BrokenLink(line["url"], line["status"], line["error"], referrers, line["referrer_count"])


def _as_json(settings: Settings) -> dict[str, Any]:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(settings).items()}


def _from_json(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError("state.sqlite holds no crawl settings; it was left untouched")
    return {
        "seeds": tuple(value.get("seeds", ())),
        "allow_domain": tuple(value.get("allow_domain", ())),
        "keep_query_order": bool(value.get("keep_query_order", False)),
        "span_hosts": bool(value.get("span_hosts", False)),
        "seed_hosts": tuple(value.get("seed_hosts", ())),
        "render": value.get("render") if value.get("render") in RENDER_MODES else "never",
        "render_allow": tuple(value.get("render_allow", ())),
    }
