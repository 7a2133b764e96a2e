"""The output directory: lock, pages.jsonl/csv, broken.jsonl, stats.json, html/ mirror.

Everything a crawl writes lives
inside its output directory; mirror paths are built from sanitised segments
and checked to stay under html/. pages are appended and flushed record by
record, so a crash loses at most the pages in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import aiofiles

from crawler.errors import ConfigError, OutputFailed, OutputLocked
from crawler.output.lines import csv_row, record_line
from crawler.output.links import LinkIndex
from crawler.records import RECORD_FIELDS, BrokenLink, CrawlStats, PageRecord

log = logging.getLogger(__name__)
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")
_MAX_SEGMENT = 100
_MAX_DEPTH = 32


# What one pass over the site writes (state.sqlite carries on: it is the crawl).
# The last pass's files, and the folders a new pass's start moves them through.
PREVIOUS = "previous"
STAGING = "previous.next"
RETIRED = "previous.old"
PASS_FILES = (
    "pages.jsonl",
    "pages.csv",
    "items.jsonl",
    "broken.jsonl",
    "checks.jsonl",
    "stats.json",
    "report.html",
)
# Every name the crawl writes at the top of its output folder.
OUTPUT_NAMES = (
    *PASS_FILES,
    "state.sqlite",
    "state.sqlite-wal",
    "state.sqlite-shm",
    "frontier.json",
    "html",
    PREVIOUS,
    STAGING,
    RETIRED,
)


class OutputLock:
    """crawl.lock: an OS lock (flock) so a dead owner never blocks; the file names the owner."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "crawl.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            file = open_nofollow(self.path, "a+", encoding="utf-8")
        except OSError as error:
            folder = self.path.parent
            raise ConfigError(f"cannot write to output folder {folder}: {error.strerror}") from None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = file.read().strip() or "another process"
            file.close()
            raise OutputLocked(f"{self.path.parent} is in use by {owner}") from None
        file.seek(0)
        file.truncate()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        file.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_OPEN_FLAGS = {
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "rb+": os.O_RDWR,
}


