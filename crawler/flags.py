"""The command line's flags and config file, merged into the settings of one crawl.

Which config file is read: ``--config PATH``; else ``./crawler.toml``; else a
``./config.toml`` that has a ``[crawl]`` table (a site generator's own
config.toml, Hugo's or Netlify's, is none of ours: it is ignored, and the log
says so). Flags win over the file. A setting is named as the person typed it:
``--max-pages`` for a flag, ``max_pages (in crawler.toml)`` for the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import stat
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from crawler.config import CrawlConfig, crawl_table, load_toml, read_toml
from crawler.errors import ConfigError
from crawler.option_groups import check_flags, render_flags

DEFAULT_OUTPUT = "output"
OUR_FILE = "crawler.toml"
SHARED_FILE = "config.toml"
# The library's name of a setting whose flag says it otherwise.
_FLAG_NAMES = {"output_dir": "output", "report_format": "format"}

CHECK_EXAMPLES = """examples:
  crawler check https://example.org/
  crawler check https://example.org/ --format junit --report links.xml
  crawler check https://example.org/ -o site --update --exclude '*linkedin.com*'
  crawler check https://example.org/ --accept 200..299,403 --check-fragments

exit: 0 nothing broken, 1 broken links (or timeouts) found, 2 usage or config error
"""
EXAMPLES = """examples:
  crawler crawl https://example.org/ --max-pages 1000 -o example
  crawler crawl https://example.org/ -o example --update --quiet --fail-on-broken
  crawler crawl -o example --resume
  crawler crawl -i sites.txt --span-hosts --max-pages-per-host 50 -o broad
  crawler report example --broken
  crawler demo
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments:"):
            hint = _flag_hint(self, message.split(":", 1)[1].split()[0])
        self.exit(2, f"{self.prog}: error: {message}{hint} (see '{self.prog} --help')\n")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag of ``parser`` and of its commands."""
    options: list[str] = []
    for action in parser._actions:
        options += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                options += _options(command)
    return options


def _flag_hint(parser: argparse.ArgumentParser, typed: str) -> str:
    options = _options(parser)
    close = difflib.get_close_matches(typed.split("=")[0], options, n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def _version() -> str:
    try:
        return version("crawler")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="crawler",
        description="A fast, polite asynchronous web crawler.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"crawler {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="serve the bundled demo site and crawl it")
    demo.add_argument("--pages", type=int, default=500, help="pages on the demo site")
    demo.add_argument("--serve", action="store_true", help="only serve it, until Ctrl-C")
    crawl = commands.add_parser(
        "crawl",
        help="crawl from seed URLs",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _crawl_flags(crawl)
    _with_defaults(crawl)
    check = commands.add_parser(
        "check",
        help="crawl from seed URLs and check every link: offsite, images, scripts, fragments",
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _crawl_flags(check, command="check")
    _with_defaults(check)
    report = commands.add_parser("report", help="summary of a crawl; writes DIR/report.html")
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument(
        "--broken", action="store_true", help="only the broken links, one a line, with referrers"
    )
    return parser


def _switch(parser: argparse.ArgumentParser, *names: str, help: str) -> None:
    parser.add_argument(*names, action="store_true", default=None, help=help)


def _crawl_flags(parser: argparse.ArgumentParser, command: str = "crawl") -> None:
    flag = parser.add_argument
    flag("urls", nargs="*", metavar="URL", help="seed URLs (http or https)")
    flag(
        "-i",
        "--input-file",
        metavar="FILE",
        help="more seed URLs, one a line ('-': standard input; # comments)",
    )
    flag(
        "--config",
        type=Path,
        help=f"config file (default: ./{OUR_FILE}, or a ./{SHARED_FILE} with a [crawl] table)",
    )
    flag("-o", "--output", metavar="DIR", help="output folder")
    flag("--max-pages", type=int, metavar="N", help="stop after N pages fetched")
    flag("--max-pages-per-host", type=int, metavar="N", help="start at most N pages on one host")
    flag("--max-depth", type=int, metavar="N", help="link depth from the seeds (seeds: 0)")
    flag("--max-time", type=float, metavar="S", help="stop scheduling after S seconds")
    flag("--concurrency", type=int, metavar="N", help="requests in flight in total")
    flag("--per-host", type=int, metavar="N", help="requests in flight per host")
    flag("--processes", type=int, metavar="N", help="spread hosts over this many processes")
    flag("--frontier", metavar="URL", help="redis://HOST:PORT/DB: share the crawl with others")
    flag(
        "--delay",
        type=float,
        metavar="S",
        help="minimum gap in seconds between request starts to one host",
    )
    flag("--allow-domain", action="append", metavar="D", help="also crawl D and its subdomains")
    _switch(parser, "--span-hosts", help="follow links to any host (wget's -H)")
    _switch(parser, "--ignore-robots", help="do not obey robots.txt")
    _switch(
        parser,
        "--allow-private",
        help="connect to loopback, private and link-local addresses although the seeds are public",
    )
    _switch(
        parser,
        "--ignore-nofollow",
        help="follow links marked nofollow too (rel, meta robots, X-Robots-Tag)",
    )
    _switch(parser, "--no-sitemaps", help="do not read robots.txt Sitemap: lines, /sitemap.xml")
    _request_flags(parser)
    _run_flags(parser, command)
    if command == "check":
        check_flags(parser, switch=_switch)
    else:
        render_flags(parser)


def _request_flags(parser: argparse.ArgumentParser) -> None:
    flag = parser.add_argument
    flag("--user-agent", metavar="S", help="User-Agent header, matched against robots.txt")
    flag(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="send this header to the seeds' origins (repeatable)",
    )
    flag("--auth", metavar="USER:PASS", help="HTTP Basic credentials for the seeds' origins")
    flag("--cookies", metavar="FILE", help="cookies.txt (Netscape format, as wget and curl)")
    flag("--proxy", metavar="URL", help="HTTP proxy (default: HTTP_PROXY/HTTPS_PROXY/NO_PROXY)")
    flag("--retries", type=int, metavar="N", help="retries: timeouts, connection errors, 429, 5xx")
    flag("--max-retry-after", type=float, metavar="S", help="longest Retry-After honoured")
    flag("--timeout", type=float, metavar="S", help="total deadline for one request")
    flag("--max-bytes", type=int, metavar="N", help="largest response body (decompressed)")
    _switch(parser, "--keep-query-order", help="do not sort query parameters")


def _run_flags(parser: argparse.ArgumentParser, command: str) -> None:
    flag = parser.add_argument
    _switch(parser, "--save-html", help="mirror pages under OUTPUT/html/")
    if command == "crawl":
        flag("--format", choices=("jsonl", "csv"), help="pages file format")
    _switch(parser, "--resume", help="continue the unfinished crawl in the output folder")
    _switch(parser, "--incremental", help="recrawl a finished crawl with conditional requests")
    _switch(
        parser,
        "--update",
        help="the nightly job: start a crawl, continue an unfinished one, or recrawl a "
        "finished one incrementally, whichever the output folder needs",
    )
    flag(
        "--allow",
        action="append",
        metavar="PATTERN",
        help="follow only URLs matching (a glob on the whole URL, or re:REGEX; repeatable)",
    )
    flag(
        "--deny",
        action="append",
        metavar="PATTERN",
        help="never follow URLs matching (glob or re:REGEX; repeatable; wins over --allow)",
    )
    flag("--extract", metavar="MOD:FUNC", help="extractor; its items go to OUTPUT/items.jsonl")
    flag("--warc", metavar="PATH", help="also write every request and response to a WARC file")
    flag("--max-redirects", type=int, metavar="N", help="redirects followed for one URL")
    if command == "crawl":
        _switch(parser, "--fail-on-broken", help="exit 1 when broken links were found")
    _switch(parser, "-q", "--quiet", help="no progress or summary; only what needs a person")
    _switch(
        parser,
        "-v",
        "--verbose",
        help="a debug log on stderr: every URL as it is done, with its status and time",
    )
    flag("--log-file", type=Path, metavar="PATH", help="write a readable log of the crawl here")


def _with_defaults(parser: argparse.ArgumentParser) -> None:
    """Each flag's help ends with its default (CrawlConfig's), when it has one."""
    defaults = {field.name: field.default for field in dataclasses.fields(CrawlConfig)}
    defaults["output"] = DEFAULT_OUTPUT + "/"
    defaults["cache_age"] = "1d"
    for action in parser._actions:
        value = defaults.get(action.dest)
        if value in (None, (), False, "") or action.help is None:
            continue
        shown = f"{value:,}" if isinstance(value, int) else value
        if isinstance(value, tuple):
            shown = ",".join(value)
        action.help += f" (default: {shown})"


def find_config(
    folder: Path, command: str = "crawl"
) -> tuple[Path | None, dict[str, Any], str | None]:
    """The config file to read from ``folder``, its values for ``command`` (each file is
    read once), and what the log should say."""
    own = folder / OUR_FILE
    if own.is_file():
        _refuse_untrusted(own)
        return own, load_toml(own, command), None
    shared = folder / SHARED_FILE
    if not shared.is_file():
        return None, {}, None
    _refuse_untrusted(shared)
    try:
        document = read_toml(shared)
    except ConfigError:  # ours if it means to have the table: its error is said
        text = shared.read_text(encoding="utf-8", errors="replace")
        if any(line.strip().startswith("[crawl") for line in text.splitlines()):
            raise
        document = {}
    if "crawl" in document:
        return shared, crawl_table(document, shared, command), None
    return None, {}, f"{shared} has no [crawl] table: not ours, ignored (use {OUR_FILE})"


def _refuse_untrusted(path: Path) -> None:
    """A config file found in the working folder (not named with --config) is read only
    if it is the user's own and no one else may write it, as git refuses a repository
    another user owns: it can name an extractor, code that would run as the user."""
    status = path.stat()
    if status.st_uid != os.geteuid():
        whose = "is owned by another user"
    elif status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        whose = "can be written by other users"
    else:
        return
    raise ConfigError(
        f"{path.resolve()} {whose}, so it was not read (it could run code as you);"
        f" if you trust it, name it: --config {path}"
    )


@dataclasses.dataclass
class Settings:
    """What one crawl command was given: values by setting, and where they came from."""

    values: dict[str, Any]
    flags: set[str]
    path: Path | None
    note: str | None = None

    def label(self, setting: str) -> str:
        """A setting as the person typed it."""
        key = _FLAG_NAMES.get(setting, setting)
        if key == "seeds":
            return "URL" if "seeds" in self.flags else f"seeds (in {self.path})"
        if key in self.flags or self.path is None:
            return "--" + key.replace("_", "-")
        return f"{key} (in {self.path})"

    def named(self, error: ConfigError) -> ConfigError:
        """``error`` with its setting named as the person typed it."""
        message = str(error)
        if error.setting is None or not message.startswith(error.setting):
            return error
        return ConfigError(self.label(error.setting) + message[len(error.setting) :])


def settings_from(args: argparse.Namespace) -> Settings:
    """The config file's [crawl] values overridden by the flags that were given."""
    if args.config is not None:
        path, values, note = args.config, load_toml(args.config, args.command), None
    else:
        path, values, note = find_config(Path.cwd(), args.command)
    flags = {key: value for key, value in vars(args).items() if value is not None}
    for key in ("command", "config", "urls"):
        flags.pop(key, None)
    values.update(flags)
    if args.urls:
        values["seeds"] = args.urls
        flags["seeds"] = args.urls
    values.setdefault("output", DEFAULT_OUTPUT)
    return Settings(values, set(flags), path, note)
