"""crawler check's ledger: for each URL linked to or requested, who links to it and its record.

A URL gets an id (its place in the ledger), and what is known of it is kept
in columns by id (arrays of small numbers; kinds, categories and errors by
their code in a small vocabulary, 16 bits), not as an object each: a link
costs its URL, its place in a dict and 25 bytes of columns (480 bytes as
objects). Where a record ended is kept only when that is not the URL itself.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from crawler.records import PageRecord, Referrer

# No page: a URL only requested (a redirect's hop, a seed) has no referrer of its own.
_NONE = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Result:
    """A URL's record, as the check judges it."""

    status: int | None
    error: str | None
    final_url: str | None
    redirects: int
    kind: str
    referrer: str | None
    # A 304 to the pass's conditional request: the page as the last pass read it.
    unchanged: bool


class Ledger:
    """Every URL of one check by id: its links (the first one's kind and category,
    every page and line) and its record."""

    def __init__(self) -> None:
        self._pages: list[str] = []
        self._page_ids: dict[str, int] = {}
        self._names: list[str | None] = [None]
        self._codes: dict[str | None, int] = {None: 0}
        self._ids: dict[str, int] = {}
        # Its first referrer (page id, line; _NONE: none yet), and what links there.
        self._first_page = array("I")
        self._first_line = array("I")
        # Codes (the words' places in _names) and statuses: 16 bits.
        self._kind = array("H")
        self._category = array("H")
        # Its other referrers, page id and line pairs.
        self._more: dict[int, array[int]] = {}
        # Its record (kind 0: none yet), the page that led to it (a page id or _NONE).
        self._status = array("H")
        self._error = array("H")
        self._redirects = array("H")
        self._record_kind = array("H")
        self._referrer = array("I")
        # Where it ended: a URL of its own only when that is another (1: itself).
        self._final: dict[int, str] = {}
        self._final_itself = bytearray()
        self._unchanged: set[int] = set()

    def page_id(self, page: str) -> int:
        page_id = self._page_ids.get(page)
        if page_id is None:
            page_id = self._page_ids[page] = len(self._pages)
            self._pages.append(page)
        return page_id

    def link(self, key: str, page_id: int, line: int, kind: str, category: str) -> None:
        """``key`` is linked from a page (its id), on ``line``."""
        link_id = self._id(key)
        if self._first_page[link_id] == _NONE:
            self._first_page[link_id] = page_id
            self._first_line[link_id] = line
            self._kind[link_id] = self._code(kind)
            if category != "url":
                self._category[link_id] = self._code(category)
        else:
            self._more.setdefault(link_id, array("I")).extend((page_id, line))

    def record(self, record: PageRecord) -> None:
        record_id = self._id(record.url)
        self._status[record_id] = min(record.status or 0, 0xFFFF)
        self._error[record_id] = self._code(record.error)
        self._redirects[record_id] = min(record.redirects, 0xFFFF)
        self._record_kind[record_id] = self._code(record.kind)
        referrer = record.referrer
        self._referrer[record_id] = _NONE if referrer is None else self.page_id(referrer)
        final = record.final_url
        self._final_itself[record_id] = final == record.url
        if final is not None and final != record.url:
            self._final[record_id] = final
        else:
            self._final.pop(record_id, None)
        if record.status == 304 and record.change == "unchanged":
            self._unchanged.add(record_id)
        else:
            self._unchanged.discard(record_id)

    def urls(self) -> Iterator[str]:
        """Every URL: those linked to first, then those only requested."""
        linked = self._first_page
        yield from (key for key, key_id in self._ids.items() if linked[key_id] != _NONE)
        yield from (key for key, key_id in self._ids.items() if linked[key_id] == _NONE)

    def result(self, key: str | None) -> tuple[int, Result] | None:
        """The record of ``key`` (and its id), if one came."""
        record_id = self._ids.get(key) if key is not None else None
        if record_id is None or not self._record_kind[record_id]:
            return None
        referrer = self._referrer[record_id]
        return record_id, Result(
            self._status[record_id] or None,
            self._names[self._error[record_id]],
            key if self._final_itself[record_id] else self._final.get(record_id),
            self._redirects[record_id],
            self._names[self._record_kind[record_id]] or "link",
            None if referrer == _NONE else self._pages[referrer],
            record_id in self._unchanged,
        )

    def first_link(self, key: str) -> tuple[str | None, str | None]:
        """The kind and category of the first link to ``key`` (None, None: no link)."""
        key_id = self._ids.get(key)
        if key_id is None:
            return None, None
        return self._names[self._kind[key_id]], self._names[self._category[key_id]]

    def referrers(self, key: str, result: Result | None) -> tuple[Referrer, ...]:
        """Where ``key`` is linked from; else the page its record names."""
        key_id = self._ids.get(key)
        first = _NONE if key_id is None else self._first_page[key_id]
        if key_id is None or first == _NONE:
            referrer = result.referrer if result is not None else None
            return (Referrer(referrer, 0),) if referrer else ()
        return self.places([first, self._first_line[key_id], *self._more.get(key_id, ())])

    def places(self, pairs: Sequence[int]) -> tuple[Referrer, ...]:
        """Page id and line pairs as referrers (a link written twice on a line: one)."""
        pages = self._pages
        places = dict.fromkeys(zip(pairs[::2], pairs[1::2], strict=True))
        return tuple(Referrer(pages[page], line) for page, line in places)

    def _code(self, name: str | None) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self._names)
            self._names.append(name)
        return code

    def _id(self, key: str) -> int:
        """The id of ``key``, given one (its columns empty) when it is new."""
        known = self._ids.get(key)
        if known is not None:
            return known
        new = self._ids[key] = len(self._ids)
        for column in (self._first_page, self._first_line, self._referrer):
            column.append(_NONE)
        for column in (self._kind, self._category, self._status, self._error):
            column.append(0)
        self._redirects.append(0)
        self._record_kind.append(0)
        self._final_itself.append(0)
        return new
