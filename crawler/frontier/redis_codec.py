"""How a shared crawl's values are written in Redis: keys, entries, settings, counters.

Pure: no I/O. A queued entry is one string, ``reclaims<TAB>kind<TAB>payload``:
kind ``p`` (a page: it counts toward --max-pages; the Lua scripts read this
letter), ``s`` (a sitemap) or ``c`` (a continuation). A page or a sitemap is
``depth<TAB>url<TAB>referrer``, or a JSON list of those and the kind when a
field holds a tab or a newline. A continuation is a JSON object of the
Entry's fields by name, those at their default left out, so an Entry that
gains a field still reads every stored one, and one stored by a newer
version with a field this one lacks is refused with a message, never
decoded wrongly. Crawls created before ``ENTRY_FORMAT`` 2 stored
continuations as a JSON list by position: those are read by the field order
of that version (``FORMAT_1_FIELDS``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from crawler.config import CrawlConfig
from crawler.errors import ConfigError
from crawler.records import Entry
from crawler.web.urls import host_key, redact_url

PREFIX = "c:{crawl}:"
BUCKETS = 16_384
# The format of queued entries this version writes, kept in the crawl's meta hash.
ENTRY_FORMAT = 2
FORMAT_1_FIELDS = (
    "url",
    "depth",
    "referrer",
    "kind",
    "attempts",
    "leases",
    "origin",
    "hops",
    "elapsed_ms",
    "via_status",
)
_ENTRY_FIELDS = {item.name: item.default for item in dataclasses.fields(Entry)}
# Settings every member of a crawl shares; the rest are each member's own.
SHARED_SETTINGS = (
    "seeds",
    "allow_domain",
    "span_hosts",
    "keep_query_order",
    "max_pages",
    "max_depth",
    "per_host",
    "delay",
    "ignore_robots",
    "allow_private",
    "ignore_nofollow",
    "no_sitemaps",
    "user_agent",
    "retries",
    "max_retry_after",
    "allow",
    "deny",
)


def stable_fingerprint(url: str) -> int:
    """A URL's 64-bit fingerprint, the same in every process and on every machine
    (the seen set in Redis; web/seen.py's url_key is this process's own)."""
    digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def encode(entry: Entry) -> str:
    """An entry as a queue item (its reclaim count 0): no pickles, a page is one short line."""
    if entry.is_continuation():
        named = {
            name: getattr(entry, name)
            for name, default in _ENTRY_FIELDS.items()
            if name in ("url", "depth") or getattr(entry, name) != default
        }
        return "0\tc\t" + json.dumps(named, ensure_ascii=False, separators=(",", ":"))
    kind = "p" if entry.kind == "page" else "s"
    referrer = entry.referrer or ""
    if "\t" in entry.url or "\t" in referrer or "\n" in entry.url + referrer:
        payload = json.dumps([entry.url, entry.depth, entry.referrer, entry.kind])
        return f"0\t{kind}\t{payload}"
    return f"0\t{kind}\t{entry.depth}\t{entry.url}\t{referrer}"


def decode(item: str) -> Entry:
    _, kind, payload = item.split("\t", 2)
    if kind == "c":
        return _continuation(json.loads(payload))
    if payload.startswith("["):
        url, depth, referrer, entry_kind = json.loads(payload)
        return Entry(url, depth, referrer, entry_kind)
    depth, url, referrer = payload.split("\t", 2)
    return Entry(url, int(depth), referrer or None, "page" if kind == "p" else "sitemap")


def _continuation(value: Any) -> Entry:
    if isinstance(value, list):  # ENTRY_FORMAT 1: the fields by position
        value = dict(zip(FORMAT_1_FIELDS, value, strict=False))
    unknown = set(value) - set(_ENTRY_FIELDS)
    if unknown:
        raise ConfigError(
            f"the shared frontier holds entries with fields this crawler does not know"
            f" ({', '.join(sorted(unknown))}): they were stored by a newer version"
        )
    value["hops"] = tuple(value.get("hops", ()))
    return Entry(**value)


def check_format(meta: dict[str, str], where: str) -> None:
    """Refuse a crawl whose entries this version cannot read."""
    stored = int(meta.get("format", "1"))
    if stored > ENTRY_FORMAT:
        raise ConfigError(
            f"{where} holds a crawl stored in format {stored}; this crawler reads formats"
            f" up to {ENTRY_FORMAT}: upgrade it"
        )


def ack_args(
    ticket: int,
    status: int | None,
    retry_after: float | None,
    continuation: Entry | None,
    delay: float,
) -> tuple[Any, ...]:
    """ACK's (ticket, status, retry-after ms, continuation, delay ms) for one lease."""
    return (
        ticket,
        "" if status is None else status,
        "" if retry_after is None else int(retry_after * 1000),
        "" if continuation is None else encode(continuation),
        int(delay * 1000),
    )


def enqueue_args(entries: list[tuple[Entry, int]], first: bool) -> list[Any]:
    """ENQUEUE's (bucket, fingerprint, host, item, first) per entry, given with its
    fingerprint."""
    args: list[Any] = []
    flag = "1" if first else "0"
    for entry, key in entries:
        args += [key & (BUCKETS - 1), key, host_key(entry.url), encode(entry), flag]
    return args


def shared_settings(config: CrawlConfig) -> dict[str, Any]:
    """The settings every member shares, as the meta hash keeps them (seeds redacted:
    credentials in a seed URL are never written to Redis)."""
    values = {name: getattr(config, name) for name in SHARED_SETTINGS}
    values["seeds"] = [redact_url(seed) for seed in config.seeds]
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def with_shared_settings(config: CrawlConfig, stored: dict[str, Any]) -> CrawlConfig:
    """``config`` with the crawl's shared settings as stored in Redis: only those that
    define the crawl (SHARED_SETTINGS), never what runs code or writes here (an
    extractor, paths, save_html), whatever else the meta hash holds; CrawlConfig
    checks each value as it is built."""
    values: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in stored.items()
        if key in SHARED_SETTINGS
    }
    return dataclasses.replace(config, **values)


def flat_counters(counters: dict[str, Any]) -> dict[str, int]:
    """Tally.counters() as the fields of the stats hash."""
    flat: dict[str, int] = {}
    for name, value in counters.items():
        if name in ("status_counts", "error_counts"):
            prefix = "status:" if name == "status_counts" else "error:"
            flat.update({prefix + key: count for key, count in value.items()})
        elif name != "duration_s":
            flat[name] = value
    return flat


def nested_counters(flat: dict[str, str]) -> dict[str, Any]:
    """The stats hash back in Tally.counters() form."""
    counters: dict[str, Any] = {"status_counts": {}, "error_counts": {}}
    for name, value in flat.items():
        number = int(value)
        if name.startswith("status:"):
            counters["status_counts"][name[7:]] = number
        elif name.startswith("error:"):
            counters["error_counts"][name[6:]] = number
        else:
            counters[name] = number
    return counters
