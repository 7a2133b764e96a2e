"""state.sqlite: the crawl's durable state, so that any stop can be resumed.

stdlib sqlite3 in WAL mode;
every change is buffered and written in one transaction per batch, so the
cost per page stays small and the event loop is held for a few milliseconds
at most.

What it holds: every URL seen (the seen set), whether each is done (the
pending frontier is what is not), its depth, referrer and kind; for pages
done, the validators of the last answer (ETag, Last-Modified, a content
hash) and its in-scope links (for --incremental); the records themselves in
completion order (pages.jsonl is written from them after each commit, and
repaired from them on --resume); the referrers of broken links; the crawl's
settings and counters; for crawler check, each page's links as checked and the
working links' records (check_cache.py).

Invariants:
1. A record and the links of its page are committed in the same transaction:
   after any stop, a page is either done with all its links queued, or not
   done (and fetched again on --resume).
2. pages.jsonl never holds a record that is not committed here; on --resume
   the records it lacks are appended from here.
3. A file that is not ours (application_id), of another schema version, or
   corrupt is never written to: ConfigError, exit 2.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.errors import ConfigError
from crawler.output.check_cache import CheckCache, add_check_tables
from crawler.output.lines import item_line, record_line
from crawler.records import BrokenLink, Completion, Entry, PageRecord, Validators

APPLICATION_ID = 0x63726177  # "craw"
SCHEMA_VERSION = 1
# The failed pages of the last pass, forgotten by the seen set (they come back only
# if linked): a page failing two nights running is not "new" the second.
# Links of a page compressed at a time (pack_links).
_PACK_BATCH = 5000
_LAST_FAILED = "CREATE TABLE IF NOT EXISTS last_failed (url TEXT PRIMARY KEY, status INTEGER);"
_SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE urls (
    url TEXT NOT NULL UNIQUE,
    depth INTEGER NOT NULL,
    referrer TEXT,
    kind TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    previous_status INTEGER,
    etag TEXT,
    last_modified TEXT,
    content_hash TEXT,
    links BLOB,
    refs BLOB
);
CREATE TABLE checks (url TEXT PRIMARY KEY, record TEXT NOT NULL, checked_at REAL NOT NULL);
CREATE TABLE records (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE items (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE broken (
    url TEXT PRIMARY KEY,
    status INTEGER,
    error TEXT,
    referrers TEXT NOT NULL,
    referrer_count INTEGER NOT NULL
);
"""
    + _LAST_FAILED
)


def pack_links(links: Sequence[str]) -> bytes | None:
    """A page's links as stored. For a few KB of URLs, most of zlib's cost is setting
    up its tables: a 512-byte window (wbits 9), small tables (memLevel 2) and level 1
    compress 25 links as small as the defaults do (202 bytes against 198) in a
    quarter of the time (6.6 us against 25); zlib.decompress reads any. A page of many
    links is compressed _PACK_BATCH at a time, never held as one text."""
    if not links:
        return None
    packer = zlib.compressobj(1, zlib.DEFLATED, 9, 2)
    parts = []
    for start in range(0, len(links), _PACK_BATCH):
        text = "\n".join(links[start : start + _PACK_BATCH])
        parts.append(packer.compress((text if not start else "\n" + text).encode("utf-8")))
    parts.append(packer.flush())
    return b"".join(parts)


def _unpack_links(blob: bytes | None) -> tuple[str, ...]:
    return tuple(zlib.decompress(blob).decode("utf-8").split("\n")) if blob else ()


@dataclass(frozen=True, slots=True)
class Committed:
    """What one flush committed: its records (and their JSON lines), its items' lines."""

    records: list[PageRecord]
    lines: list[str]
    items: list[str]


