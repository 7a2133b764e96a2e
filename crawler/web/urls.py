"""Pure URL handling: normalisation (the dedup key), scope, host keys, ownership.

No I/O. Every function here is plain and total: a URL it cannot make sense
of gives ``None``, never an exception.

A link is resolved as a browser resolves it: ada (``ada_url``, a C++ parser
that passes the web-platform-tests URL suite) parses and joins it by the
WHATWG URL Standard, so backslashes, scheme-relative and slash-light forms,
IPv4 in any notation, IPv6, IDNA (UTS #46), percent-encoded hosts and the
characters a browser encodes are what the browser would request. On top,
the crawler's dedup rules, which make two spellings of one resource one key:
fragment dropped; userinfo dropped; a host's trailing dot removed; an empty
query dropped; percent-escapes of unreserved characters (RFC 3986 §2.3)
decoded and the other escapes upper-cased (a ``%`` that starts no escape is
left as it is, as browsers leave it); query parameters sorted unless
``sort_query`` is false (as w3lib's canonicalize_url does). Only http and
https URLs are kept.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ada_url import join_url, normalize_url

SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048
# A path segment repeated more often than this is a trap (/a/a/a/a/...).
MAX_SEGMENT_REPEATS = 3

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|session|sig", re.IGNORECASE)


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _sorted_query(query: str) -> str:
    pieces = [piece for piece in query.split("&") if piece]
    pieces.sort(key=lambda piece: piece.partition("="))
    return "&".join(pieces)


def normalize(url: str, base: str | None = None, *, sort_query: bool = True) -> str | None:
    """The normalised absolute form of ``url`` (joined to ``base``), or None.

    None means: not http(s), or not a URL a browser could request.
    """
    if base is not None and not url.startswith(("http://", "https://")):
        try:
            url = join_url(base, url)
        except ValueError:
            return None
    return _normalize_absolute(url, sort_query)


# An absolute URL no rule of normalize() changes, but for its fragment: a lowercase
# name (no "xn--": IDNA checks those) or a canonical IPv4 address, a port with no
# leading zero, a path of characters every parser keeps, no query. A broad crawl's
# links are mostly such URLs, each seen once: the cache rarely knows them, and this
# takes them without the full parse.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_ABSOLUTE = re.compile(
    r"(?P<origin>(?P<scheme>https?)://"
    rf"(?:(?:[a-z0-9-]+\.)*[a-z-][a-z0-9-]*|(?:{_OCTET}\.){{3}}{_OCTET})"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?)"
    r"(?P<path>/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?(?:#.*)?",
    re.DOTALL,
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _plain_absolute(url: str) -> str | None:
    match = _PLAIN_ABSOLUTE.fullmatch(url)
    if match is None or "xn--" in url or "/." in url.partition("#")[0]:
        return None
    port = match["port"]
    if port is not None and (int(port) > 65535 or port == _DEFAULT_PORTS[match["scheme"]]):
        return None
    return match["origin"] + (match["path"] or "/")


# A relative link made only of characters every parser leaves as they are (no
# scheme, no "//", no backslash, no "%", no space, no quote in the query):
# joined here by RFC 3986's rules, which the URL Standard's agree with for such
# links, then normalised (cached) like any other. Most links of real pages
# (page.html, ../dir/page.html, /abs/path, #top) are of this kind.
_SIMPLE_LINK = re.compile(r"(?![A-Za-z][A-Za-z0-9+.-]*:)(?!//)[A-Za-z0-9._~!$&'()*+,;=:@/-]*")
_SIMPLE_QUERY = re.compile(r"[A-Za-z0-9._~!$&()*+,;=:@/?-]*")


def resolver(base: str, *, sort_query: bool = True) -> Callable[[str], str | None]:
    """``normalize(link, base)`` for each link found on the page at ``base`` (a
    normalised URL): the same answer, sooner for the links real pages are made of;
    what it needs of ``base`` is worked out once."""
    start = base.find("/", base.find("://") + 3)
    origin, base_path = (base, "/") if start == -1 else (base[:start], base[start:])
    base_path = base_path.partition("?")[0]
    base_directory = base_path[: base_path.rfind("/") + 1]
    simple_link, simple_query = _SIMPLE_LINK.fullmatch, _SIMPLE_QUERY.fullmatch
    # An absolute link to this page's origin, written as normalised ("http://a.org/x",
    # not "HTTP://A.org:80/x"), is its path-absolute link "/x": a site's own absolute
    # links skip the full parse (3.7 us a link, 1.0 this way).
    same_origin, cut = origin + "/", len(origin)

    def resolve_one(link: str) -> str | None:
        if link.startswith("#"):  # this page itself (``base`` has no fragment)
            return base
        relative = link[cut:] if link.startswith(same_origin) else link
        fragment = relative.find("#")
        path, mark, query = (relative if fragment == -1 else relative[:fragment]).partition("?")
        if simple_link(path) is None or (mark and simple_query(query) is None):
            return normalize(link, base, sort_query=sort_query)
        if not path:
            if not mark:
                return base
            path = base_path
        elif not path.startswith("/"):
            directory = base_directory
            while path.startswith("../"):  # the common case, without splitting the path
                path = path[3:]
                directory = directory[: directory.rfind("/", 0, -1) + 1] or "/"
            path = directory + path
        if "/." in path:
            path = _without_dot_segments(path)
        if not mark:  # made of characters no rule changes: normalised already
            return origin + path
        return _normalize_absolute(f"{origin}{path}{mark}{query}", sort_query)

    return resolve_one


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 remove_dot_segments, for an absolute path."""
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:-1]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    last = segments[-1]
    if last == "..":
        if kept:
            kept.pop()
        kept.append("")
    elif last == ".":
        kept.append("")
    else:
        kept.append(last)
    return "/" + "/".join(kept)


