"""The output directory: lock, pages.jsonl/csv, broken.jsonl, stats.json, html/ mirror.

Layer 2: imports errors, records and urls. Everything a crawl writes lives
inside its output directory; mirror paths are built from sanitised segments
and checked to stay under html/. pages are appended and flushed record by
record, so a crash loses at most the pages in flight.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import aiofiles
import aiofiles.os

from crawler.errors import ConfigError, OutputLocked
from crawler.records import RECORD_FIELDS, BrokenLink, CrawlStats, PageRecord

MAX_REFERRERS = 20
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")
_MAX_SEGMENT = 100
_MAX_DEPTH = 32


class OutputLock:
    """crawl.lock: an OS lock (flock) so a dead owner never blocks; the file names the owner."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "crawl.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        file = self.path.open("a+", encoding="utf-8")
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
        self._csv: Any = None
        self._referrers: dict[str, list[str]] = {}
        self._referrer_counts: dict[str, int] = {}
        self._fine: set[str] = set()
        self._broken: dict[str, PageRecord] = {}
        self._mirrored: dict[PurePosixPath, str] = {}

    @property
    def pages_path(self) -> Path:
        return self.directory / f"pages.{self._format}"

    def open(self) -> None:
        """Create the directory, take the lock, start a fresh pages file."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            message = f"cannot create output folder {self.directory}: {error.strerror}"
            raise ConfigError(message) from None
        self._lock.acquire()
        self._pages = self.pages_path.open("w", encoding="utf-8", newline="")
        if self._format == "csv":
            self._csv = csv.DictWriter(self._pages, fieldnames=RECORD_FIELDS)
            self._csv.writeheader()

    def write(self, record: PageRecord) -> None:
        assert self._pages is not None
        if self._csv is not None:
            self._csv.writerow(record.as_dict())
        else:
            self._pages.write(json.dumps(record.as_dict(), ensure_ascii=False) + "\n")
        self._pages.flush()
        if record.is_broken():
            self._broken[record.url] = record
        else:
            self._fine.add(record.url)
            self._referrers.pop(record.url, None)
            self._referrer_counts.pop(record.url, None)

    def note_links(self, page: str, targets: list[str]) -> None:
        """Remember who links to each URL not yet known to work (for broken.jsonl)."""
        for target in targets:
            if target in self._fine:
                continue
            self._referrer_counts[target] = self._referrer_counts.get(target, 0) + 1
            referrers = self._referrers.setdefault(target, [])
            if len(referrers) < MAX_REFERRERS and page not in referrers:
                referrers.append(page)

    def broken_links(self) -> list[BrokenLink]:
        return [
            BrokenLink(
                url,
                record.status,
                record.error,
                tuple(self._referrers.get(url, ())),
                self._referrer_counts.get(url, 0),
            )
            for url, record in self._broken.items()
        ]

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
        try:
            await aiofiles.os.makedirs(target.parent, exist_ok=True)
            async with aiofiles.open(target, "wb") as file:
                await file.write(body)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            digest = hashlib.sha1(url.encode("utf-8")).hexdigest()
            fallback = root / relative.parts[0] / "_collisions" / f"{digest}.html"
            await aiofiles.os.makedirs(fallback.parent, exist_ok=True)
            async with aiofiles.open(fallback, "wb") as file:
                await file.write(body)

    def finish(self, stats: CrawlStats) -> None:
        """Write broken.jsonl and stats.json, close pages, release the lock."""
        if self._pages is not None:
            self._pages.close()
            self._pages = None
        with (self.directory / "broken.jsonl").open("w", encoding="utf-8") as file:
            for link in self.broken_links():
                file.write(json.dumps(dataclasses.asdict(link), ensure_ascii=False) + "\n")
        stats_path = self.directory / "stats.json"
        stats_path.write_text(json.dumps(dataclasses.asdict(stats), indent=2) + "\n")
        self._lock.release()
