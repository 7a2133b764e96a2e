"""report.html: a self-contained summary of a crawl, charts drawn as inline SVG.

It reads a finished (or stopped) output folder's files (stats.json,
pages.jsonl or pages.csv, broken.jsonl; state.sqlite for the seeds and
settings; previous/broken.jsonl for what changed since the last pass) in
one pass, in bounded memory, and writes one HTML file that needs no network,
no script and no font to be read (report_html.py draws and writes it).
"""

from __future__ import annotations

import csv
import heapq
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from crawler.output.files import PREVIOUS
from crawler.output.passes import BrokenChanges, broken_changes
from crawler.web.urls import Scope, host_key, host_of, path_of

SLOWEST = 20
# Lists a site owner reads: this many rows each (the counts are whole).
LISTED = 50
# report.html's broken links (every one is in broken.jsonl and `crawler report --broken`),
# and the pages named for each link: the first ones, then "and N more pages".
SHOWN_BROKEN = 500
SHOWN_REFERRERS = 10
# Titles remembered to find duplicates: a crawl of millions stays bounded.
MAX_TITLES = 100_000
HISTOGRAM_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass
class Summary:
    """What the report shows, gathered in one pass over the pages file."""

    stats: dict[str, Any]
    statuses: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)
    response_ms: Counter[str] = field(default_factory=Counter)
    depths: Counter[int] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    host_ms: Counter[str] = field(default_factory=Counter)
    slowest: list[tuple[int, str]] = field(default_factory=list)
    largest: list[tuple[int, str]] = field(default_factory=list)
    # The first SHOWN_BROKEN broken links (report.html lists these), and how many in all.
    broken: list[dict[str, Any]] = field(default_factory=list)
    broken_count: int = 0
    # Redirected pages: (url, where it ended, hops), the first LISTED.
    redirects: list[tuple[str, str, int]] = field(default_factory=list)
    untitled: list[str] = field(default_factory=list)
    untitled_count: int = 0
    # Titles with the first pages of each, and how many pages have each.
    titles: dict[str, list[str]] = field(default_factory=dict)
    title_counts: Counter[str] = field(default_factory=Counter)
    # Status class by site section (the first path segment): {section: Counter}.
    sections: dict[str, Counter[str]] = field(default_factory=dict)
    first: str | None = None
    last: str | None = None
    crawl: dict[str, Any] = field(default_factory=dict)
    changes: BrokenChanges | None = None
    # crawler check (checks.jsonl): results by kind, and the failing ones by section.
    check_counts: Counter[str] = field(default_factory=Counter)
    check_sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    check_totals: Counter[str] = field(default_factory=Counter)

    def duplicate_titles(self) -> list[tuple[str, int, list[str]]]:
        """Titles of several pages, the most shared first: (title, pages, the first pages)."""
        counts = self.title_counts
        shared = [(title, counts[title], urls) for title, urls in self.titles.items()]
        return sorted((item for item in shared if item[1] > 1), key=lambda item: -item[1])[:LISTED]

    def is_check(self) -> bool:
        """A crawler check's folder (checks.jsonl): its reports say the check's counts."""
        return bool(self.check_counts)

    def slowest_hosts(self, count: int = 5) -> list[tuple[str, float]]:
        means = {host: self.host_ms[host] / n for host, n in self.hosts.items() if n}
        return sorted(means.items(), key=lambda item: -item[1])[:count]


def _records(directory: Path) -> Iterator[dict[str, Any]]:
    """The pages file's records one at a time: a crawl of millions of pages is
    summarised in constant memory."""
    jsonl, table = directory / "pages.jsonl", directory / "pages.csv"
    if jsonl.exists():
        with jsonl.open(encoding="utf-8") as file:
            for line in file:
                if line.strip():
                    yield orjson.loads(line)
    elif table.exists():
        with table.open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                record: dict[str, Any] = dict(row)
                record["status"] = int(row["status"]) if row["status"] else None
                yield record


def _bucket(elapsed_ms: int) -> str:
    for limit in HISTOGRAM_MS:
        if elapsed_ms < limit:
            return f"<{limit}"
    return f"≥{HISTOGRAM_MS[-1]}"


