"""CrawlConfig: every crawl setting, frozen and validated, and config.toml loading.

One name per setting everywhere: the
flag ``--max-pages`` is ``max_pages`` in config.toml's [crawl] table and here.
A bad value raises ConfigError with a message a person can act on.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.errors import ConfigError
from crawler.extract import Extractor, LinkFilter, LinkRules
from crawler.values import (
    accepted_statuses,
    check_headers,
    check_seed,
    duration,
    proxy_url,
    render_problem,
)
from crawler.web.urls import domain_problem

DEFAULT_USER_AGENT = "crawler/0.1 (polite asyncio crawler; obeys robots.txt)"
FORMATS = ("jsonl", "csv")
FRONTIER_SCHEMES = ("redis://", "rediss://", "unix://")
# Settings of the command line only: config.toml may hold them, CrawlConfig does not.
CLI_KEYS = frozenset({"quiet", "verbose", "log_file", "fail_on_broken", "report_format", "report"})


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    """Every setting of one crawl. ``output_dir=None`` writes no files."""

    # The seeds: a list is checked at once; any other iterable (a generator, an open
    # file) is read lazily as the crawl starts (``seed_stream``), like --input-file.
    seeds: tuple[str, ...] = ()
    # More seeds, one URL a line ("-": standard input), read a batch at a time into
    # the frontier; blank lines and "#" comments skipped, a bad line counted.
    input_file: Path | None = None
    # Library only: the iterable of seeds read lazily (set from a ``seeds`` that is no
    # list), and the hosts the streamed seeds named (the run sets it: they are in scope).
    seed_stream: Iterable[str] | None = field(default=None, compare=False, repr=False)
    seed_hosts: tuple[str, ...] = field(default=(), repr=False)
    output_dir: Path | None = None
    max_pages: int | None = None
    # Pages started on one host, at most (its other URLs are skipped, counted).
    max_pages_per_host: int | None = None
    max_depth: int = 100
    max_time: float | None = None
    concurrency: int = 32
    per_host: int = 4
    # The multiprocessing front: hosts are split between this many processes.
    processes: int = 1
    delay: float = 0.0
    allow_domain: tuple[str, ...] = ()
    # Follow links to any host, not only the seeds' and allow_domain's (wget's -H).
    span_hosts: bool = False
    ignore_robots: bool = False
    # Connect to loopback, private and link-local addresses even when the seeds are
    # public (seeds of such a kind allow their own kind anyway).
    allow_private: bool = False
    ignore_nofollow: bool = False
    no_sitemaps: bool = False
    user_agent: str = DEFAULT_USER_AGENT
    # Sent to the seeds' hosts only: extra headers ("Name: value") and HTTP Basic
    # credentials ("user:password"; a seed's own user:password@ wins for its host).
    header: tuple[str, ...] = ()
    auth: str | None = None
    # A cookies.txt (Netscape format) whose cookies go to their own domains.
    cookies: Path | None = None
    # An HTTP proxy for every request; None: HTTP_PROXY, HTTPS_PROXY, NO_PROXY.
    proxy: str | None = None
    retries: int = 2
    max_retry_after: float = 60.0
    timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    save_html: bool = False
    format: str = "jsonl"
    keep_query_order: bool = False
    resume: bool = False
    incremental: bool = False
    # The nightly job: a new crawl, --resume or --incremental, whichever the
    # output folder needs (none there, an unfinished one, a finished one).
    update: bool = False
    # Link rules: globs on the whole URL, or regular expressions as "re:...".
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    # Library only: a function of the URL that says whether to follow it.
    link_filter: LinkFilter | None = field(default=None, compare=False)
    # An extractor: "package.module:function", or (library) the function itself.
    extract: str | Extractor | None = None
    # Also write every request and response to this WARC file (gzip per record).
    warc: Path | None = None
    # A shared frontier, redis://HOST:PORT/DB: members anywhere share one crawl.
    frontier: str | None = None
    # Redirects followed for one URL before it is recorded as too-many-redirects.
    max_redirects: int = 10
    # crawler check: every link found is checked too (offsite links, requisites,
    # fragments), and its results come out as LinkCheck objects (the library sets it).
    check: bool = False
    # crawler check: the statuses that count as working ("200..299,403").
    accept: str = "200..299"
    # crawler check: links never requested (a glob on the whole URL, or re:REGEX);
    # a link matching an --include pattern is checked even so.
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    # crawler check: seconds a working link's result is reused by later passes
    # (--update) before it is requested again; "1d", "12h", "30m" in files and flags.
    cache_age: float = 86400.0
    # crawler check: read offsite HTML pages for the #fragments linked to (in-scope
    # pages are always read).
    check_fragments: bool = False
    # Pages that only JavaScript builds, rendered in a headless browser (docs/rendering.md):
    # "never", "auto" (on evidence) or "always"; with render_allow, only URLs matching.
    render: str = "never"
    render_allow: tuple[str, ...] = ()
    render_tabs: int = 4
    render_timeout: float = 15.0
    render_wait: float = 0.1  # settled: no request in flight, no DOM change this long
    render_scroll: int = 0
    render_block: tuple[str, ...] = ("image", "media", "font")  # CDP's resource types
    browser: Path | None = None  # default: Debian's chromium-headless-shell, else chromium

    def __post_init__(self) -> None:
        _coerce(self)
        _check_types(self)
        _check_ranges(self)
        for seed in self.seeds:
            check_seed(seed)
        _check_seed_list(self)
        for domain in self.allow_domain:
            if (problem := domain_problem(domain)) is not None:
                raise ConfigError(f"allow_domain: {problem}", setting="allow_domain")
        LinkRules(self.allow, self.deny, None)  # a bad pattern is a ConfigError now
        if sum((self.resume, self.incremental, self.update)) > 1:
            raise ConfigError("--resume, --incremental and --update do not go together")
        _check_requests(self)
        if self.frontier is not None:
            _check_frontier(self)
        accepted_statuses(self.accept)  # a bad --accept is a ConfigError now
        LinkRules(self.include, self.exclude, None)
        if self.check and self.max_pages_per_host is not None:
            raise ConfigError(
                "crawler check checks every link: --max-pages-per-host is for crawl",
                setting="max_pages_per_host",
            )
        if self.check and (self.processes > 1 or self.frontier is not None):
            raise ConfigError(
                "crawler check runs in one process: not with --processes or --frontier"
            )
        _check_render(self)
        if self.format not in FORMATS:
            raise ConfigError(
                f"format must be one of {', '.join(FORMATS)}, not {self.format!r}", setting="format"
            )


_LISTS: tuple[str, ...] = ("seeds", "seed_hosts", "allow_domain", "allow", "deny", "header")
_LISTS += ("exclude", "include", "render_allow", "render_block")
_PATHS = ("output_dir", "warc", "cookies", "input_file", "browser")


def _check_requests(config: CrawlConfig) -> None:
    check_headers(config.header, config.user_agent)
    if config.auth is not None and ":" not in config.auth:
        raise ConfigError("auth wants USER:PASSWORD", setting="auth")
    if config.proxy is not None:
        object.__setattr__(config, "proxy", proxy_url(config.proxy, "proxy"))


def _coerce(config: CrawlConfig) -> None:
    """Any sequence for a list, any str or path-like for a path (the library's
    callers pass lists and strings); kept as tuples and Paths."""
    if not isinstance(config.seeds, (str, bytes, Collection)) and isinstance(
        config.seeds, Iterable
    ):
        if config.seed_stream is not None:
            raise ConfigError("seeds: one iterable read lazily, not two", setting="seeds")
        object.__setattr__(config, "seed_stream", config.seeds)
        object.__setattr__(config, "seeds", ())
    for name in _LISTS:
        value = getattr(config, name)
        if isinstance(value, (str, bytes)):
            raise ConfigError(f"{name} must be a list of strings, not {value!r}", setting=name)
        if isinstance(value, Iterable) and not isinstance(value, tuple):
            object.__setattr__(config, name, tuple(value))
    for name in _PATHS:
        value = getattr(config, name)
        if isinstance(value, (str, os.PathLike)) and not isinstance(value, Path):
            object.__setattr__(config, name, Path(value))
    if isinstance(config.cache_age, str):
        object.__setattr__(config, "cache_age", duration(config.cache_age, "cache_age"))


def _check_render(config: CrawlConfig) -> None:
    if problem := render_problem(config.render, config.render_block, config.browser):
        raise ConfigError(problem[0], setting=problem[1])
    LinkRules(config.render_allow, (), None)  # a bad pattern is a ConfigError now
    if config.check and config.render != "never":
        raise ConfigError("crawler check does not render pages yet: --render is for crawl")


def _check_seed_list(config: CrawlConfig) -> None:
    path = config.input_file
    if path is None and config.seed_stream is None:
        return
    if path is not None and (problem := _unreadable(path)) is not None:
        raise ConfigError(f"input_file: {path} {problem}", setting="input_file")
    if config.processes > 1 and config.output_dir is None:
        raise ConfigError("a seed list with processes needs an output folder", "input_file")


def _unreadable(path: Path) -> str | None:
    """Why the seed list at ``path`` cannot be read ("-" is standard input)."""
    if str(path) == "-" or (path.is_file() and os.access(path, os.R_OK)):
        return None
    if not path.exists():
        return "does not exist"
    return "is not a file" if not path.is_file() else "cannot be read"


def _check_frontier(config: CrawlConfig) -> None:
    if not config.frontier or not config.frontier.startswith(FRONTIER_SCHEMES):
        raise ConfigError(
            f"frontier must be a redis:// URL, not {config.frontier!r}", setting="frontier"
        )
    if config.incremental or config.update:
        raise ConfigError(
            "--incremental and --update need a crawl's own state; not with --frontier"
        )
    if config.max_pages_per_host is not None:
        raise ConfigError(
            "--max-pages-per-host is counted by one machine's frontier: not with --frontier",
            setting="max_pages_per_host",
        )
    if config.processes > 1:
        raise ConfigError(
            "--processes with --frontier: start one member per process instead "
            "(each is a client of the shared frontier)"
        )


_POSITIVE = (
    "max_pages",
    "max_pages_per_host",
    "max_time",
    "concurrency",
    "per_host",
    "processes",
    "timeout",
    "max_bytes",
    "render_tabs",
    "render_timeout",
)
_NON_NEGATIVE: tuple[str, ...] = ("max_depth", "delay", "retries", "max_retry_after")
_NON_NEGATIVE += ("max_redirects", "cache_age", "render_wait", "render_scroll")


# Processes a CPU may run: more only share the same CPUs, each with its own memory
# (and 10,000 by a slip of the finger would take the machine's).
PROCESSES_PER_CPU = 4


def _check_ranges(config: CrawlConfig) -> None:
    for name in (*_POSITIVE, *_NON_NEGATIVE):
        value = getattr(config, name)
        if isinstance(value, float) and not math.isfinite(value):
            # inf and nan pass every comparison below that they should fail.
            raise ConfigError(f"{name} must be a finite number, not {value}", setting=name)
    for name in _POSITIVE:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be greater than 0, not {value}", setting=name)
    for name in _NON_NEGATIVE:
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ConfigError(f"{name} must not be negative, not {value}", setting=name)
    cpus = len(os.sched_getaffinity(0))
    if config.processes > PROCESSES_PER_CPU * cpus:
        raise ConfigError(
            f"processes must be at most {PROCESSES_PER_CPU * cpus} ({PROCESSES_PER_CPU} for"
            f" each of the {cpus} CPUs this process may use), not {config.processes}",
            setting="processes",
        )


_KINDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "int": ("whole number", (int,)),
    "int | None": ("whole number", (int, type(None))),
    "float": ("number", (int, float)),
    "float | None": ("number", (int, float, type(None))),
    "bool": ("true or false", (bool,)),
    "str": ("string", (str,)),
    "str | None": ("string", (str, type(None))),
}


def _check_types(config: CrawlConfig) -> None:
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        kind = _KINDS.get(str(item.type))
        if kind is None:
            continue
        expected, types = kind
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(f"{item.name} must be a {expected}, not {value!r}", setting=item.name)
    for name in _LISTS:
        value = getattr(config, name)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, not {value!r}", setting=name)
    for name in _PATHS:
        value = getattr(config, name)
        if value is not None and not isinstance(value, Path):
            raise ConfigError(f"{name} must be a path, not {value!r}", setting=name)
    for name in ("extract", "link_filter"):
        value = getattr(config, name)
        if (
            value is not None
            and not callable(value)
            and not (name == "extract" and isinstance(value, str))
        ):
            raise ConfigError(f"{name} must be a function, not {value!r}", setting=name)


# config.toml and the flags say "output" (--output); the library says output_dir.
_FILE_NAMES = {"output_dir": "output"}
CONFIG_KEYS = (
    frozenset(_FILE_NAMES.get(item.name, item.name) for item in dataclasses.fields(CrawlConfig))
    | CLI_KEYS
) - {"link_filter", "check", "report_format", "report", "seed_stream", "seed_hosts"}
# [check] takes every [crawl] key (for crawler check only), and its report's: in
# [check], format is the report's (text, json, ...), not the pages file's.
CHECK_KEYS = CONFIG_KEYS | {"report"}


def load_toml(path: Path, command: str = "crawl") -> dict[str, Any]:
    """A config file's settings for ``command``, keys checked; ConfigError if unreadable."""
    return crawl_table(read_toml(path), path, command)


