"""What crosses between the front's parent and its child processes, and who owns what.

Both sides import this module and neither imports the other: the parent
(parent.py) never loads the engine or aiohttp, whose import would delay
every child's start. Entries, records and completions cross the channel as
plain tuples of their fields in order, which pickle several times faster
than the frozen dataclasses; an extractor's items cross as their JSON lines
(output/lines.py), so whatever an item holds, it crosses.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crawler.config import CrawlConfig
from crawler.output.lines import item_line
from crawler.records import Completion, Entry, PageRecord
from crawler.web.urls import host_of, owner_of, url_owner

# Ctrl-C and SIGTERM, which systemd and timeout send the whole process group: the
# children ignore them, from birth, and leave them to the parent.
PARENTS_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})

# Counters only the children see (records are counted by the parent).
CHILD_COUNTS = (
    "retries",
    "offsite_links",
    "dropped_links",
    "excluded_links",
    "sitemaps",
    "sitemap_urls",
    "budget_skipped",
    "browser_restarts",
)


def owner(url: str, processes: int, *, split: bool = False) -> int:
    """The process that owns the URL: by its host name (every port of it, as scope
    does), or by the whole URL when the front splits a single host's URLs."""
    if split:
        return url_owner(url, processes)
    return owner_of(host_of(url), processes)


@dataclass(frozen=True)
class ChildSpec:
    """Everything a child process needs; picklable for the spawn start method."""

    config: CrawlConfig
    index: int
    processes: int
    # A single-host crawl: URLs are split between processes, politeness shared.
    split: bool = False


_entry_row = operator.attrgetter(*(f.name for f in dataclasses.fields(Entry)))
_record_row = operator.attrgetter(*(f.name for f in dataclasses.fields(PageRecord)))
# A completion's fields after its record (which crosses as its own row) and its items.
_COMPLETION_REST = tuple(f.name for f in dataclasses.fields(Completion))[3:]
_completion_rest = operator.attrgetter(*_COMPLETION_REST)


def pack_entries(entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    return [_entry_row(entry) for entry in entries]


def unpack_entries(rows: Iterable[tuple[Any, ...]]) -> list[Entry]:
    return [Entry(*row) for row in rows]


def pack_record(record: PageRecord, completion: Completion) -> tuple[Any, ...]:
    """A "record" message: the record, the completion's items and its other fields."""
    items = tuple(item_line(item) for item in completion.items)
    return ("record", _record_row(record), items, _completion_rest(completion))


def unpack_record(message: tuple[Any, ...]) -> tuple[PageRecord, Completion]:
    record = PageRecord(*message[1])
    items = tuple(json.loads(line) for line in message[2])
    return record, Completion(record.url, record, items, *message[3])


def share(total: int, index: int, count: int) -> int:
    """Process ``index``'s share of ``total`` among ``count`` (at least one): of
    --concurrency, which is the total; of --max-pages-per-host when one host's pages
    are split between the processes."""
    return max(1, total // count + (index < total % count))
