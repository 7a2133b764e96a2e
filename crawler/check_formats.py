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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from xml.etree import ElementTree

from crawler.escapes import visible
from crawler.output.checks_file import counts_line
from crawler.records import FAILING, RESULTS, TOO_LARGE, LinkCheck, shown_reason

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


def by_page(checks: Iterable[LinkCheck]) -> dict[str, list[tuple[str, str, int, str]]]:
    """The failing results under each page that links to them: reason, URL, line and
    kind (not the results: a page of 225,000 broken links is held once, small)."""
    pages: dict[str, list[tuple[str, str, int, str]]] = {}
    said: dict[str, str] = {}  # each reason and kind one string, however many say it
    for check in checks:
        if not check.is_failing():
            continue
        why, kind = reason(check), check.kind
        why, kind = said.setdefault(why, why), said.setdefault(kind, kind)
        if not check.referrers:
            pages.setdefault(_NO_PAGE, []).append((why, check.url, 0, kind))
        for referrer in check.referrers:
            pages.setdefault(referrer.page, []).append((why, check.url, referrer.line, kind))
    return pages


def _text(results: Results, pages: int) -> Iterator[str]:
    for page, failing in by_page(results).items():
        yield visible(page) + "\n"
        width = max(len(why) for why, *_ in failing)
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
    for page, broken in by_page(results).items():
        lines += [f"### {_link(page)}", "", "| Status | Link | Line | Kind |", _RULE]
        for why, url, line, kind in broken:
            lines.append(f"| {_cell(why)} | {_link(url)} | {line} | {kind} |")
        lines.append("")
    yield "\n".join(lines)


def _junit(results: Results, pages: int) -> Iterator[str]:
    counted = results.counts()
    skipped = counted["excluded"] + counted["unsupported"]
    totals = {"tests": str(results.total()), "failures": str(results.failing()), "errors": "0"}
    suites = ElementTree.Element("testsuites", {"name": "crawler check", **totals})
    suite = ElementTree.SubElement(
        suites, "testsuite", {"name": "crawler check", "skipped": str(skipped), **totals}
    )
    for check in results:
        # visible(): XML 1.0 has no control characters but tab and line breaks.
        name = visible(check.url)
        case = ElementTree.SubElement(suite, "testcase", name=name, classname=check.kind)
        if check.is_failing():
            failure = ElementTree.SubElement(
                case, "failure", message=reason(check), type=check.result
            )
            failure.text = "\n".join(
                f"linked from {visible(referrer.page)} line {referrer.line}"
                for referrer in check.referrers
            )
        elif check.result in ("excluded", "unsupported"):
            ElementTree.SubElement(case, "skipped", message=visible(check.error or check.result))
        if check.error == TOO_LARGE:
            ElementTree.SubElement(case, "system-out").text = _CUT
    ElementTree.indent(suites)
    body = ElementTree.tostring(suites, encoding="unicode")
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


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
