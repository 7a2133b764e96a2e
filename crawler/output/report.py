"""report.html: a self-contained summary of a crawl, charts drawn as inline SVG.

It reads a finished (or stopped) output folder's
files (stats.json, pages.jsonl or pages.csv, broken.jsonl) and writes one
HTML file that needs no network, no script and no font to be read.
"""

from __future__ import annotations

import csv
import heapq
import html
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler.output.files import write_file

SLOWEST = 20
_HISTOGRAM_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_COLOURS = {"2": "#2e7d32", "3": "#1565c0", "4": "#ef6c00", "5": "#c62828", "-": "#6d4c41"}


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
    broken: list[dict[str, Any]] = field(default_factory=list)

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
                    yield json.loads(line)
    elif table.exists():
        with table.open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                record: dict[str, Any] = dict(row)
                record["status"] = int(row["status"]) if row["status"] else None
                yield record


def _bucket(elapsed_ms: int) -> str:
    for limit in _HISTOGRAM_MS:
        if elapsed_ms < limit:
            return f"<{limit}"
    return f"≥{_HISTOGRAM_MS[-1]}"


def summarize(directory: Path) -> Summary:
    """Read a crawl's output folder (stats.json must exist)."""
    summary = Summary(json.loads((directory / "stats.json").read_text(encoding="utf-8")))
    start: float | None = None
    for record in _records(directory):
        status = record.get("status")
        summary.statuses[str(status) if status is not None else str(record.get("error"))] += 1
        elapsed = int(record.get("elapsed_ms") or 0)
        summary.response_ms[_bucket(elapsed)] += 1
        summary.depths[int(record.get("depth") or 0)] += 1
        host = urlsplit(str(record["url"])).netloc
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
    broken = directory / "broken.jsonl"
    if broken.exists():
        lines = broken.read_text(encoding="utf-8").splitlines()
        summary.broken = [json.loads(line) for line in lines if line.strip()]
    return summary


def _timestamp(value: object) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _bar_chart(chart_id: str, title: str, data: list[tuple[str, int]], colour: str) -> str:
    """A horizontal bar chart, one bar a label: readable with any number of bars."""
    if not data:
        return f'<figure id="{chart_id}"><figcaption>{title}</figcaption><p>no data</p></figure>'
    width, bar, gap, label_width = 640, 18, 6, 170
    peak = max(value for _, value in data) or 1
    height = len(data) * (bar + gap) + gap
    rows = []
    for index, (label, value) in enumerate(data):
        y = gap + index * (bar + gap)
        length = max(1, round((width - label_width - 60) * value / peak))
        fill = _COLOURS.get(label[:1], colour) if chart_id == "chart-status" else colour
        rows.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">'
            f"{html.escape(label)}</text>"
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar}" fill="{fill}">'
            f"<title>{html.escape(label)}: {value}</title></rect>"
            f'<text x="{label_width + length + 4}" y="{y + 13}">{value}</text>'
        )
    return (
        f'<figure id="{chart_id}"><figcaption>{title}</figcaption>'
        f'<svg role="img" aria-label="{title}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">{"".join(rows)}</svg></figure>'
    )


def _rate_chart(per_second: Counter[int]) -> str:
    """Pages per second over the crawl, as columns."""
    title = "Pages per second over time"
    if not per_second:
        return f'<figure id="chart-rate"><figcaption>{title}</figcaption><p>no data</p></figure>'
    seconds = max(per_second) + 1
    buckets = max(1, -(-seconds // 120))
    columns = [
        sum(per_second.get(s, 0) for s in range(start, start + buckets)) / buckets
        for start in range(0, seconds, buckets)
    ]
    width, height, peak = 640, 200, max(columns) or 1
    step = width / len(columns)
    bars = "".join(
        f'<rect x="{index * step:.1f}" y="{height - value / peak * (height - 20):.1f}" '
        f'width="{max(step - 1, 1):.1f}" height="{value / peak * (height - 20):.1f}" '
        f'fill="#1565c0">'
        f"<title>{index * buckets}s: {value:.0f} pages/s</title></rect>"
        for index, value in enumerate(columns)
    )
    axis = (
        f'<text x="0" y="12">{peak:.0f}/s</text>'
        f'<text x="{width - 40}" y="{height - 2}">{seconds}s</text>'
    )
    return (
        f'<figure id="chart-rate"><figcaption>{title}</figcaption>'
        f'<svg role="img" aria-label="{title}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">{bars}{axis}</svg></figure>'
    )


_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: left; }
tr:nth-child(even) { background: #f5f5f5; } td.n { text-align: right; }
figure { margin: 1.5em 0; } figcaption { font-weight: 600; margin-bottom: .4em; }
svg text { font: 12px system-ui, sans-serif; fill: #333; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 1.5em; } ul.refs { margin: 0; padding-left: 1.2em; }
"""


def _cards(stats: dict[str, Any]) -> str:
    names = ["pages", "ok", "errors", "broken", "redirects", "retries", "duration_s", "pages_per_s"]
    if any(stats.get(name) for name in ("new", "changed", "unchanged", "removed")):
        names += ["new", "changed", "unchanged", "removed"]
    return (
        '<div class="cards" id="cards">'
        + "".join(
            f'<div class="card"><b>{html.escape(str(stats.get(name, 0)))}</b>{name}</div>'
            for name in names
        )
        + "</div>"
    )


def _broken_table(broken: list[dict[str, Any]]) -> str:
    if not broken:
        return "<p>No broken links.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(str(link.get('status') or link.get('error')))}</td>"
        f"<td>{html.escape(link['url'])}</td><td><ul class='refs'>"
        + "".join(f"<li>{html.escape(ref)}</li>" for ref in link.get("referrers", []))
        + f"</ul>{link.get('referrer_count', 0)} page(s)</td></tr>"
        for link in broken
    )
    header = "<tr><th>status</th><th>link</th><th>linked from</th></tr>"
    return f'<table id="broken">{header}{rows}</table>'


def render(summary: Summary, title: str) -> str:
    statuses = sorted(summary.statuses.items())
    order = [f"<{limit}" for limit in _HISTOGRAM_MS] + [f"≥{_HISTOGRAM_MS[-1]}"]
    histogram = [
        (f"{name} ms", summary.response_ms[name]) for name in order if summary.response_ms[name]
    ]
    depths = [(str(depth), count) for depth, count in sorted(summary.depths.items())]
    hosts = summary.hosts.most_common(20)
    slowest = "".join(
        f"<tr><td class='n'>{ms}</td><td>{html.escape(url)}</td></tr>"
        for ms, url in summary.slowest
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
{_cards(summary.stats)}
<h2>Charts</h2>
{_bar_chart("chart-status", "Status codes and errors", statuses, "#455a64")}
{_rate_chart(summary.per_second)}
{_bar_chart("chart-time", "Response times", histogram, "#6a1b9a")}
{_bar_chart("chart-depth", "Pages by link depth", depths, "#00838f")}
{_bar_chart("chart-hosts", "Pages per host", hosts, "#558b2f")}
<h2>Broken links</h2>
{_broken_table(summary.broken)}
<h2>Slowest pages</h2>
<table id="slowest"><tr><th>ms</th><th>page</th></tr>{slowest}</table>
</body></html>
"""


def write_report(directory: Path) -> Path:
    """Write DIR/report.html from the crawl's files; return its path."""
    summary = summarize(directory)
    path = directory / "report.html"
    write_file(path, render(summary, f"Crawl report: {directory.resolve().name}"))
    return path
