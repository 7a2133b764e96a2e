"""CrawlConfig: every crawl setting, frozen and validated, and config.toml loading.

One name per setting everywhere: the
flag ``--max-pages`` is ``max_pages`` in config.toml's [crawl] table and here.
A bad value raises ConfigError with a message a person can act on.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.errors import ConfigError
from crawler.extract import Extractor, LinkFilter, LinkRules
from crawler.web.urls import domain_key, normalize

DEFAULT_USER_AGENT = "crawler/0.1 (polite asyncio crawler; obeys robots.txt)"
FORMATS = ("jsonl", "csv")
FRONTIER_SCHEMES = ("redis://", "rediss://", "unix://")
# Settings of the command line only: config.toml may hold them, CrawlConfig does not.
CLI_KEYS = frozenset({"quiet", "log_file", "fail_on_broken"})


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    """Every setting of one crawl. ``output_dir=None`` writes no files."""

    seeds: tuple[str, ...] = ()
    output_dir: Path | None = None
    max_pages: int | None = None
    max_depth: int = 100
    max_time: float | None = None
    concurrency: int = 32
    per_host: int = 4
    # The multiprocessing front: hosts are split between this many processes.
    processes: int = 1
    delay: float = 0.0
    allow_domain: tuple[str, ...] = ()
    ignore_robots: bool = False
    # Connect to loopback, private and link-local addresses even when the seeds are
    # public (seeds of such a kind allow their own kind anyway).
    allow_private: bool = False
    ignore_nofollow: bool = False
    no_sitemaps: bool = False
    user_agent: str = DEFAULT_USER_AGENT
    retries: int = 2
    max_retry_after: float = 60.0
    timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    save_html: bool = False
    format: str = "jsonl"
    keep_query_order: bool = False
    resume: bool = False
    incremental: bool = False
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

    def __post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self)
        for seed in self.seeds:
            if normalize(seed) is None:
                raise ConfigError(f"not an http(s) URL: {seed!r}")
        for domain in self.allow_domain:
            if domain_key(domain) is None:
                raise ConfigError(f"not a domain name: {domain!r} (allow_domain)")
        LinkRules(self.allow, self.deny, None)  # a bad pattern is a ConfigError now
        if self.resume and self.incremental:
            raise ConfigError("--resume and --incremental do not go together")
        if self.frontier is not None:
            _check_frontier(self)
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")


def _check_frontier(config: CrawlConfig) -> None:
    if not config.frontier or not config.frontier.startswith(FRONTIER_SCHEMES):
        raise ConfigError(f"frontier must be a redis:// URL, not {config.frontier!r}")
    if config.incremental:
        raise ConfigError("--incremental needs a crawl's own state; it does not go with --frontier")
    if config.processes > 1:
        raise ConfigError(
            "--processes with --frontier: start one member per process instead "
            "(each is a client of the shared frontier)"
        )


_POSITIVE = (
    "max_pages",
    "max_time",
    "concurrency",
    "per_host",
    "processes",
    "timeout",
    "max_bytes",
)
_NON_NEGATIVE = ("max_depth", "delay", "retries", "max_retry_after")


def _check_ranges(config: CrawlConfig) -> None:
    for name in _POSITIVE:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be greater than 0, not {value}")
    for name in _NON_NEGATIVE:
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ConfigError(f"{name} must not be negative, not {value}")


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
            raise ConfigError(f"{item.name} must be a {expected}, not {value!r}")
    for name in ("seeds", "allow_domain", "allow", "deny"):
        value = getattr(config, name)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, not {value!r}")
    for name in ("extract", "link_filter"):
        value = getattr(config, name)
        if (
            value is not None
            and not callable(value)
            and not (name == "extract" and isinstance(value, str))
        ):
            raise ConfigError(f"{name} must be a function, not {value!r}")


# config.toml and the flags say "output" (--output); the library says output_dir.
_FILE_NAMES = {"output_dir": "output"}
CONFIG_KEYS = (
    frozenset(_FILE_NAMES.get(item.name, item.name) for item in dataclasses.fields(CrawlConfig))
    | CLI_KEYS
) - {"link_filter"}


def load_toml(path: Path) -> dict[str, Any]:
    """The [crawl] table of a config file, keys checked; ConfigError if unreadable."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    unknown_tables = set(document) - {"crawl"}
    if unknown_tables:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown_tables))}")
    table = document.get("crawl", {})
    unknown = set(table) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))} in [crawl]")
    return dict(table)


def build_config(settings: dict[str, Any]) -> CrawlConfig:
    """A CrawlConfig from merged file and flag values (CLI-only keys ignored)."""
    values = {key: value for key, value in settings.items() if key not in CLI_KEYS}
    for name in ("seeds", "allow_domain", "allow", "deny"):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    if isinstance(values.get("warc"), str):
        values["warc"] = Path(values["warc"])
    output = values.pop("output", None)
    if output is not None:
        if not isinstance(output, (str, Path)):
            raise ConfigError(f"output must be a folder path, not {output!r}")
        values["output_dir"] = Path(output)
    return CrawlConfig(**values)
