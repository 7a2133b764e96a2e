"""checks.jsonl: crawler check's results, one LinkCheck a line, with every referrer.

Written once, when the check ends (a result needs every page that links to
it); broken.jsonl then holds the failing ones in its own shape (the URL,
its status or reason, the pages that link to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from crawler.output.files import open_nofollow
from crawler.records import RESULTS, BrokenLink, LinkCheck

CHECKS_FILE = "checks.jsonl"


def write_checks(directory: Path, checks: Iterable[LinkCheck]) -> list[BrokenLink]:
    """Write checks.jsonl; return the failing results as broken.jsonl's lines."""
    broken = []
    with open_nofollow(directory / CHECKS_FILE, "w", encoding="utf-8") as file:
        for check in checks:
            file.write(json.dumps(check.as_dict(), ensure_ascii=False) + "\n")
            if check.is_failing():
                pages = tuple(dict.fromkeys(referrer.page for referrer in check.referrers))
                broken.append(BrokenLink(check.url, check.status, check.error, pages, len(pages)))
    return broken


def counts_line(counted: Mapping[str, int], pages: int, cut: int = 0) -> str:
    """The one line that sums a check up: its results by kind, every kind named."""
    parts = ", ".join(f"{counted.get(result, 0):,} {result}" for result in RESULTS)
    more = f"; {cut:,} {'page' if cut == 1 else 'pages'} cut at --max-bytes" if cut else ""
    return f"{sum(counted.values()):,} URLs checked on {pages:,} pages: {parts}{more}"
