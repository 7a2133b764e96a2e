"""List the broken links of a site, each with the pages that link to it.

    python examples/broken_links.py https://example.org/

Prints one line per broken link and exits 1 when there are any (like
`crawler crawl --fail-on-broken`), so it can run from cron or CI.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict

from crawler import CrawlConfig, Crawler, PageRecord


async def broken_links(site: str) -> dict[str, list[str]]:
    """Each broken URL with the pages that link to it (only its first referrer is known
    from the records; crawler crawl's broken.jsonl has them all)."""
    broken: dict[str, list[str]] = defaultdict(list)
    async with Crawler(CrawlConfig(seeds=(site,), max_pages=5000)) as crawl:
        async for record in crawl:
            if isinstance(record, PageRecord) and record.is_broken():
                broken[f"{record.status or record.error} {record.url}"].append(
                    record.referrer or ""
                )
    return broken


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    broken = asyncio.run(broken_links(sys.argv[1]))
    for link, referrers in sorted(broken.items()):
        print(link)
        for referrer in referrers:
            print(f"    linked from {referrer}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