def open_nofollow(path: Path, mode: str, **options: Any) -> IO[Any]:
    """Open a file of the output folder, never through a symlink: one planted there
    (pages.jsonl -> ~/.bashrc) is refused, with one line, not written through."""
    try:
        descriptor = os.open(path, _OPEN_FLAGS[mode] | os.O_NOFOLLOW, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(
                f"{path} is a symlink: the crawler writes nothing through one; remove it"
            ) from None
        raise
    return os.fdopen(descriptor, mode, **options)


class WriteGuard:
    """Turns a failure to write the output folder or the state (a full disk, an I/O
    error) into OutputFailed, said once in one line; every later write raises it
    again, so the crawl stops with what was committed kept."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.failure: OutputFailed | None = None

    def __enter__(self) -> None:
        """``with guard:`` around each write (a class, not a generator: it is entered
        for every page)."""
        if self.failure is not None:
            raise self.failure

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(error, OSError | sqlite3.Error):
            return
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        self.failure = OutputFailed(
            f"cannot write the crawl in {self._directory}: {reason}; what was committed"
            " is kept: --resume continues once that is fixed"
        )
        raise self.failure from None


class _SymlinkPlanted(Exception):
    """A folder of the mirror is a symlink (someone planted it): nothing goes through."""


def _create_nofollow(directory: Path, parts: tuple[str, ...]) -> int:
    """Create ``directory/parts...`` for writing, each folder made or opened relative to
    its parent's descriptor with O_NOFOLLOW, so no symlink, planted before or during
    the crawl, leads the write outside the output folder."""
    nofollow_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    folder = os.open(directory, nofollow_dir)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=folder)
            try:
                inner = os.open(part, nofollow_dir, dir_fd=folder)
            except OSError:
                if stat.S_ISLNK(os.stat(part, dir_fd=folder, follow_symlinks=False).st_mode):
                    raise _SymlinkPlanted(part) from None
                raise
            os.close(folder)
            folder = inner
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            return os.open(parts[-1], flags, 0o666, dir_fd=folder)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise _SymlinkPlanted(parts[-1]) from None
            raise
    finally:
        os.close(folder)


def write_file(path: Path, text: str) -> None:
    """Replace a file of the output folder (never through a symlink)."""
    with open_nofollow(path, "w", encoding="utf-8") as file:
        file.write(text)


def _safe_segment(segment: str) -> str:
    cleaned = "".join(char if char in _SAFE_CHARS else "_" for char in segment)
    if cleaned != segment or cleaned.startswith(".") or len(cleaned) > _MAX_SEGMENT:
        digest = hashlib.sha1(segment.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"{cleaned.lstrip('.')[:_MAX_SEGMENT]}~{digest}"
    return cleaned


def mirror_path(url: str) -> PurePosixPath:
    """A relative path under html/ for ``url``: <host>/<path>, every segment sanitised.

    Decoded dot segments, slashes, NUL bytes and long names cannot escape or
    collide: a segment that had to change carries a hash of what it was, and a
    query string adds a hash of itself to the file name.
    """
    parts = urlsplit(url)
    segments = [unquote(segment) for segment in parts.path.split("/")[1:]] or [""]
    *folders, name = segments
    name = name or "index.html"
    if parts.query:
        name = f"{name}?{parts.query}"
    host = _safe_segment(parts.netloc.replace(":", "_"))
    return PurePosixPath(host, *(_safe_segment(folder) for folder in folders), _safe_segment(name))


class Output:
    """The files of one crawl in ``directory``."""

    def __init__(self, directory: Path, *, format: str, save_html: bool) -> None:
        self.directory = directory
        self._format = format
        self._save_html = save_html
        self._lock = OutputLock(directory)
        self._pages: IO[str] | None = None
        self._items: IO[str] | None = None
        self._csv: Any = None
        self.links = LinkIndex()
        # crawler check: broken.jsonl is its failing results, written with checks.jsonl.
        self.checked = False
        self._mirrored: dict[PurePosixPath, str] = {}

    @property
    def pages_path(self) -> Path:
        return self.directory / f"pages.{self._format}"

    def lock(self) -> None:
        """Create the directory and take its lock (OutputLocked if another run has it)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            message = f"cannot create output folder {self.directory}: {error.strerror}"
            raise ConfigError(message) from None
        self._lock.acquire()
        try:
            self._refuse_symlinks()
        except BaseException:
            self._lock.release()
            raise

    def _refuse_symlinks(self) -> None:
        """Nothing the crawl writes may be a symlink, checked before anything is written
        (each file is also opened with O_NOFOLLOW, and the mirror's folders too)."""
        for name in OUTPUT_NAMES:
            path = self.directory / name
            if path.is_symlink():
                raise ConfigError(
                    f"{path} is a symlink: the crawler writes nothing through one; remove it"
                )

    def open_items(self, *, append: bool) -> int:
        """Open items.jsonl; return how many items it holds (a torn last line cut)."""
        path = self.directory / "items.jsonl"
        if not append or not path.exists():
            self._items = open_nofollow(path, "w", encoding="utf-8")
            return 0
        complete = _cut_torn_line(path)
        self._items = open_nofollow(path, "a", encoding="utf-8")
        return complete

    def write_items(self, lines: Iterable[str]) -> None:
        if self._items is None:
            return
        for line in lines:
            self._items.write(line + "\n")
        self._items.flush()

    def open_pages(self, *, append: bool) -> int:
        """Open the pages file; return how many records it holds.

        Appending first cuts a torn last line (a crash mid-write) back to the
        last complete one.
        """
        path = self.pages_path
        if not append or not path.exists():
            self._pages = open_nofollow(path, "w", encoding="utf-8", newline="")
            if self._format == "csv":
                self._csv = csv.DictWriter(self._pages, fieldnames=RECORD_FIELDS)
                self._csv.writeheader()
                self._pages.flush()
            return 0
        complete = _cut_torn_line(path)
        self._pages = open_nofollow(path, "a", encoding="utf-8", newline="")
        if self._format == "csv":
            self._csv = csv.DictWriter(self._pages, fieldnames=RECORD_FIELDS)
            return max(complete - 1, 0)
        return complete

    def write_records(
        self, records: Sequence[PageRecord], lines: Sequence[str] | None = None
    ) -> None:
        """Append records: JSON lines (``lines``, when state.sqlite has made them
        already, else made here), or CSV rows of the same fields."""
        assert self._pages is not None
        if self._csv is not None:
            self._csv.writerows(csv_row(record) for record in records)
        else:
            if lines is None:
                lines = [record_line(record) for record in records]
            self._pages.writelines(line + "\n" for line in lines)
        self._pages.flush()

    def track(self, record: PageRecord) -> BrokenLink | None:
        return self.links.track(record)

    def restore_broken(self, links: Iterable[BrokenLink]) -> None:
        self.links.restore(links)

    def note_links(self, page: str, targets: list[str]) -> None:
        self.links.note(page, targets)

    def broken_links(self) -> list[BrokenLink]:
        return self.links.broken_links()

    async def save_html(self, url: str, body: bytes) -> None:
        """Mirror ``body`` under html/; a path taken by another URL falls back to a hashed name."""
        if not self._save_html:
            return
        root = self.directory / "html"
        relative = mirror_path(url)
        if self._mirrored.get(relative, url) != url or len(relative.parts) > _MAX_DEPTH:
            digest = hashlib.sha1(url.encode("utf-8")).hexdigest()
            relative = PurePosixPath(relative.parts[0], "_collisions", f"{digest}.html")
        target = root.joinpath(*relative.parts)
        if os.path.commonpath([root, target]) != str(root):
            raise AssertionError(f"mirror path escaped the output folder: {target}")
        self._mirrored[relative] = url
        parts = ("html", *relative.parts)
        try:
            descriptor = await asyncio.to_thread(_create_nofollow, self.directory, parts)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            digest = hashlib.sha1(url.encode("utf-8")).hexdigest()
            parts = ("html", relative.parts[0], "_collisions", f"{digest}.html")
            descriptor = await asyncio.to_thread(_create_nofollow, self.directory, parts)
        except _SymlinkPlanted as planted:
            log.warning("not mirrored: %s is a symlink, never written through", planted)
            return
        async with aiofiles.open(descriptor, "wb") as file:
            await file.write(body)

    def finish(self, stats: CrawlStats) -> None:
        """Write broken.jsonl and stats.json, close the pages file."""
        for file in (self._pages, self._items):
            if file is not None:
                file.close()
        self._pages = self._items = None
        if not self.checked:
            with open_nofollow(self.directory / "broken.jsonl", "w", encoding="utf-8") as file:
                file.writelines(map(broken_line, self.broken_links()))
        stats_path = self.directory / "stats.json"
        write_file(stats_path, json.dumps(dataclasses.asdict(stats), indent=2) + "\n")

    def release(self) -> None:
        self._lock.release()


def broken_line(link: BrokenLink) -> str:
    """broken.jsonl's line for ``link``."""
    return json.dumps(dataclasses.asdict(link), ensure_ascii=False) + "\n"


def _cut_torn_line(path: Path) -> int:
    """Truncate ``path`` after its last newline; return the number of complete lines."""
    with open_nofollow(path, "rb+") as file:
        data: bytes = file.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            file.truncate(end)
    return data.count(b"\n", 0, end)
