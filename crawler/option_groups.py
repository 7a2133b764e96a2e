"""Groups of command-line flags of one command: crawler check's, and --render's.

Each flag is a setting of the same name (flags.py merges them with the config
file's); a list given on one flag ("image,font") becomes a tuple.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from crawler.check_formats import FORMATS
from crawler.values import RENDER_MODES

Switch = Callable[..., None]


def check_flags(parser: argparse.ArgumentParser, *, switch: Switch) -> None:
    """crawler check's own flags."""
    flag = parser.add_argument
    flag(
        "--format",
        dest="report_format",
        choices=FORMATS,
        help="the report's format (default: text)",
    )
    flag("--report", type=Path, metavar="FILE", help="write the report here, not to stdout")
    flag(
        "--accept",
        metavar="CODES",
        help="statuses that count as working, codes and ranges: 200..299,403",
    )
    flag(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="never check URLs matching (glob on the whole URL, or re:REGEX; repeatable)",
    )
    flag(
        "--include",
        action="append",
        metavar="PATTERN",
        help="check URLs matching although an --exclude matches them (repeatable)",
    )
    flag(
        "--cache-age",
        metavar="AGE",
        help="reuse a working link's result for this long in later passes (--update): "
        "seconds, or 30m, 12h, 1d",
    )
    switch(parser, "--check-fragments", help="read offsite pages for the #fragments linked to")


def render_flags(parser: argparse.ArgumentParser) -> None:
    """crawl's --render flags (docs/rendering.md)."""
    flag = parser.add_argument
    flag(
        "--render",
        choices=RENDER_MODES,
        help="run pages' scripts in a headless browser: never, auto (pages that show they"
        " need it), always",
    )
    flag(
        "--render-allow",
        action="append",
        metavar="PATTERN",
        help="render only URLs matching (glob or re:REGEX; repeatable)",
    )
    flag("--render-tabs", type=int, metavar="N", help="pages rendered at once")
    flag("--render-timeout", type=float, metavar="S", help="longest render of one page")
    flag(
        "--render-wait",
        type=float,
        metavar="S",
        help="settled: nothing in flight and no DOM change for S seconds",
    )
    flag("--render-scroll", type=int, metavar="N", help="scroll to the bottom up to N times")
    flag(
        "--render-block",
        type=_names,
        metavar="TYPES",
        help="resource types a rendered page may not load (comma-separated)",
    )
    flag(
        "--browser",
        metavar="PATH",
        help="the browser (default: chromium-headless-shell, else chromium)",
    )


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, in lower case, blanks dropped."""
    return tuple(name.strip().lower() for name in text.split(",") if name.strip())
