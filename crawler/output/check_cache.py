"""crawler check's part of state.sqlite: each page's links as checked, and the cache.

A page's links, as the check resolved them, and its anchors are packed into
its row (``urls.refs``): a later pass whose request for the page is answered
304, or a resumed check, knows them without the page. The records of the
links found working are kept in the ``checks`` table with the time they were
checked: a later pass reuses them for --cache-age instead of asking the
site again. A state written before crawler check existed gets both when it
is opened.
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from crawler.errors import ConfigError
from crawler.output.lines import record_from_line, record_line
from crawler.records import Completion, PageRecord


class RefsPacker:
    """A page's links as crawler check resolved them (loop/linkbook.Found rows) and its
    anchors, packed as they come: what a later pass needs when the page answers 304,
    or a resumed one. A page of 225,000 links is never held as one text (33 MB):
    each batch is compressed as it is added."""

    def __init__(self) -> None:
        self._zip = zlib.compressobj(1)
        self._parts = [self._zip.compress(b"[[")]
        self._empty = True

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        listed = orjson.dumps(rows)[1:-1]  # the rows, without the list's brackets
        self._parts.append(self._zip.compress(listed if self._empty else b"," + listed))
        self._empty = False

    def packed(self, anchors: str) -> bytes:
        self._parts += [self._zip.compress(b"]," + orjson.dumps(anchors) + b"]"), self._zip.flush()]
        return b"".join(self._parts)


def pack_refs(rows: Sequence[tuple[Any, ...]], anchors: str) -> bytes:
    """``rows`` and ``anchors`` packed at once (RefsPacker)."""
    packer = RefsPacker()
    packer.add(rows)
    return packer.packed(anchors)


def unpack_refs(blob: bytes) -> tuple[list[list[Any]], str]:
    try:
        rows, anchors = orjson.loads(zlib.decompress(blob))
    except (zlib.error, orjson.JSONDecodeError, ValueError, TypeError):
        raise ConfigError(
            "state.sqlite is corrupt: a page's checked links cannot be read"
        ) from None
    return rows, anchors


class CheckCache:
    """crawler check's part of state.sqlite: the working links' records, reused by
    later passes for --cache-age (the ``checks`` table), and the links of each
    page as checked (``urls.refs``)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def write(self, completions: Iterable[Completion]) -> None:
        """Keep the working links among ``completions`` (in the caller's transaction)."""
        now = time.time()
        self._db.executemany(
            "INSERT OR REPLACE INTO checks VALUES (?, ?, ?)",
            [
                (c.url, record_line(c.record), now)
                for c in completions
                if c.record is not None and c.checked and _cached(c.record)
            ],
        )

    def cached(self, url: str, max_age: float) -> PageRecord | None:
        """A working link's record, if it was checked less than ``max_age`` seconds ago."""
        row = self._db.execute(
            "SELECT record FROM checks WHERE url = ? AND checked_at >= ?",
            (url, time.time() - max_age),
        ).fetchone()
        return record_from_line(row[0]) if row is not None else None

    def pages(self) -> Iterator[tuple[str, bytes]]:
        """The links of every page (and stylesheet) done in this pass, as checked."""
        query = "SELECT url, refs FROM urls WHERE done = 1 AND refs IS NOT NULL"
        yield from self._db.execute(query)


def _cached(record: PageRecord) -> bool:
    """A link checked and found working: a later pass within --cache-age reuses it.
    Only a plain link (HEAD): a stylesheet or a page read for anchors is read again."""
    return (
        record.kind == "link"
        and record.error is None
        and record.status is not None
        and record.status < 400
    )


def add_check_tables(connection: sqlite3.Connection) -> None:
    """A state written before crawler check existed gets its column and table."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(urls)")}
    with connection:
        if "refs" not in columns:
            connection.execute("ALTER TABLE urls ADD COLUMN refs BLOB")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS checks "
            "(url TEXT PRIMARY KEY, record TEXT NOT NULL, checked_at REAL NOT NULL)"
        )
