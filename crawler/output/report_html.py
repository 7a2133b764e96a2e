"""report.html drawn from a crawl's Summary (report.py): one self-contained file.

What a site owner asks, in order: what was crawled (seeds, dates, scope,
duration), how it went (cards with human labels), what is broken (and, after
an earlier pass, what broke and what was fixed since), redirects, pages with
a missing or shared title, status by site section, the slowest and largest
pages, then the charts, each with its axes and units. URLs are links (http
and https only); nothing is fetched to show the page.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

from crawler.output.checks_file import counts_line
from crawler.output.files import write_file
from crawler.output.report import (
    FRAGMENTS,
    HISTOGRAM_MS,
    IMAGES,
    LISTED,
    OFFSITE,
    REQUISITES,
    SHOWN_REFERRERS,
    Summary,
    summarize,
)
from crawler.records import shown_reason

_COLOURS = {"2": "#2e7d32", "3": "#1565c0", "4": "#ef6c00", "5": "#c62828", "-": "#6d4c41"}
_CLASSES = ("2xx", "3xx", "4xx", "5xx", "no answer")
# Card: (stats key, label, unit or format).
_CARDS = (
    ("pages", "Pages", ""),
    ("ok", "OK", ""),
    ("errors", "Errors", ""),
    ("broken", "Broken links", ""),
    ("redirects", "Redirected", ""),
    ("retries", "Retries", ""),
    ("duration_s", "Duration", " s"),
    ("pages_per_s", "Pages per second", ""),
)
# A check's cards: its results, then the crawl that found the links.
_CHECK_CARDS = (
    ("checked", "Links checked"),
    ("ok", "OK"),
    ("broken", "Broken"),
    ("timeout", "Timed out"),
    ("redirected", "Redirected"),
    ("excluded", "Excluded"),
    ("unsupported", "Not http(s)"),
)
_CHANGES = (
    ("new", "New"),
    ("changed", "Changed"),
    ("unchanged", "Unchanged"),
    ("removed", "Removed"),
)

_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: left; }
tr:nth-child(even) { background: #f5f5f5; } td.n, th.n { text-align: right; }
td { overflow-wrap: anywhere; }
figure { margin: 1.5em 0; } figcaption { font-weight: 600; margin-bottom: .4em; }
svg text { font: 12px system-ui, sans-serif; fill: #333; } svg .axis { font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 1.5em; } ul.refs { margin: 0; padding-left: 1.2em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dt { font-weight: 600; } dd { margin: 0; }
"""


def link(url: str) -> str:
    """A URL as a link when it is http(s), as text otherwise; escaped either way."""
    text = html.escape(url)
    if url.startswith(("http://", "https://")):
        return f'<a href="{html.escape(url, quote=True)}">{text}</a>'
    return text


