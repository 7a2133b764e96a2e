"""List the broken links of a site, each with every page (and line) that links to it.

    python examples/broken_links.py https://example.org/

What `crawler check` does, from a program: every link is checked (offsite
links, images, scripts, stylesheets, fragments), and the results come last,
one per URL. Prints one line per broken link and exits 1 when there are any,
so it can run from cron or CI.
"""

from __future__ import annotations

import asyncio
import sys

from crawler import CrawlConfig, Crawler, LinkCheck


async def broken_links(site: str) -> list[LinkCheck]:
    """The failing results (broken, or timed out), each with its referrers."""
    failing = []
    async with Crawler(CrawlConfig(seeds=(site,), max_pages=5000, check=True)) as crawl:
        async for result in crawl:
            if isinstance(result, LinkCheck) and result.is_failing():
                failing.append(result)
    return failing


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    broken = asyncio.run(broken_links(sys.argv[1]))
    for link in sorted(broken, key=lambda link: link.url):
        print(f"{link.error or link.status} {link.url}")
        for referrer in link.referrers:
            print(f"    linked from {referrer.page} line {referrer.line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
