"""The output folder of one member of a shared crawl (``--frontier``).

Its frontier and the crawl's counters live in Redis, so there is no
state.sqlite here: records are appended as their leases' acks hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crawler.config import CrawlConfig
from crawler.output.files import Output, WriteGuard, write_file
from crawler.output.lines import item_line
from crawler.output.passes import keep_previous
from crawler.output.report_html import write_report
from crawler.output.state import CrawlState
from crawler.records import Completion, CrawlStats, PageRecord, Validators


class SharedJournal:
    """The output folder of one member of a shared crawl (``--frontier``): the Sink.

    The frontier and the crawl's counters live in Redis, so there is no
    state.sqlite: each record is appended to pages.jsonl (and flushed) as soon
    as its lease's ack holds in Redis, so a visit whose lease had expired (its
    URL went to another visit) writes nothing. A member killed in the moment
    between an ack and its write loses that record only (its page is acked).
    ``frontier.json`` names the crawl the folder holds: the same crawl again
    (a member restarted, --resume) appends; another one starts the files over.
    """

    MARKER = "frontier.json"

    def __init__(self, config: CrawlConfig) -> None:
        assert config.output_dir is not None
        self._config = config
        self.output = Output(config.output_dir, format=config.format, save_html=config.save_html)
        self._guard = WriteGuard(self.output.directory)

    @property
    def incremental(self) -> bool:
        return False

    def start(self, frontier: str, crawl_id: str) -> None:
        self.output.lock()
        try:
            directory = self.output.directory
            marker = directory / self.MARKER
            ours = marker.is_file() or (directory / "state.sqlite").is_file()
            self._refuse_local_crawl()
            identity = {"frontier": frontier, "crawl": crawl_id}
            same = marker.is_file() and _read_marker(marker) == identity
            if not same:
                keep_previous(directory, ours=ours, html=ours and self._config.save_html)
            self.output.open_pages(append=same)
            if self._config.extract:
                self.output.open_items(append=same)
            write_file(marker, json.dumps(identity) + "\n")
        except BaseException:
            self.output.release()
            raise

    def _refuse_local_crawl(self) -> None:
        """An unfinished crawl of the folder's own is never overwritten; a finished one is."""
        CrawlState.remove_finished(
            self.output.directory / "state.sqlite",
            f"{self.output.directory} holds an unfinished crawl of its own: --resume it, "
            "or give the shared crawl another --output",
        )

    def record(self, record: PageRecord, completion: Completion) -> None:
        with self._guard:
            self.output.write_records([record])
            self.output.write_items([item_line(item) for item in completion.items])
        self.output.track(record)

    def done_unrecorded(self, url: str) -> None:
        pass

    def validators(self, url: str) -> Validators | None:
        return None

    def note_links(self, page: str, targets: list[str]) -> None:
        self.output.note_links(page, targets)

    async def save_html(self, url: str, body: bytes) -> None:
        with self._guard:
            await self.output.save_html(url, body)

    def finish(self, stats: CrawlStats) -> None:
        try:
            with self._guard:
                self.output.finish(stats)
                write_report(self.output.directory)
        finally:
            self.output.release()


def _read_marker(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