def _what(summary: Summary) -> str:
    stats, crawl = summary.stats, summary.crawl
    seeds = [link(seed) for seed in crawl.get("seeds", [])]
    if listed := crawl.get("seed_hosts", []):
        named = ", ".join(map(html.escape, listed[:10]))
        more = f" and {len(listed) - 10:,} more" if len(listed) > 10 else ""
        seeds.append(f"a seed list (--input-file) of URLs on {len(listed):,} hosts: {named}{more}")
    rows = [("Seeds", "<br>".join(seeds) or "unknown")]
    if crawl.get("allow_domain"):
        rows.append(("Also in scope", html.escape(", ".join(crawl["allow_domain"]))))
    if crawl.get("span_hosts"):
        rows.append(("Scope", "any host links lead to (--span-hosts)"))
    if summary.first:
        rows.append(
            ("Crawled", f"{html.escape(summary.first)} to {html.escape(summary.last or '')}")
        )
    rows.append(("Duration", f"{stats.get('duration_s', 0):,.1f} s"))
    state = (
        "finished" if stats.get("finished") else "unfinished (--resume or --update continues it)"
    )
    rows.append(("State", state))
    if stats.get("queued"):
        rows.append(("Still queued", f"{stats['queued']:,}"))
    if stats.get("seeds_skipped"):
        rows.append(("Seed list", f"{stats['seeds_skipped']:,} lines skipped: not http(s) URLs"))
    if stats.get("rendered") or stats.get("render_failed"):
        rendered = f"{stats.get('rendered', 0):,} pages in a headless browser"
        rendered += f", {stats.get('render_failed', 0):,} renders failed (parsed as fetched)"
        rows.append(
            ("Rendered", f"{rendered}; browser restarts: {stats.get('browser_restarts', 0)}")
        )
    if stats.get("budget_skipped"):
        hosts = ", ".join(map(html.escape, stats.get("budget_hosts", [])))
        skipped = f"{stats['budget_skipped']:,} pages skipped on these hosts: {hosts}"
        rows.append(("At --max-pages-per-host", skipped))
    return '<dl id="crawled">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _cards(summary: Summary) -> str:
    stats = summary.stats
    if summary.is_check():
        counts = {"checked": sum(summary.check_counts.values()), **summary.check_counts}
        cards = [(label, f"{counts.get(key, 0):,}") for key, label in _CHECK_CARDS]
        cards += [
            ("Pages crawled", f"{stats.get('pages', 0):,}"),
            ("Duration", f"{stats.get('duration_s', 0):,} s"),
        ]
    else:
        cards = [(label, f"{stats.get(key, 0):,}{unit}") for key, label, unit in _CARDS]
    if any(stats.get(key) for key, _ in _CHANGES):
        cards += [
            (f"{label} since the last pass", f"{stats.get(key, 0):,}") for key, label in _CHANGES
        ]
    return (
        '<div class="cards" id="cards">'
        + "".join(
            f'<div class="card"><b>{html.escape(v)}</b>{html.escape(k)}</div>' for k, v in cards
        )
        + "</div>"
    )