class CrawlState:
    """One output folder's state.sqlite."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._added: list[tuple[str, int, str | None, str]] = []
        self.checks = CheckCache(connection)
        self._completed: list[Completion] = []
        self._broken: dict[str, BrokenLink] = {}

    @classmethod
    def create(cls, path: Path, settings: dict[str, Any]) -> CrawlState:
        """A new state for a new crawl; an unfinished or foreign one is never replaced."""
        cls.remove_finished(path, unfinished_message(path))
        _refuse_symlink(path)
        connection = sqlite3.connect(path, isolation_level="DEFERRED")
        _configure(connection)
        with connection:
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.executescript(_SCHEMA)
        state = cls(connection, path)
        state.set_meta("settings", settings)
        state.set_meta("status", "running")
        state.set_meta("generation", 1)
        return state

    @classmethod
    def remove_finished(cls, path: Path, unfinished: str) -> None:
        """Delete the state at ``path`` if its crawl is finished; ConfigError(``unfinished``)
        if it is not."""
        if saved_html(path, unfinished) is None:
            return
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    @classmethod
    def open(cls, path: Path) -> CrawlState:
        """The existing state at ``path``; ConfigError if missing, foreign or corrupt."""
        if not path.is_file():
            raise ConfigError(f"no crawl state in {path.parent} (no {path.name})")
        _refuse_symlink(path)
        try:
            connection = sqlite3.connect(path, isolation_level="DEFERRED")
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if application_id != APPLICATION_ID:
                connection.close()
                raise ConfigError(f"{path} is not a crawler state file; it was left untouched")
            if version != SCHEMA_VERSION:
                connection.close()
                raise ConfigError(f"{path} has state version {version}, expected {SCHEMA_VERSION}")
            connection.execute("SELECT count(*) FROM meta").fetchone()
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            _configure(connection)
            if check == "ok":
                add_check_tables(connection)
                with connection:
                    connection.execute(_LAST_FAILED)
        except sqlite3.DatabaseError as error:
            raise ConfigError(f"{path} is corrupt ({error}); it was left untouched") from None
        if check != "ok":
            connection.close()
            raise ConfigError(f"{path} is corrupt ({check}); it was left untouched")
        return cls(connection, path)

    def close(self) -> None:
        self._db.close()

    def meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._db:
            self._write_meta(key, value)

    def _write_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def added(self, entries: Iterable[Entry]) -> None:
        """Entries the frontier took in (new to the seen set); written at the next flush."""
        self._added.extend((e.url, e.depth, e.referrer, e.kind) for e in entries)

    def completed(self, completion: Completion) -> None:
        self._completed.append(completion)

    def broken(self, link: BrokenLink) -> None:
        self._broken[link.url] = link

    def buffered(self) -> int:
        return len(self._added) + len(self._completed) + len(self._broken)

    def flush(self, counters: dict[str, Any]) -> Committed:
        """Commit everything buffered in one transaction; return its records and items."""
        records = [c.record for c in self._completed if c.record is not None]
        lines = [record_line(record) for record in records]
        items = [item_line(item) for c in self._completed for item in c.items]
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO urls (url, depth, referrer, kind) VALUES (?, ?, ?, ?)",
                self._added,
            )
            self._db.executemany(
                "UPDATE urls SET done = 1, status = ?, etag = ?, last_modified = ?, "
                "content_hash = ?, links = ?, refs = ? WHERE url = ?",
                [
                    (c.status, c.etag, c.last_modified, c.content_hash, c.links, c.refs, c.url)
                    for c in self._completed
                ],
            )
            self.checks.write(self._completed)
            self._db.executemany("INSERT INTO records (json) VALUES (?)", [(r,) for r in lines])
            self._db.executemany("INSERT INTO items (json) VALUES (?)", [(i,) for i in items])
            self._db.executemany(
                "INSERT OR REPLACE INTO broken VALUES (?, ?, ?, ?, ?)",
                [
                    (b.url, b.status, b.error, json.dumps(b.referrers), b.referrer_count)
                    for b in self._broken.values()
                ],
            )
            self._write_meta("counters", counters)
        self._added.clear()
        self._completed.clear()
        self._broken.clear()
        return Committed(records, lines, items)

    def seen(self) -> Iterator[str]:
        for (url,) in self._db.execute("SELECT url FROM urls"):
            yield url

    def pages_done(self) -> Iterator[str]:
        """The pages done (and those skipped by --max-pages-per-host)."""
        for (url,) in self._db.execute("SELECT url FROM urls WHERE done = 1 AND kind = 'page'"):
            yield url

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM urls WHERE done = 0").fetchone()[0])

    def has_urls(self) -> bool:
        return self._db.execute("SELECT 1 FROM urls LIMIT 1").fetchone() is not None

    def last_position(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(rowid), 0) FROM urls").fetchone()[0])

    def pending_after(self, position: int, limit: int) -> list[tuple[int, Entry]]:
        """Entries not done, queued after ``position``, in the order they were queued."""
        rows = self._db.execute(
            "SELECT rowid, url, depth, referrer, kind FROM urls "
            "WHERE rowid > ? AND done = 0 ORDER BY rowid LIMIT ?",
            (position, limit),
        )
        return [
            (row, Entry(url, depth, referrer, kind=kind))
            for row, url, depth, referrer, kind in rows
        ]

    def records_after(self, count: int) -> Iterator[str]:
        query = "SELECT json FROM records ORDER BY seq LIMIT -1 OFFSET ?"
        for (record,) in self._db.execute(query, (count,)):
            yield record

    def items_after(self, count: int) -> Iterator[str]:
        query = "SELECT json FROM items ORDER BY seq LIMIT -1 OFFSET ?"
        for (item,) in self._db.execute(query, (count,)):
            yield item

    def broken_links(self) -> Iterator[BrokenLink]:
        query = "SELECT url, status, error, referrers, referrer_count FROM broken"
        for url, status, error, referrers, count in self._db.execute(query):
            yield BrokenLink(url, status, error, tuple(json.loads(referrers)), count)

    def validators(self, url: str) -> Validators | None:
        row = self._db.execute(
            "SELECT previous_status, etag, last_modified, content_hash, links, refs "
            "FROM urls WHERE url = ? AND previous_status IS NOT NULL",
            (url,),
        ).fetchone()
        if row is not None:
            return Validators(row[0], row[1], row[2], row[3], _unpack_links(row[4]), row[5])
        row = self._db.execute("SELECT status FROM last_failed WHERE url = ?", (url,)).fetchone()
        return None if row is None else Validators(row[0], None, None, None, ())

    def start_generation(self) -> None:
        """--incremental: every URL pending again, its last status kept; a failed page
        (not a seed) is forgotten: it comes back only if the new pass links to it."""
        with self._db:
            for statement in _NEW_GENERATION:
                self._db.execute(statement)
            self._write_meta("generation", (self.meta("generation") or 1) + 1)
            self._write_meta("status", "running")
            self._write_meta("counters", None)


_NEW_GENERATION = (
    # Links only checked are forgotten: those still linked come back with the pages
    # that link to them (the checks table answers for the working ones).
    "DELETE FROM urls WHERE kind IN ('link', 'anchors', 'stylesheet')",
    # A failed page (no answer, or 4xx/5xx) that is not a seed: a link that is gone
    # is not reported broken again from the last pass's referrer.
    "DELETE FROM last_failed",
    "INSERT INTO last_failed SELECT url, status FROM urls WHERE kind = 'page' AND depth > 0 "
    "AND done = 1 AND (status IS NULL OR status >= 400)",
    "DELETE FROM urls WHERE kind = 'page' AND depth > 0 AND done = 1 "
    "AND (status IS NULL OR status >= 400)",
    "UPDATE urls SET previous_status = status, status = NULL, done = 0 "
    "WHERE done = 1 AND kind = 'page'",
    "UPDATE urls SET done = 0",
    "DELETE FROM records",
    "DELETE FROM items",
    "DELETE FROM broken",
)


def saved_html(path: Path, unfinished: str) -> bool | None:
    """Whether the finished crawl whose state is at ``path`` wrote html/ (a state from
    before that was kept: yes); None if there is none; ConfigError(``unfinished``) if
    it is not finished (an unfinished crawl is never overwritten)."""
    if not path.exists():
        return None
    existing = CrawlState.open(path)
    finished, saved = existing.meta("status") == "finished", existing.meta("save_html")
    existing.close()
    if not finished:
        raise ConfigError(unfinished)
    return saved is None or bool(saved)


def unfinished_message(path: Path) -> str:
    return (
        f"{path.parent} holds an unfinished crawl: continue it with --resume, "
        f"or remove {path} to start over"
    )


def _refuse_symlink(path: Path) -> None:
    """state.sqlite (and its -wal, -shm) are never opened through a symlink."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.is_symlink():
            raise ConfigError(
                f"{name} is a symlink: the crawler writes nothing through one; remove it"
            )


def _configure(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode = WAL")
    # WAL + NORMAL: a process crash loses nothing committed; a power loss may
    # lose the last transactions but never corrupts the file (sqlite.org/wal.html).
    connection.execute("PRAGMA synchronous = NORMAL")
    # The log is copied into the file every 10,000 pages (40 MB) written to it, not
    # every 1,000: a crawl's batches touch the same pages of the URL index again and
    # again, and each copy is written once per checkpoint (and synced). Committing a
    # batch went from 20 to 11 us a page.
    connection.execute("PRAGMA wal_autocheckpoint = 10000")
