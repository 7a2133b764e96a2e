"""A frontier's overflow with no output folder: a temporary SQLite file of its own.

The in-memory frontier keeps at most MEMORY_ENTRIES queued entries in memory
and leaves the rest in a spill (frontier/memory.py, invariant 3). A crawl with
an output folder spills into its state.sqlite; the library's crawl
(``output_dir=None``) and each process of the front spill here instead, so
their memory is bounded too. Nothing is written until the frontier first
spills; the file is deleted when the run closes.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from crawler.output.state import CrawlState
from crawler.records import Entry


class TempSpill:
    """The Spill protocol over a temporary state file, made on the first spill."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._state: CrawlState | None = None

    def added(self, entries: Iterable[Entry]) -> None:
        """Entries the frontier took in; only those after the first mark are kept."""
        if self._state is not None:
            self._state.added(entries)

    def mark(self) -> int:
        if self._state is None:
            self._folder = Path(tempfile.mkdtemp(prefix="crawler-spill-"))
            self._state = CrawlState.create(self._folder / "spill.sqlite", {})
        self._state.flush({})
        return self._state.last_position()

    def load(self, after: int, limit: int) -> list[tuple[int, Entry]]:
        assert self._state is not None
        self._state.flush({})
        return self._state.pending_after(after, limit)

    def close(self) -> None:
        if self._state is not None:
            with contextlib.suppress(Exception):
                self._state.close()
            self._state = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
