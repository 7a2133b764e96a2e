"""Pure URL handling: normalisation (the dedup key), scope, host keys, ownership.

No I/O. Every function here is
plain and total: a URL it cannot make sense of gives ``None``, never an
exception.

The normalised form (RFC 3986 §6.2.2, plus the crawler's choices):
fragment dropped; scheme and host lower-cased, host IDNA-encoded, trailing dot
removed; default port removed; empty path is "/"; dot segments resolved;
percent-escapes of unreserved characters decoded and the rest upper-cased;
characters that must be escaped are escaped as UTF-8; query parameters sorted
unless ``sort_query`` is false (as w3lib's canonicalize_url does).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048
# A path segment repeated more often than this is a trap (/a/a/a/a/...).
MAX_SEGMENT_REPEATS = 3

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"
_CLEAN_PART = re.compile(r"[A-Za-z0-9\-._~/:@!$&'()*+,;=?]*")
_HOST = re.compile(r"[a-z0-9\-_.]+|\[[0-9a-f:.]+\]")
# WHATWG URL: leading/trailing C0 controls and spaces are stripped, tabs and
# newlines anywhere are removed, before a href is parsed.
_HREF_STRIP = "".join(chr(code) for code in range(0x21))


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _normalize_escapes(part: str, safe: str) -> str:
    if "%" not in part and _CLEAN_PART.fullmatch(part):
        return part
    part = _STRAY_PERCENT.sub("%25", part)
    part = _PERCENT_ESCAPE.sub(_unescape_unreserved, part)
    return quote(part, safe=safe)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path."""
    if "." not in path:
        return path
    segments = path.split("/")[1:]
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if segments and segments[-1] in (".", ".."):
        output.append("")
    return "/" + "/".join(output)


def _normalize_host(hostname: str) -> str | None:
    host = hostname.rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    return host if _HOST.fullmatch(host) else None


def _sorted_query(query: str) -> str:
    pieces = [piece for piece in query.split("&") if piece]
    pieces.sort(key=lambda piece: piece.partition("="))
    return "&".join(pieces)


def normalize(url: str, base: str | None = None, *, sort_query: bool = True) -> str | None:
    """The normalised absolute form of ``url`` (joined to ``base``), or None.

    None means: not http(s), or not a URL we can request.
    """
    url = url.strip(_HREF_STRIP)
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.replace("\t", "").replace("\n", "").replace("\r", "")
    if base is not None and not url.startswith(("http://", "https://")):
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    return _normalize_absolute(url, sort_query)


# Pages of one site link to the same URLs over and over: the normalised form
# of an absolute URL is worth remembering (measured: about a third of the
# crawler's CPU time on the benchmark site before this cache).
@functools.lru_cache(maxsize=32768)
def _normalize_absolute(url: str, sort_query: bool) -> str | None:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or not parts.hostname:
            return None
        port = parts.port
    except ValueError:
        return None
    host = _normalize_host(parts.hostname)
    if host is None:
        return None
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = remove_dot_segments(_normalize_escapes(parts.path or "/", _PATH_SAFE))
    query = _normalize_escapes(parts.query, _QUERY_SAFE)
    if sort_query and query:
        query = _sorted_query(query)
    return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"


def host_key(url: str) -> str:
    """The network location of a normalised URL (host and port): one politeness slot."""
    start = url.find("://") + 3
    end = url.find("/", start)
    return url[start:end] if end != -1 else url[start:]


def host_of(url: str) -> str:
    """The host name of a normalised URL (no port, no IPv6 brackets): the unit of scope."""
    netloc = host_key(url)
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")]
    return netloc.partition(":")[0]


def is_trap(url: str) -> bool:
    """Too long, or a path that repeats one segment like /a/a/a/a/: never requested."""
    if len(url) > MAX_URL_LENGTH:
        return True
    start = url.find("/", url.find("://") + 3)
    if start == -1 or url.count("/", start) <= MAX_SEGMENT_REPEATS:
        return False
    segments = [segment for segment in url[start:].partition("?")[0].split("/") if segment]
    if len(segments) <= MAX_SEGMENT_REPEATS:
        return False
    counts: dict[str, int] = {}
    for segment in segments:
        counts[segment] = counts.get(segment, 0) + 1
        if counts[segment] > MAX_SEGMENT_REPEATS:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def owner_of(host: str, processes: int) -> int:
    """The process that owns ``host``: a stable hash, never Python's salted hash().

    BLAKE2b, not CRC32: CRC32 is linear, so names that differ in one character
    (127.0.0.2, 127.0.0.3, ...) share their low bits and all landed in one process.
    """
    return url_owner(host, processes)


def url_owner(key: str, processes: int) -> int:
    """owner_of without its cache, for keys that rarely repeat (a split host's URLs)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % processes


@dataclass(frozen=True, slots=True)
class Scope:
    """Which hosts a crawl may request: exact hosts, or domains with their subdomains."""

    hosts: frozenset[str]
    domains: frozenset[str] = frozenset()

    def allows(self, host: str) -> bool:
        if host in self.hosts or host in self.domains:
            return True
        return any(host.endswith("." + domain) for domain in self.domains)