def _table(table_id: str, header: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p id="{table_id}">{empty}</p>'
    head = "".join(f"<th>{name}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _broken(broken: list[dict[str, Any]], count: int) -> str:
    rows = [
        [
            html.escape(str(shown_reason(item.get("status"), item.get("error")))),
            link(item["url"]),
            _referrers(item.get("referrers", []), item.get("referrer_count", 0)),
        ]
        for item in broken
    ]
    table = _table("broken", ["Status", "Link", "Linked from"], rows, "No broken links.")
    if count > len(broken):
        table += f"<p>and {count - len(broken):,} more: every one is in broken.jsonl.</p>"
    return table


def _referrers(pages: list[str], count: int, lines: list[int] | None = None) -> str:
    """The first SHOWN_REFERRERS pages that link here (with the line, when known), then
    how many pages in all."""
    first = pages[:SHOWN_REFERRERS]
    at = [f" line {line}" for line in lines] if lines else [""] * len(first)
    shown = "".join(f"<li>{link(page)}{where}</li>" for page, where in zip(first, at, strict=True))
    count = max(count, len(pages))
    more = count - min(len(pages), SHOWN_REFERRERS)
    rest = f" (and {more:,} more)" if more > 0 else ""
    return f"<ul class='refs'>{shown}</ul>{count:,} {'page' if count == 1 else 'pages'}{rest}"


def _checks(summary: Summary) -> str:
    """crawler check's results: the counts, then a section per kind of failing link."""
    if not summary.check_counts:
        return ""
    line = counts_line(summary.check_counts, summary.stats.get("pages", 0))
    parts = [f"<h2>Links checked</h2><p id='check-counts'>{html.escape(line)}</p>"]
    for number, section in enumerate((OFFSITE, IMAGES, REQUISITES, FRAGMENTS)):
        rows = [
            [
                html.escape(
                    str(shown_reason(check.get("status"), check.get("error")) or check["result"])
                ),
                link(check["url"]),
                _check_referrers(check.get("referrers", [])),
            ]
            for check in summary.check_sections.get(section, [])
        ]
        total = summary.check_totals[section]
        parts.append(f"<h3>{html.escape(section)} ({total:,})</h3>")
        header = ["Status", "Link", "Linked from (line)"]
        parts.append(_table(f"check-{number}", header, rows, "None."))
    return "".join(parts)


def _check_referrers(referrers: list[dict[str, Any]]) -> str:
    """A result's referrers: the first pages with the line of the link, and how many
    pages (not links: a page that links twice counts once)."""
    first: dict[str, int] = {}
    for referrer in referrers:
        first.setdefault(str(referrer["page"]), int(referrer["line"]))
    pages = list(first)
    return _referrers(pages, len(pages), [first[page] for page in pages[:SHOWN_REFERRERS]])


def _since(summary: Summary) -> str:
    changes = summary.changes
    if changes is None:
        return ""
    fixed = [[link(url)] for url in changes.fixed[:LISTED]]
    new = _broken(changes.new[:LISTED], len(changes.new))
    return (
        "<h2>Since the last pass</h2>"
        f"<h3>New broken links ({len(changes.new)})</h3>{new}"
        f"<h3>Fixed ({len(changes.fixed)})</h3>" + _table("fixed", ["Link"], fixed, "None fixed.")
    )


def _pages(summary: Summary) -> str:
    redirects = [[link(url), link(final), str(hops)] for url, final, hops in summary.redirects]
    untitled = [[link(url)] for url in summary.untitled]
    shared = [
        [html.escape(title), f"{count:,}", "<br>".join(link(url) for url in urls)]
        for title, count, urls in summary.duplicate_titles()
    ]
    sections = [
        [html.escape(section)] + [f"{counts[kind]:,}" for kind in _CLASSES]
        for section, counts in sorted(
            summary.sections.items(), key=lambda item: -sum(item[1].values())
        )[:LISTED]
    ]
    slowest = [[f"{ms:,}", link(url)] for ms, url in summary.slowest]
    largest = [[f"{size:,}", link(url)] for size, url in summary.largest]
    parts = [
        ("Redirects", _table("redirects", ["Page", "Ends at", "Hops"], redirects, "None.")),
        (
            f"Pages without a title ({summary.untitled_count:,})",
            _table("untitled", ["Page"], untitled, "Every page has a title."),
        ),
        (
            "Titles shared by several pages",
            _table("duplicate-titles", ["Title", "Pages", "Some of them"], shared, "None."),
        ),
        ("Status by site section", _table("sections", ["Section", *_CLASSES], sections, "None.")),
        ("Slowest pages", _table("slowest", ["Response time (ms)", "Page"], slowest, "None.")),
        ("Largest pages", _table("largest", ["Size (bytes)", "Page"], largest, "None.")),
    ]
    return "".join(f"<h2>{html.escape(head)}</h2>{table}" for head, table in parts)


def _bar_chart(
    chart_id: str, title: str, data: list[tuple[str, int]], axes: tuple[str, str], colour: str
) -> str:
    """Horizontal bars, one a label; ``axes``: what the labels are, what the bars count."""
    if not data:
        return f'<figure id="{chart_id}"><figcaption>{title}</figcaption><p>no data</p></figure>'
    width, bar, gap, label_width = 640, 18, 6, 170
    peak = max(value for _, value in data) or 1
    top = 20
    height = top + len(data) * (bar + gap) + gap + 22
    rows = [f'<text class="axis" x="0" y="14">{html.escape(axes[0])}</text>']
    for index, (label, value) in enumerate(data):
        y = top + gap + index * (bar + gap)
        length = max(1, round((width - label_width - 60) * value / peak))
        fill = _COLOURS.get(label[:1], colour) if chart_id == "chart-status" else colour
        rows.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">'
            f"{html.escape(label)}</text>"
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar}" fill="{fill}">'
            f"<title>{html.escape(label)}: {value}</title></rect>"
            f'<text x="{label_width + length + 4}" y="{y + 13}">{value:,}</text>'
        )
    base = height - 22
    rows.append(
        f'<line x1="{label_width}" y1="{base}" x2="{width - 60}" y2="{base}" stroke="#999"/>'
        f'<text x="{label_width}" y="{base + 14}">0</text>'
        f'<text x="{width - 60}" y="{base + 14}" text-anchor="end">{peak:,}</text>'
        f'<text class="axis" x="{(label_width + width - 60) // 2}" y="{base + 16}" '
        f'text-anchor="middle">{html.escape(axes[1])}</text>'
    )
    return (
        f'<figure id="{chart_id}"><figcaption>{title}</figcaption>'
        f'<svg role="img" aria-label="{title}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">{"".join(rows)}</svg></figure>'
    )


