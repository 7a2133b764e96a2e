"""Control characters from pages never reach a terminal, a log or a report raw.

Generated inputs: any text a page could put in an href or a page URL, through every
report that shows it (crawler/escapes.py)."""

from __future__ import annotations

import io
import logging
import re
from xml.etree import ElementTree

from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import JUnitXml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import Console

from crawler.check_formats import Results, render
from crawler.escapes import visible
from crawler.logs import OneLine
from crawler.records import RESULTS, LinkCheck, Referrer
from crawler.terminal import broken_line

# What must never be shown raw: C0 (tab and line breaks included), DEL, C1, and the
# bidi and line-separator characters.
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
PIECES = ["\x1b[31m", "\x1b]0;owned\x07", "\n## Pwned", "\r@everyone", "\x00", "\u202e"]
PIECES += ["\u2028", "\x85", "|", "`", "<", ">", "*", "_", "[x](y)", "\r\n# Title"]
HOSTILE = st.lists(
    st.one_of(st.sampled_from(PIECES), st.characters(codec="utf-8")), max_size=12
).map("".join)


def failing(url: str, page: str) -> LinkCheck:
    return LinkCheck(url, "broken", "link", 404, None, None, (Referrer(page, 3),))


@settings(max_examples=300, deadline=None)
@given(HOSTILE, HOSTILE)
def test_every_report_shows_control_characters_as_escapes(href: str, page: str) -> None:
    url, page_url = "http://site.test/" + href, "http://site.test/" + page
    checks = [failing(url, page_url), failing(href, page_url)]
    text = "".join(render(Results.of(checks), "text", 1))
    lines = text.rstrip("\n").split("\n")
    assert not RAW.search(text.replace("\n", "")), text
    assert len(lines) == 5  # the page, its two links, a blank line, the summary
    assert visible(url) in text and visible(page_url) in text

    junit = "".join(render(Results.of(checks), "junit", 1))
    cases = [case.name for suite in JUnitXml.fromstring(junit.encode()) for case in suite]
    assert cases == [visible(url), visible(href)]
    ElementTree.fromstring(junit.split("\n", 1)[1])  # XML 1.0, whatever the href held

    markdown = "".join(render(Results.of(checks), "markdown", 1))
    assert not RAW.search(markdown.replace("\n", ""))
    tokens = MarkdownIt().enable("table").parse(markdown)
    headings = [token for token in tokens if token.type == "heading_open"]
    assert len(headings) == 2  # the title and the one page: nothing injected
    rows = [token for token in tokens if token.type == "tr_open"]
    assert len(rows) == 1 + len(RESULTS) + 1 + 2  # the counts table and the page's table
    assert not any("@everyone" in text for text in plain_text(tokens))  # no one is mentioned


def plain_text(tokens: list[Token]) -> list[str]:
    """The text a markdown renderer shows as prose: not in a link, not in code."""
    found, depth = [], 0
    for token in (child for block in tokens for child in block.children or ()):
        depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
        if token.type == "text" and depth == 0:
            found.append(token.content)
    return found


@given(HOSTILE)
def test_report_broken_and_the_log_escape_too(href: str) -> None:
    line = broken_line({"status": 404, "error": None, "url": href, "referrers": [href]})
    assert not RAW.search(line) and visible(href) in line
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=10_000).print(line, markup=False)
    assert "\x1b]" not in out.getvalue()  # no title-bar sequence, whatever rich adds
    record = logging.makeLogRecord({"msg": "broken: %s", "args": (href,), "levelname": "INFO"})
    logged = OneLine("%(message)s").format(record)
    assert not RAW.search(logged) and logged == "broken: " + visible(href)


def test_visible_escapes() -> None:
    assert visible("plain é 中 text") == "plain é 中 text"
    assert visible("a\x1b[31mb\nc\u202ed\x7f") == "a\\x1b[31mb\\x0ac\\u202ed\\x7f"
