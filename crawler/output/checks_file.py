"""checks.jsonl: crawler check's results, one LinkCheck a line, with every referrer.

Written once, when the check ends (a result needs every page that links to
it); broken.jsonl then holds the failing ones in its own shape (the URL,
its status or reason, the pages that link to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from crawler.output.files import open_nofollow
from crawler.records import BrokenLink, LinkCheck

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