def summarize(directory: Path) -> Summary:
    """Read a crawl's output folder (stats.json must exist)."""
    summary = Summary(json.loads((directory / "stats.json").read_text(encoding="utf-8")))
    summary.crawl = _crawl_settings(directory)
    start: float | None = None
    for record in _records(directory):
        if record.get("kind", "page") != "page":
            continue  # a link only checked: crawler check's sections say how it went
        _note(summary, record)
        status = record.get("status")
        summary.statuses[str(status) if status is not None else str(record.get("error"))] += 1
        elapsed = int(record.get("elapsed_ms") or 0)
        summary.response_ms[_bucket(elapsed)] += 1
        summary.depths[int(record.get("depth") or 0)] += 1
        host = host_key(str(record["url"]))
        summary.hosts[host] += 1
        summary.host_ms[host] += elapsed
        slowest = (elapsed, str(record["url"]))
        if len(summary.slowest) < SLOWEST:
            heapq.heappush(summary.slowest, slowest)
        else:
            heapq.heappushpop(summary.slowest, slowest)
        when = _timestamp(record.get("fetched_at"))
        if when is not None:
            start = when if start is None else min(start, when)
            summary.per_second[int(when - start) if when >= start else 0] += 1
    summary.slowest = sorted(summary.slowest, reverse=True)[:SLOWEST]
    summary.largest = sorted(summary.largest, reverse=True)[:SLOWEST]
    for link in broken_links(directory):
        if summary.broken_count < SHOWN_BROKEN:
            summary.broken.append(link)
        summary.broken_count += 1
    if (directory / PREVIOUS / "broken.jsonl").exists():
        summary.changes = broken_changes(directory)
    if (directory / "checks.jsonl").exists():
        _checks(directory, summary)
    return summary


def broken_links(directory: Path) -> Iterator[dict[str, Any]]:
    """The lines of broken.jsonl, read one at a time (a crawl may have a million)."""
    path = directory / "broken.jsonl"
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


# report.html's sections of crawler check's failing results, by the kind of link.
IMAGES = "Missing images"
REQUISITES = "Missing scripts, stylesheets and other requisites"
OFFSITE = "Broken links to other sites"
FRAGMENTS = "Missing fragments"
_REQUISITE_KINDS = frozenset(
    {"script", "stylesheet", "icon", "preload", "manifest", "media", "object", "css"}
)


def _checks(directory: Path, summary: Summary) -> None:
    """checks.jsonl read one line at a time: counts whole, LISTED rows a section."""
    settings = summary.crawl
    scope = Scope.of(
        settings.get("seeds", ()),
        settings.get("allow_domain", ()),
        seed_hosts=settings.get("seed_hosts", ()),
    )
    with (directory / "checks.jsonl").open(encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                continue
            check = json.loads(line)
            summary.check_counts[check["result"]] += 1
            if check["result"] not in ("broken", "timeout"):
                continue
            section = _section(check, scope)
            if section is None:
                continue
            summary.check_totals[section] += 1
            rows = summary.check_sections.setdefault(section, [])
            if len(rows) < LISTED:
                rows.append(check)


def _section(check: dict[str, Any], scope: Scope) -> str | None:
    if check.get("error") == "fragment-missing":
        return FRAGMENTS
    if check["kind"] == "image":
        return IMAGES
    if check["kind"] in _REQUISITE_KINDS:
        return REQUISITES
    url = str(check["url"])
    if url.startswith(("http://", "https://")) and not scope.names(host_of(url)):
        return OFFSITE
    return None


def _note(summary: Summary, record: dict[str, Any]) -> None:
    """What one record adds to the lists: size, redirects, title, section, dates."""
    url = str(record["url"])
    size = (int(record.get("bytes") or 0), url)
    if len(summary.largest) < SLOWEST:
        heapq.heappush(summary.largest, size)
    else:
        heapq.heappushpop(summary.largest, size)
    if record.get("redirects") and len(summary.redirects) < LISTED:
        hops = int(record["redirects"])
        summary.redirects.append((url, str(record.get("final_url") or ""), hops))
    status = record.get("status")
    if status == 200 and str(record.get("content_type")) in ("text/html", "application/xhtml+xml"):
        title = (record.get("title") or "").strip()
        if not title:
            summary.untitled_count += 1
            if len(summary.untitled) < LISTED:
                summary.untitled.append(url)
        elif title in summary.titles or len(summary.titles) < MAX_TITLES:
            urls = summary.titles.setdefault(title, [])
            summary.title_counts[title] += 1
            if len(urls) < SHOWN_REFERRERS:
                urls.append(url)
    path = path_of(url)
    section = "/" + path.split("/")[1] if path.count("/") > 1 else "/"
    kind = f"{str(status)[0]}xx" if status else "no answer"
    counts = summary.sections.get(section)
    if counts is None:  # not a Counter made for every record
        counts = summary.sections[section] = Counter()
    counts[kind] += 1
    fetched = record.get("fetched_at")
    if isinstance(fetched, str) and fetched:
        summary.first = min(summary.first or fetched, fetched)
        summary.last = max(summary.last or fetched, fetched)


def _crawl_settings(directory: Path) -> dict[str, Any]:
    """The crawl's seeds and scope, as its state.sqlite keeps them (read only)."""
    path = directory / "state.sqlite"
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        finally:
            connection.close()
        settings = json.loads(row[0]) if row else {}
    except (sqlite3.Error, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _timestamp(value: object) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None