def crawl_table(document: dict[str, Any], path: Path, command: str = "crawl") -> dict[str, Any]:
    """A config file's [crawl] table (and for crawler check its [check] table over it),
    tables and keys checked."""
    unknown_tables = set(document) - {"crawl", "check"}
    if unknown_tables:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown_tables))}")
    values = _table(document, path, "crawl", CONFIG_KEYS)
    check = _table(document, path, "check", CHECK_KEYS)
    if command == "check":
        if "format" in check:
            check["report_format"] = check.pop("format")
        values.update(check)
    return values


def _table(document: dict[str, Any], path: Path, name: str, keys: frozenset[str]) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {name} must be a table ([{name}])")
    for key in sorted(table):
        if key not in keys:
            raise ConfigError(f"{path}: unknown setting {key!r} in [{name}]{did_you_mean(key)}")
    return dict(table)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None


def did_you_mean(key: str, prefix: str = "") -> str:
    """ " (did you mean KEY?)" for the setting closest to a misspelt ``key``, or ""."""
    close = difflib.get_close_matches(key.replace("-", "_"), sorted(CONFIG_KEYS), n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def build_config(settings: dict[str, Any]) -> CrawlConfig:
    """A CrawlConfig from merged file and flag values (CLI-only keys ignored)."""
    values = {key: value for key, value in settings.items() if key not in CLI_KEYS}
    if "output" in values:
        values["output_dir"] = values.pop("output")
    return CrawlConfig(**values)