def _rate_chart(per_second: Counter[int]) -> str:
    """Pages per second over the crawl, as columns, with both axes labelled."""
    title = "Pages per second over time"
    if not per_second:
        return f'<figure id="chart-rate"><figcaption>{title}</figcaption><p>no data</p></figure>'
    seconds = max(per_second) + 1
    buckets = max(1, -(-seconds // 120))
    columns = [
        sum(per_second.get(s, 0) for s in range(start, start + buckets)) / buckets
        for start in range(0, seconds, buckets)
    ]
    left, width, plot, peak = 50, 640, 180, max(columns) or 1
    step = (width - left) / len(columns)
    bars = "".join(
        f'<rect x="{left + index * step:.1f}" y="{plot - value / peak * (plot - 24):.1f}" '
        f'width="{max(step - 1, 1):.1f}" height="{value / peak * (plot - 24):.1f}" '
        f'fill="#1565c0">'
        f"<title>{index * buckets} s: {value:.0f} pages/s</title></rect>"
        for index, value in enumerate(columns)
    )
    axes = (
        f'<line x1="{left}" y1="{plot}" x2="{width}" y2="{plot}" stroke="#999"/>'
        f'<line x1="{left}" y1="0" x2="{left}" y2="{plot}" stroke="#999"/>'
        f'<text x="{left - 4}" y="28" text-anchor="end">{peak:,.0f}</text>'
        f'<text x="{left - 4}" y="{plot}" text-anchor="end">0</text>'
        f'<text class="axis" x="{left + 6}" y="12">pages/s</text>'
        f'<text x="{left}" y="{plot + 16}">0 s</text>'
        f'<text x="{width}" y="{plot + 16}" text-anchor="end">{seconds:,} s</text>'
        f'<text class="axis" x="{(left + width) // 2}" y="{plot + 16}" text-anchor="middle">'
        "time since the first page (s)</text>"
    )
    return (
        f'<figure id="chart-rate"><figcaption>{title}</figcaption>'
        f'<svg role="img" aria-label="{title}" viewBox="0 0 {width} {plot + 24}" '
        f'width="{width}" height="{plot + 24}">{bars}{axes}</svg></figure>'
    )


def _charts(summary: Summary) -> str:
    order = [f"<{limit}" for limit in HISTOGRAM_MS] + [f"≥{HISTOGRAM_MS[-1]}"]
    times = [
        (f"{name} ms", summary.response_ms[name]) for name in order if summary.response_ms[name]
    ]
    depths = [(str(depth), count) for depth, count in sorted(summary.depths.items())]
    return (
        _bar_chart(
            "chart-status",
            "Status codes and errors",
            sorted(summary.statuses.items()),
            ("status or error", "pages"),
            "#455a64",
        )
        + _rate_chart(summary.per_second)
        + _bar_chart("chart-time", "Response times", times, ("response time", "pages"), "#6a1b9a")
        + _bar_chart(
            "chart-depth",
            "Pages by link depth",
            depths,
            ("depth (links from a seed)", "pages"),
            "#00838f",
        )
        + _bar_chart(
            "chart-hosts",
            "Pages per host",
            summary.hosts.most_common(20),
            ("host", "pages"),
            "#558b2f",
        )
    )


def render(summary: Summary, title: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>What was crawled</h2>
{_what(summary)}
{_cards(summary)}
<h2>Broken links</h2>
{_broken(summary.broken, summary.broken_count)}
{_since(summary)}
{_checks(summary)}
{_pages(summary)}
<h2>Charts</h2>
{_charts(summary)}
</body></html>
"""


def write_report(directory: Path) -> Path:
    """Write DIR/report.html from the crawl's files; return its path."""
    summary = summarize(directory)
    path = directory / "report.html"
    kind = "Link check report" if summary.is_check() else "Crawl report"
    write_file(path, render(summary, f"{kind}: {directory.resolve().name}"))
    return path
