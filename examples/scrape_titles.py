"""Scrape every page's title and headings into items, following only /page/ links.

    python examples/scrape_titles.py https://example.org/ out/

The extractor below is a plain function; the same one works from the
command line:

    crawler crawl https://example.org/ --extract examples.scrape_titles:titles_and_headings

Items go to out/items.jsonl (and through the library's iterator as Item objects).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crawler import CrawlConfig, Page, run


def titles_and_headings(page: Page) -> Iterator[dict[str, Any]]:
    """One item per page: its URL, title and h1/h2 headings."""
    soup = page.soup
    yield {
        "url": page.url,
        "title": soup.title.get_text(strip=True) if soup.title else None,
        "headings": [tag.get_text(strip=True) for tag in soup.find_all(["h1", "h2"])],
    }
    # Follow only links into /page/ (and the home page), whatever else the page links to.
    page.follow = [url for url in page.follow if "/page/" in url or url.endswith("/")]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    config = CrawlConfig(
        seeds=(sys.argv[1],), output_dir=Path(sys.argv[2]), extract=titles_and_headings
    )
    stats = run(config)
    print(f"{stats.items} items from {stats.pages} pages in {Path(sys.argv[2]) / 'items.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
