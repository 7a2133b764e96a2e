"""checks.jsonl: crawler check's results, one LinkCheck a line, with every referrer.

Written when the check ends (a result needs every page that links to it), a
batch of results at a time, never all held; broken.jsonl, beside it, the
failing ones in its own shape (the URL, its status or reason, the pages
that link to it). The command line's report reads them back the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import orjson

from crawler.output.files import broken_line, open_nofollow
from crawler.records import RESULTS, BrokenLink, LinkCheck, Referrer

CHECKS_FILE = "checks.jsonl"
BROKEN_FILE = "broken.jsonl"


class ChecksFile:
    """checks.jsonl and broken.jsonl being written."""

    def __init__(self, directory: Path) -> None:
        self._checks = open_nofollow(directory / CHECKS_FILE, "w", encoding="utf-8")
        self._broken = open_nofollow(directory / BROKEN_FILE, "w", encoding="utf-8")

    def write(self, checks: Iterable[LinkCheck]) -> None:
        lines, broken = [], []
        for check in checks:
            lines.append(json.dumps(check.as_dict(), ensure_ascii=False) + "\n")
            if check.is_failing():
                pages = tuple(dict.fromkeys(referrer.page for referrer in check.referrers))
                link = BrokenLink(check.url, check.status, check.error, pages, len(pages))
                broken.append(broken_line(link))
        self._checks.writelines(lines)
        self._broken.writelines(broken)

    def close(self) -> None:
        self._checks.close()
        self._broken.close()


def read_checks(directory: Path) -> Iterator[LinkCheck]:
    """checks.jsonl's results, one at a time (a page that links to many, one string)."""
    pages: dict[str, str] = {}
    with (directory / CHECKS_FILE).open("rb") as lines:
        for line in lines:
            check = orjson.loads(line)
            referrers = tuple(
                Referrer(pages.setdefault(r["page"], r["page"]), r["line"])
                for r in check["referrers"]
            )
            yield LinkCheck(
                check["url"],
                check["result"],
                check["kind"],
                check["status"],
                check["error"],
                check["final_url"],
                referrers,
            )


def counts_line(counted: Mapping[str, int], pages: int, cut: int = 0) -> str:
    """The one line that sums a check up: its results by kind, every kind named."""
    parts = ", ".join(f"{counted.get(result, 0):,} {result}" for result in RESULTS)
    more = f"; {cut:,} {'page' if cut == 1 else 'pages'} cut at --max-bytes" if cut else ""
    return f"{sum(counted.values()):,} URLs checked on {pages:,} pages: {parts}{more}"
