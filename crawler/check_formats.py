"""crawler check's report, in the formats people and CI read: pure functions of the results.

- text: grouped by page, each page with its failing links (status or reason,
  URL, line, kind), then one summary line;
- json: the summary and every result with all its referrers;
- markdown: for a pull-request comment: the summary table, then a table of
  failing links per page;
- junit: JUnit XML (one test case per URL checked, a failure for each broken
  one, skipped for excluded and unsupported ones), what GitLab, Jenkins and
  GitHub test reporters read;
- csv: one row per result and referrer.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO
from xml.sax.saxutils import escape, quoteattr

import orjson

from crawler.errors import OutputFailed
from crawler.escapes import visible
from crawler.output.checks_file import counts_line
from crawler.records import FAILING, RESULTS, TOO_LARGE, LinkCheck, Referrer, shown_reason

FORMATS = ("text", "json", "markdown", "junit", "csv")
_NO_PAGE = "(seed URLs)"


class Results:
    """A check's results as its report reads them: counted as they came (with the
    pages cut at --max-bytes), then read again one at a time, as often as the report
    needs (the command line reads checks.jsonl: a page of 225,000 links has as many
    results, never all held)."""

    def __init__(self, read: Callable[[], Iterable[LinkCheck]]) -> None:
        self._read = read
        self._counted: Counter[str] = Counter()
        self.cut: list[str] = []

    @classmethod
    def of(cls, checks: Sequence[LinkCheck]) -> Results:
        results = cls(lambda: checks)
        for check in checks:
            results.add(check)
        return results

    def add(self, check: LinkCheck) -> None:
        self._counted[check.result] += 1
        if check.error == TOO_LARGE:
            # Its links past the cut, and the fragments not found before it, were not checked.
            self.cut.append(check.url)

    def __iter__(self) -> Iterator[LinkCheck]:
        return iter(self._read())

    def counts(self) -> dict[str, int]:
        """How many results of each kind (every one of RESULTS, in order)."""
        return {result: self._counted[result] for result in RESULTS}

    def total(self) -> int:
        return sum(self._counted.values())

    def failing(self) -> int:
        return sum(self._counted[result] for result in FAILING)

    def summary_line(self, pages: int) -> str:
        return counts_line(self.counts(), pages, len(self.cut))


def render(results: Results, report_format: str, pages: int) -> Iterator[str]:
    """The report of ``results`` (of a crawl of ``pages`` pages) in ``report_format``, in
    pieces: a report of every result and referrer is written as it is made, not held."""
    renderers: dict[str, Callable[[Results, int], Iterator[str]]] = {
        "text": _text,
        "json": _json,
        "markdown": _markdown,
        "junit": _junit,
        "csv": _csv,
    }
    return renderers[report_format](results, pages)


_CUT = "Cut at --max-bytes (links past the cut not checked, fragments not found not reported):"


def reason(check: LinkCheck) -> str:
    """What went wrong, in a few characters (records.shown_reason), else the result."""
    return str(shown_reason(check.status, check.error) or check.result)


Row = tuple[str, str, int, str]


def by_page(checks: Iterable[LinkCheck]) -> Iterator[tuple[str, int, Iterator[Row]]]:
    """The failing results under each page that links to them (reason, URL, line and
    kind), pages in the order first met: each page, the width of its widest reason,
    and its rows (read them before the next page). To group them, each failing result
    is spooled (to a temporary file past a few MB) as it is read, and only where it
    is, its page and its line are held: 16 bytes a referrer, where the rows cost 180
    (a page of 600,000 broken links: 10 MB against 110)."""
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as spool:
        grouped = _Grouped()
        try:
            grouped.spool(checks, spool)
        except OSError as error:
            raise OutputFailed(f"cannot write the report: {error.strerror}") from None
        yield from grouped.pages(spool)


_IN_MEMORY = 8 * 1024 * 1024


class _Grouped:
    """by_page's index of the spooled rows: for each referrer of a failing result, its
    page's id, its row's offset and its line."""

    def __init__(self) -> None:
        self._pages: dict[str, int] = {}
        self._widths: list[int] = []
        self._page_of, self._at, self._lines = array("I"), array("Q"), array("I")

    def spool(self, checks: Iterable[LinkCheck], spool: IO[bytes]) -> None:
        offset = 0
        for check in checks:
            if not check.is_failing():
                continue
            why = reason(check)
            row = orjson.dumps((why, check.url, check.kind)) + b"\n"
            spool.write(row)
            for referrer in check.referrers or (Referrer(_NO_PAGE, 0),):
                page = self._pages.setdefault(referrer.page, len(self._pages))
                if page == len(self._widths):
                    self._widths.append(0)
                self._widths[page] = max(self._widths[page], len(why))
                self._page_of.append(page)
                self._at.append(offset)
                self._lines.append(referrer.line)
            offset += len(row)

    def pages(self, spool: IO[bytes]) -> Iterator[tuple[str, int, Iterator[Row]]]:
        counts = [0] * len(self._pages)
        for page_id in self._page_of:
            counts[page_id] += 1
        order, start = self._grouped(counts), 0
        for page, page_id in self._pages.items():
            end = start + counts[page_id]
            yield page, self._widths[page_id], self._rows(spool, order[start:end])
            start = end

    def _grouped(self, counts: list[int]) -> array[int]:
        """The referrers' indexes, page by page, each page's in the order they came."""
        starts, total = [], 0
        for count in counts:
            starts.append(total)
            total += count
        order = array("I", bytes(4 * total))
        for index, page in enumerate(self._page_of):
            order[starts[page]] = index
            starts[page] += 1
        return order

    def _rows(self, spool: IO[bytes], indexes: array[int]) -> Iterator[Row]:
        for index in indexes:
            spool.seek(self._at[index])
            why, url, kind = orjson.loads(spool.readline())
            yield why, url, self._lines[index], kind


def _text(results: Results, pages: int) -> Iterator[str]:
    for page, width, failing in by_page(results):
        yield visible(page) + "\n"
        for why, url, line, kind in failing:
            yield f"  {why:<{width}}  {visible(url)}  (line {line}, {kind})\n"
        yield "\n"
    if results.cut:
        yield "\n".join([_CUT, *(f"  {visible(url)}" for url in results.cut)]) + "\n\n"
    yield results.summary_line(pages) + "\n"


def _json(results: Results, pages: int) -> Iterator[str]:
    """{"summary": {...}, "results": [...]}, a result a line."""
    summary = {"urls": results.total(), "pages": pages, **results.counts()}
    yield f'{{\n  "summary": {json.dumps(summary)},\n  "results": ['
    separator = "\n    "
    for check in results:
        yield separator + json.dumps(check.as_dict(), ensure_ascii=False)
        separator = ",\n    "
    yield "\n  ]\n}\n"


def _cell(text: str) -> str:
    """Text for a markdown table cell, on one line (control characters escaped): a pipe
    would end the cell."""
    return visible(text).replace("|", "%7C")


def _link(url: str) -> str:
    """A URL in markdown, never read as markup (no `*` or `_` as emphasis, no @mention,
    no line of its own): an autolink, or else a code span."""
    url = visible(url)
    if url.startswith(("http://", "https://")) and not any(c in url for c in "<> `"):
        return f"<{_cell(url)}>"
    return "`" + _cell(url).replace("`", "%60") + "`"


_RULE = "| --- | --- | ---: | --- |"


def _markdown(results: Results, pages: int) -> Iterator[str]:
    failing = results.failing()
    title = f"{failing:,} broken links" if failing else "No broken links"
    lines = [f"## Link check: {title}", "", "| Result | Count |", "| --- | ---: |"]
    lines += [f"| {result} | {number:,} |" for result, number in results.counts().items()]
    lines += ["", f"{results.total():,} URLs checked on {pages:,} pages.", ""]
    if results.cut:
        lines += [_CUT, "", *(f"- {_link(url)}" for url in results.cut), ""]
    for page, _, broken in by_page(results):
        lines += [f"### {_link(page)}", "", "| Status | Link | Line | Kind |", _RULE]
        for why, url, line, kind in broken:
            lines.append(f"| {_cell(why)} | {_link(url)} | {line} | {kind} |")
        lines.append("")
    yield "\n".join(lines)


def _junit(results: Results, pages: int) -> Iterator[str]:
    """One test case a URL, written as it is read (a tree of 600,000 cases would be
    held whole)."""
    counted = results.counts()
    skipped = counted["excluded"] + counted["unsupported"]
    totals = f'tests="{results.total()}" failures="{results.failing()}" errors="0"'
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield f'<testsuites name="crawler check" {totals}>\n'
    yield f'  <testsuite name="crawler check" skipped="{skipped}" {totals}>\n'
    for check in results:
        yield _junit_case(check)
    yield "  </testsuite>\n</testsuites>\n"


def _junit_case(check: LinkCheck) -> str:
    # visible(): XML 1.0 has no control characters but tab and line breaks.
    head = f"    <testcase name={quoteattr(visible(check.url))} classname={quoteattr(check.kind)}"
    inside = []
    if check.is_failing():
        where = "\n".join(
            f"linked from {visible(referrer.page)} line {referrer.line}"
            for referrer in check.referrers
        )
        message, kind = quoteattr(reason(check)), quoteattr(check.result)
        inside.append(f"<failure message={message} type={kind}>{escape(where)}</failure>")
    elif check.result in ("excluded", "unsupported"):
        inside.append(f"<skipped message={quoteattr(visible(check.error or check.result))} />")
    if check.error == TOO_LARGE:
        inside.append(f"<system-out>{escape(_CUT)}</system-out>")
    if not inside:
        return head + " />\n"
    return head + ">\n" + "".join(f"      {part}\n" for part in inside) + "    </testcase>\n"


def _csv(results: Results, pages: int) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("url", "result", "status", "error", "final_url", "kind", "page", "line"))
    for check in results:
        head = (check.url, check.result, check.status, check.error, check.final_url, check.kind)
        if not check.referrers:
            writer.writerow((*head, "", ""))
        writer.writerows((*head, referrer.page, referrer.line) for referrer in check.referrers)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