@functools.lru_cache(maxsize=4096)
def link_facts(url: str) -> tuple[str, bool]:
    """A normalised URL's host (the unit of scope) and whether it is a trap: what the
    link gate asks of every link, remembered for the links every page repeats
    (navigation). Small: each entry keeps its URL alive, and at 16,384 entries the
    million-URL frontier of benchmarks/memory.py peaked 11 MB higher."""
    return host_of(url), is_trap(url)


# Pages of one site link to the same URLs over and over: the normalised form
# of an absolute URL is worth remembering (measured: about a third of the
# crawler's CPU time on the benchmark site before this cache).
@functools.lru_cache(maxsize=32768)
def _normalize_absolute(url: str, sort_query: bool) -> str | None:
    plain = _plain_absolute(url)
    return plain if plain is not None else _parsed_absolute(url, sort_query)


def _parsed_absolute(url: str, sort_query: bool) -> str | None:
    """The full parse (ada, the WHATWG URL Standard), then the crawl's own rules."""
    try:
        href = normalize_url(url)
    except ValueError:
        return None
    scheme, _, rest = href.partition("://")
    if scheme not in SCHEMES:
        return None
    # ada serialises a special URL as scheme://[userinfo@]host[:port]/path[?query][#fragment],
    # with every other "#", "?" and "@" percent-encoded.
    rest = rest.partition("#")[0]
    slash = rest.find("/")
    authority, path = (rest[:slash], rest[slash:]) if slash != -1 else (rest, "/")
    host = authority.rpartition("@")[2]
    netloc = _without_trailing_dot(host)
    if netloc is None:
        return None
    if netloc != host:  # parsed again: "0.." is a name, "0" an IPv4 address (0.0.0.0)
        return _normalize_absolute(f"{scheme}://{netloc}{path}", sort_query)
    path, _, query = path.partition("?")
    if "%" in path:
        path = _PERCENT_ESCAPE.sub(_unescape_unreserved, path)
    if "%" in query:
        query = _PERCENT_ESCAPE.sub(_unescape_unreserved, query)
    if sort_query and query:
        query = _sorted_query(query)
    return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"


def _without_trailing_dot(netloc: str) -> str | None:
    """host[:port] with the host's trailing dots removed (example.org. is example.org)."""
    if netloc.startswith("["):
        return netloc
    host, colon, port = netloc.partition(":")
    if host.endswith("."):
        host = host.rstrip(".")
        if not host:
            return None
    return f"{host}{colon}{port}"


