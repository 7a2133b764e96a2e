"""crawler: a fast, polite, crash-safe asynchronous web crawler.

The public surface is ``__all__``; see README.md and docs/api.md.
"""

import logging

from crawler.api import Crawler, crawl, run
from crawler.config import CrawlConfig
from crawler.errors import ConfigError, CrawlerError, FrontierUnavailable, OutputLocked
from crawler.extract import Item, Page
from crawler.records import BrokenLink, CrawlStats, LinkCheck, PageRecord, Referrer

# The library prints nothing: with no logging configured by the program, Python's
# last-resort handler would print every warning (an extractor's failure, each page).
logging.getLogger("crawler").addHandler(logging.NullHandler())

__all__ = [
    "BrokenLink",
    "ConfigError",
    "CrawlConfig",
    "CrawlStats",
    "Crawler",
    "CrawlerError",
    "FrontierUnavailable",
    "Item",
    "LinkCheck",
    "OutputLocked",
    "Page",
    "PageRecord",
    "Referrer",
    "crawl",
    "run",
]
