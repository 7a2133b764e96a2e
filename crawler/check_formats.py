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
from collections.abc import Callable, Iterator, Sequence
from xml.etree import ElementTree

from crawler.escapes import visible
from crawler.output.checks_file import counts_line
from crawler.records import RESULTS, TOO_LARGE, LinkCheck, shown_reason

FORMATS = ("text", "json", "markdown", "junit", "csv")
_NO_PAGE = "(seed URLs)"


def render(checks: Sequence[LinkCheck], report_format: str, pages: int) -> Iterator[str]:
    """The report of ``checks`` (of a crawl of ``pages`` pages) in ``report_format``, in
    pieces: a report of every result and referrer is written as it is made, not held."""
    renderers: dict[str, Callable[[Sequence[LinkCheck], int], Iterator[str]]] = {
        "text": _text,
        "json": _json,
        "markdown": _markdown,
        "junit": _junit,
        "csv": _csv,
    }
    return renderers[report_format](checks, pages)


def counts(checks: Sequence[LinkCheck]) -> dict[str, int]:
    """How many results of each kind (every one of RESULTS, in order)."""
    counted = Counter(check.result for check in checks)
    return {result: counted[result] for result in RESULTS}


def summary_line(checks: Sequence[LinkCheck], pages: int) -> str:
    return counts_line(counts(checks), pages, len(cut_pages(checks)))


def cut_pages(checks: Sequence[LinkCheck]) -> list[str]:
    """The pages read only up to --max-bytes: their links past the cut, and the
    fragments not found before it, were not checked."""
    return [check.url for check in checks if check.error == TOO_LARGE]


_CUT = "Cut at --max-bytes (links past the cut not checked, fragments not found not reported):"


def reason(check: LinkCheck) -> str:
    """What went wrong, in a few characters (records.shown_reason), else the result."""
    return str(shown_reason(check.status, check.error) or check.result)


def by_page(checks: Sequence[LinkCheck]) -> dict[str, list[tuple[LinkCheck, int]]]:
    """The failing results under each page that links to them, with the line."""
    pages: dict[str, list[tuple[LinkCheck, int]]] = {}
    for check in checks:
        if not check.is_failing():
            continue
        if not check.referrers:
            pages.setdefault(_NO_PAGE, []).append((check, 0))
        for referrer in check.referrers:
            pages.setdefault(referrer.page, []).append((check, referrer.line))
    return pages


def _text(checks: Sequence[LinkCheck], pages: int) -> Iterator[str]:
    lines = []
    for page, failing in by_page(checks).items():
        lines.append(visible(page))
        width = max(len(reason(check)) for check, _ in failing)
        for check, line in failing:
            url = visible(check.url)
            lines.append(f"  {reason(check):<{width}}  {url}  (line {line}, {check.kind})")
        lines.append("")
    if cut := cut_pages(checks):
        lines += [_CUT, *(f"  {visible(url)}" for url in cut), ""]
    lines.append(summary_line(checks, pages))
    yield "\n".join(lines) + "\n"


def _json(checks: Sequence[LinkCheck], pages: int) -> Iterator[str]:
    """{"summary": {...}, "results": [...]}, a result a line."""
    summary = {"urls": len(checks), "pages": pages, **counts(checks)}
    yield f'{{\n  "summary": {json.dumps(summary)},\n  "results": ['
    separator = "\n    "
    for check in checks:
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


def _markdown(checks: Sequence[LinkCheck], pages: int) -> Iterator[str]:
    failing = sum(check.is_failing() for check in checks)
    title = f"{failing:,} broken links" if failing else "No broken links"
    lines = [f"## Link check: {title}", "", "| Result | Count |", "| --- | ---: |"]
    lines += [f"| {result} | {number:,} |" for result, number in counts(checks).items()]
    lines += ["", f"{len(checks):,} URLs checked on {pages:,} pages.", ""]
    if cut := cut_pages(checks):
        lines += [_CUT, "", *(f"- {_link(url)}" for url in cut), ""]
    for page, broken in by_page(checks).items():
        lines += [f"### {_link(page)}", "", "| Status | Link | Line | Kind |", _RULE]
        for check, line in broken:
            lines.append(f"| {_cell(reason(check))} | {_link(check.url)} | {line} | {check.kind} |")
        lines.append("")
    yield "\n".join(lines)


def _junit(checks: Sequence[LinkCheck], pages: int) -> Iterator[str]:
    counted = counts(checks)
    failures = counted["broken"] + counted["timeout"]
    skipped = counted["excluded"] + counted["unsupported"]
    totals = {"tests": str(len(checks)), "failures": str(failures), "errors": "0"}
    suites = ElementTree.Element("testsuites", {"name": "crawler check", **totals})
    suite = ElementTree.SubElement(
        suites, "testsuite", {"name": "crawler check", "skipped": str(skipped), **totals}
    )
    for check in checks:
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


def _csv(checks: Sequence[LinkCheck], pages: int) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("url", "result", "status", "error", "final_url", "kind", "page", "line"))
    for check in checks:
        head = (check.url, check.result, check.status, check.error, check.final_url, check.kind)
        if not check.referrers:
            writer.writerow((*head, "", ""))
        writer.writerows((*head, referrer.page, referrer.line) for referrer in check.referrers)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