def redact_url(url: str) -> str:
    """``url`` fit to print or to keep in a file: a password in its userinfo (a
    userinfo with no password is all a secret: ``https://TOKEN@host/`` sends the
    token as Basic credentials), and the value of a query parameter named like a
    secret (password, token, key, ...), become ***. Anything that does not parse is
    returned as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    elif at:
        netloc = f"***@{hostport}"
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        name, equals, _ = piece.partition("=")
        pieces.append(f"{name}=***" if equals and _SECRET_NAME.search(name) else piece)
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(pieces)))


def domain_key(domain: str) -> str | None:
    """A domain as the scope compares it (--allow-domain): IDNA (UTS #46), lower case,
    no trailing dot; None if it is no valid domain."""
    if not domain or any(char in domain for char in "/?#@:"):
        return None
    url = normalize(f"http://{domain.strip()}/")
    return host_of(url) if url is not None else None


# A domain (its IDNA form) or an IPv4 address: dot-separated labels of letters, digits,
# hyphens (not at either end) and underscores (found in the wild).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


def domain_problem(domain: str) -> str | None:
    """Why an --allow-domain value names no domain (its subdomains come with it) or
    IPv4 address, in words that say what to write; None when it does."""
    key = domain_key(domain)
    if key is not None and _DOMAIN.fullmatch(key):
        return None
    if domain.strip() == "*":
        hint = ": to follow links to any host, use --span-hosts"
    elif domain.strip().startswith(("*.", ".")):
        hint = f": write {domain.strip().lstrip('*.')!r} (its subdomains come with it)"
    else:
        hint = ""
    return f"not a domain name: {domain!r}{hint}"


def host_key(url: str) -> str:
    """The network location of a normalised URL (host and port): one politeness slot."""
    start = url.find("://") + 3
    end = url.find("/", start)
    return url[start:end] if end != -1 else url[start:]


def origin_of(url: str) -> str:
    """The origin of a normalised URL (scheme, host and port, the default port left out):
    what credentials and given headers are kept to (RFC 6454)."""
    end = url.find("/", url.find("://") + 3)
    return url[:end] if end != -1 else url


def path_of(url: str) -> str:
    """The path of a normalised URL, without its query and fragment ("/" when none)."""
    start = url.find("/", url.find("://") + 3)
    return url[start:].partition("?")[0].partition("#")[0] if start != -1 else "/"


def port_of(url: str) -> int:
    """The port a normalised URL is requested on (the scheme's default when none)."""
    netloc = host_key(url)
    _, colon, port = netloc.rpartition(":")
    if colon and port.isdigit() and not netloc.endswith("]"):
        return int(port)
    return 443 if url.startswith("https:") else 80


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
    if url.count("/") <= MAX_SEGMENT_REPEATS + 2:  # "://" and at most that many segments
        return False
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
    """Which hosts a crawl may request: exact hosts, or domains with their subdomains;
    with ``every_host`` (--span-hosts), any host."""

    hosts: frozenset[str]
    domains: frozenset[str] = frozenset()
    every_host: bool = False

    @classmethod
    def of(
        cls,
        seeds: Iterable[str],
        allow_domain: Iterable[str],
        span_hosts: bool = False,
        seed_hosts: Iterable[str] = (),
    ) -> Scope:
        """A crawl's scope: its seeds' hosts (``seed_hosts``: a seed list's), and the
        --allow-domain domains."""
        urls = (url for url in map(normalize, seeds) if url is not None)
        domains = frozenset(filter(None, map(domain_key, allow_domain)))
        return cls(frozenset((*map(host_of, urls), *seed_hosts)), domains, span_hosts)

    def allows(self, host: str) -> bool:
        return self.every_host or self.names(host)

    def names(self, host: str) -> bool:
        """``host`` is a seed's, or in an --allow-domain domain (whatever --span-hosts)."""
        if host in self.hosts or host in self.domains:
            return True
        return any(host.endswith("." + domain) for domain in self.domains)
