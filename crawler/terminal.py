"""What the command line shows: live progress, the summary table, the broken links.

Only the command line uses it (the library never prints). The summary's
rows add up: every page is ok, a 4xx or 5xx answer, a network error, refused
because robots.txt answered 5xx (the site is down), refused by robots.txt, or
another error (too large, a bad redirect, an extractor's failure, ...).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from crawler.escapes import visible
from crawler.output.passes import BrokenChanges
from crawler.output.report import SHOWN_REFERRERS
from crawler.records import (
    BROKEN_ERRORS,
    ROBOTS_UNAVAILABLE,
    CrawlStats,
    PageRecord,
    shown_reason,
)
from crawler.web.urls import redact_url

STATUS_LINE_SECONDS = 5.0
_NETWORK = BROKEN_ERRORS - {ROBOTS_UNAVAILABLE}


class Progress:
    """A live line on a terminal; a status line every few seconds elsewhere (cron logs)."""

    def __init__(self, console: Console, enabled: bool, max_pages: int | None) -> None:
        self._console = console
        self._max_pages = max_pages
        self._latest = CrawlStats()
        self._last_update = 0.0
        self._live: Live | None = None
        self._enabled = enabled
        if enabled and console.is_terminal:
            self._live = Live(console=console, get_renderable=self._line, transient=True)

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, stats: Callable[[], CrawlStats]) -> None:
        now = time.monotonic()
        interval = 0.2 if self._live is not None else STATUS_LINE_SECONDS
        if not self._enabled or now - self._last_update < interval:
            return
        self._last_update = now
        self._latest = stats()
        if self._live is None:
            self._console.print(self._line(), highlight=False)

    def _line(self) -> Text:
        stats = self._latest
        line = (
            f"{stats.pages} pages  {stats.pages_per_s:.0f} pages/s  queue {stats.queued}  "
            f"in flight {stats.in_flight}  errors {stats.errors}  {stats.duration_s:.0f}s"
        )
        if self._max_pages and stats.pages_per_s > 0:
            left = max(self._max_pages - stats.pages, 0) / stats.pages_per_s
            line += f"  ~{left:.0f}s left"
        return Text(line)


def page_rows(stats: dict[str, Any]) -> list[tuple[str, int]]:
    """The pages by outcome; the rows add up to the pages."""
    codes = {int(code): count for code, count in stats.get("status_counts", {}).items()}
    errors = stats.get("error_counts", {})
    rows = [
        ("ok", stats["ok"]),
        ("client errors (4xx)", sum(n for code, n in codes.items() if 400 <= code < 500)),
        ("server errors (5xx)", sum(n for code, n in codes.items() if code >= 500)),
        ("network errors", sum(n for error, n in errors.items() if error in _NETWORK)),
        ("robots.txt answered 5xx", errors.get(ROBOTS_UNAVAILABLE, 0)),
        ("refused by robots.txt", stats.get("robots_refused", 0)),
    ]
    rows.append(("other errors", stats["pages"] - sum(count for _, count in rows)))
    return rows


def summary_table(
    stats: dict[str, Any],
    directory: Path | None,
    slowest_hosts: Sequence[tuple[str, float]] = (),
    *,
    resume_with: str | None = None,
) -> Table:
    """The summary of a crawl (``resume_with``: the command that continues it)."""
    title = "crawl summary" if stats.get("finished", True) else "crawl summary: unfinished"
    table = Table(title=title, show_header=False, title_justify="left")
    rows: list[tuple[str, Any]] = [("pages", stats["pages"])]
    rows += [(f"  {name}", count) for name, count in page_rows(stats) if count or name == "ok"]
    changes = [name for name in ("new", "changed", "unchanged", "removed") if stats.get(name)]
    rows += [(f"{name} since the last pass", stats[name]) for name in changes]
    if stats.get("items") or stats.get("error_counts", {}).get("extractor-failed"):
        rows.append(("items extracted", stats.get("items", 0)))
        rows.append(("extractor failures", stats["error_counts"].get("extractor-failed", 0)))
    if stats.get("excluded_links"):
        rows.append(("links not followed (--allow/--deny)", stats["excluded_links"]))
    if stats.get("seeds_skipped"):
        rows.append(("seed list lines skipped (not URLs)", stats["seeds_skipped"]))
    if stats.get("rendered") or stats.get("render_failed"):
        rows.append(("pages rendered (--render)", stats.get("rendered", 0)))
        rows.append(("  renders failed", stats.get("render_failed", 0)))
        rows.append(("  browser restarts", stats.get("browser_restarts", 0)))
    if stats.get("budget_skipped"):
        hosts = stats.get("budget_hosts", [])
        named = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3:,} more" if len(hosts) > 3 else "")
        rows.append(("pages skipped (--max-pages-per-host)", stats["budget_skipped"]))
        rows.append(("  hosts at the limit", f"{len(hosts):,}: {named}"))
    rows += [
        ("redirected", stats.get("redirects", 0)),
        ("broken links", stats.get("broken", 0)),
        ("retries", stats.get("retries", 0)),
        ("bytes", f"{stats['bytes']:,}"),
        ("duration", f"{stats['duration_s']:.1f} s"),
        ("pages/s", f"{stats['pages_per_s']:.1f}"),
    ]
    rows += [("slow host", f"{host} ({ms:.0f} ms on average)") for host, ms in slowest_hosts]
    if not stats.get("finished", True):
        rows.append(("still queued", stats.get("queued", 0)))
        if resume_with:
            rows.append(("continue with", resume_with))
    if directory is not None:
        rows.append(("output", str(directory)))
    for name, value in rows:
        table.add_row(name, str(value))
    return table


_WHY_NOT_FETCHED = {
    ROBOTS_UNAVAILABLE: "its robots.txt answered 5xx: the site is down (RFC 9309: fetch nothing)",
    "robots": "robots.txt disallows it (--ignore-robots fetches it anyway)",
    "dns": "its host name does not resolve",
    "connection-refused": "its host refused the connection",
    "timeout": "no answer within --timeout",
    "tls": "the TLS handshake failed",
    "certificate": "its TLS certificate is not valid (expired, self-signed, of an unknown"
    " authority, or for another name; a private authority is trusted with SSL_CERT_FILE)",
    "private-address": "its host resolves to a private address (--allow-private allows it)",
}


def seed_failure(record: PageRecord) -> str:
    """The line that says why a seed was not fetched."""
    if record.status is not None:
        reason = f"answered {record.status}"
        with contextlib.suppress(ValueError):
            reason += f" {HTTPStatus(record.status).phrase}"
    else:
        error = record.error or "no answer"
        reason = _WHY_NOT_FETCHED.get(error, error)
    if record.final_url and record.final_url != record.url:
        reason += f" (redirected to {record.final_url})"
    return f"seed {redact_url(record.url)} not fetched: {reason}"


def broken_line(link: dict[str, Any]) -> str:
    """One broken link as ``crawler report --broken`` prints it."""
    reason = shown_reason(link["status"], link["error"])
    pages = link["referrers"]
    referrers = " ".join(map(visible, pages[:SHOWN_REFERRERS]))
    more = max(link.get("referrer_count", 0), len(pages)) - min(len(pages), SHOWN_REFERRERS)
    rest = f" and {more:,} more pages" if more > 0 else ""
    return f"{reason} {visible(link['url'])} <- {referrers}{rest}"


def print_broken(console: Console, changes: BrokenChanges) -> None:
    """A pass's broken links, the new ones (since the previous pass) first."""
    total = len(changes.new) + len(changes.known)
    console.print(
        f"broken links: {total} ({len(changes.new)} new since the last pass, "
        f"{len(changes.fixed)} fixed)",
        markup=False,
        highlight=False,
    )
    for mark, links in (("new", changes.new), ("still", changes.known)):
        for link in links:
            console.print(f"{mark} {broken_line(link)}", markup=False, highlight=False)
    for url in changes.fixed:
        console.print(f"fixed {visible(url)}", markup=False, highlight=False)
