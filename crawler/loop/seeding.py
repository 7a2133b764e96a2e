"""Seed lists: ``--input-file`` (a file, or "-" for standard input) and the library's
``seeds`` given as an iterable that is no list, read into the frontier a batch at a time.

One URL a line; blank lines and lines starting with "#" are skipped. A line that is
no http(s) URL is counted (stats.json ``seeds_skipped``) and the first few are named
in the log, with their line numbers; it never stops the crawl. Lines are read on a
daemon thread, ``BATCH`` at a time, and queued as they are read: the frontier spills
what it does not hold to disk, so a list of millions of URLs costs one batch of
memory, and the set of the hosts it names. Those hosts are in the crawl's scope, as
a URL's host given on the command line is; the run keeps them with its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crawler.config import CrawlConfig
from crawler.escapes import visible
from crawler.offload import in_thread
from crawler.output.journal import Journal, Restored
from crawler.records import Entry, seed_entry
from crawler.stats import Tally
from crawler.web.urls import host_of, normalize

log = logging.getLogger(__name__)

BATCH = 5000
# Bad lines named in the log (all are counted).
NAMED = 5

_Line = tuple[int, Any]


@dataclass(slots=True)
class SeedList:
    """What a seed list gave: the hosts it named, URLs queued, lines skipped, and the
    SHA-256 of its lines (a shared crawl's members compare lists by it)."""

    where: str
    digest: str = ""
    hosts: set[str] = field(default_factory=set)
    queued: int = 0
    skipped: int = 0
    named: list[str] = field(default_factory=list)

    def take(self, number: int, line: Any, *, check: bool) -> Entry | None:
        text = line.strip().lstrip("\ufeff") if isinstance(line, str) else line
        if text == "" or (isinstance(text, str) and text.startswith("#")):
            return None
        url = normalize(text) if isinstance(text, str) else None
        if url is None:
            self.skipped += 1
            if len(self.named) < NAMED:
                shown = visible(text[:200]) if isinstance(text, str) else repr(text)[:200]
                self.named.append(f"{number}: {shown}")
            return None
        self.queued += 1
        self.hosts.add(host_of(url))
        return seed_entry(url, check=check)

    def say(self) -> None:
        log.info("%s: %d seed URLs read, on %d hosts", self.where, self.queued, len(self.hosts))
        if self.skipped:
            more = f" and {self.skipped - len(self.named)} more" if self.skipped > NAMED else ""
            log.warning(
                "%s: %d %s, skipped (line %s%s)",
                self.where,
                self.skipped,
                "line is not an http(s) URL" if self.skipped == 1 else "lines are not http(s) URLs",
                "; line ".join(self.named),
                more,
            )


def has_seed_list(config: CrawlConfig) -> bool:
    return config.input_file is not None or config.seed_stream is not None


def with_seed_hosts(config: CrawlConfig, hosts: Iterable[str]) -> CrawlConfig:
    """``config`` once its seed list is read: its hosts in scope, the list spent."""
    every = tuple(sorted({*config.seed_hosts, *hosts}))
    return dataclasses.replace(config, seed_hosts=every, seed_stream=None, input_file=None)


async def read_seed_list(
    config: CrawlConfig,
    add: Callable[[list[Entry]], Awaitable[object]],
    stopping: Callable[[], bool] = lambda: False,
) -> SeedList:
    """Read the crawl's seed list into ``add``, a batch at a time; what it gave."""
    lines, where, digest = _lines(config)
    seeds = SeedList(where)
    try:
        while not stopping():
            batch = await in_thread(_next_batch, lines)
            if not batch:
                seeds.digest = digest.hexdigest()
                break
            check = config.check
            entries = [e for number, line in batch if (e := seeds.take(number, line, check=check))]
            if entries:
                await add(entries)
    except (OSError, UnicodeError) as error:
        raise OSError(f"{where}: cannot be read: {error}") from None
    finally:
        with contextlib.suppress(ValueError):  # still being read on a thread: left to it
            lines.close()
    seeds.say()
    return seeds


async def read_into_journal(
    config: CrawlConfig,
    journal: Journal,
    restored: Restored | None,
    tally: Tally,
    stopping: Callable[[], bool],
) -> tuple[CrawlConfig, Restored]:
    """The front's parent: the seed list read into the state (with the seeds, for a new
    crawl), which then hands its entries out as a resumed crawl's pending ones; the
    config with the list's hosts, and what the state holds."""
    if restored is None or not restored.carries_on():
        journal.added(seed_entry(url) for url in filter(None, map(normalize, config.seeds)))

    async def add(entries: list[Entry]) -> None:
        journal.added(entries)

    listed = await read_seed_list(config, add, stopping)
    tally.seeds_skipped += listed.skipped
    config = with_seed_hosts(config, listed.hosts)
    return config, journal.settle(config)


async def seed_list_digest(config: CrawlConfig) -> str:
    """The SHA-256 of the crawl's seed list (read whole, queued nowhere), as
    ``read_seed_list`` gives it."""
    lines, where, digest = _lines(config)
    try:
        while await in_thread(_next_batch, lines):
            pass
    except (OSError, UnicodeError) as error:
        raise OSError(f"{where}: cannot be read: {error}") from None
    finally:
        with contextlib.suppress(ValueError):
            lines.close()
    return str(digest.hexdigest())


def _next_batch(lines: Iterator[_Line]) -> list[_Line]:
    return list(itertools.islice(lines, BATCH))


def _lines(config: CrawlConfig) -> tuple[Any, str, Any]:
    """The list's numbered lines, where they come from, and the hash their reading
    feeds."""
    digest = hashlib.sha256()
    if config.seed_stream is not None:
        return _numbered(config.seed_stream, digest), "seeds", digest
    path = config.input_file
    assert path is not None
    if str(path) == "-":
        return _decoded(sys.stdin.buffer, digest, close=False), "standard input", digest
    return _decoded(path.open("rb"), digest, close=True), str(path), digest


def _numbered(items: Iterable[Any], digest: Any) -> Iterator[_Line]:
    for number, item in enumerate(items, start=1):
        digest.update(f"{item}\n".encode("utf-8", "surrogatepass"))
        yield number, item


def _decoded(file: Any, digest: Any, *, close: bool) -> Iterator[_Line]:
    try:
        for number, raw in enumerate(file, start=1):
            digest.update(raw)
            yield number, raw.decode("utf-8", "replace")
    finally:
        if close:
            file.close()
