"""crawler check's ledger: every link found, where it was found, and what became of it.

The crawl runs as ``crawl`` does; with ``check`` the Visitor hands the book
each page's links (web/refs.py: links, frames, refreshes and requisites, with
their lines) and every record. The book resolves each link once per page,
keeps who links to it (page and line, all of them: two 32-bit numbers a
referrer), says which URLs must be requested only to be checked (the crawl
requests its pages itself), and at the end turns all of it into one
LinkCheck per URL (and one per ``#fragment`` whose target page was read).

Rules, in order, for a link as written:
1. a scheme other than http(s) (mailto:, tel:, data:, javascript:...):
   *unsupported*, counted, never requested; but a ``file:`` link is *broken*
   ("file-url"): it names a file on the author's disk, which no visitor has;
2. it does not resolve to a URL a browser could request: *broken*
   ("invalid-url");
3. ``--exclude`` matches and ``--include`` does not (lychee's rule: an
   include wins): *excluded*, never requested; so is a trap (gate.py);
4. otherwise it gets the result of its URL's record: the crawl's own record
   for a page it crawled, else the record of a check (HEAD, GET when HEAD is
   refused; visit.py). ``--accept`` says which statuses work; a 304 to a later
   pass's conditional request is the page unchanged: it works, as it did.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from crawler.config import CrawlConfig
from crawler.extract import CheckRules
from crawler.loop.gate import DROPPED, OFFSITE, LinkGate, link_resolver
from crawler.loop.ledger import Ledger, Result
from crawler.output.check_cache import unpack_refs
from crawler.records import BROKEN_ERRORS, TOO_LARGE, Entry, LinkCheck, PageRecord
from crawler.values import accepted_statuses
from crawler.web.refs import NAVIGATION, Ref
from crawler.web.urls import normalize

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
UNSUPPORTED = "unsupported"
INVALID = "invalid-url"
FILE_URL = "file-url"
FRAGMENT_MISSING = "fragment-missing"
# A fragment not found in the part read of a page cut at --max-bytes: its element may
# stand past the cut, so it is not checked (never reported missing).
PAGE_CUT = "page-cut"
TRAP = "trap"
# Record errors that mean "not requested by choice": the link is excluded, not broken.
NOT_REQUESTED = frozenset({"robots", "private-address", "out-of-scope", "excluded"})
# Fragments that name no element at all: a text fragment (":~:text=..."), a
# single-page app's route ("#/path", "#!/path"); never reported missing.
_NOT_AN_ID = (":~:", "/", "!")


def _is_the_top(fragment: str) -> bool:
    """The fragment needs no element: it is the top of the page (HTML's "indicated
    part of the document"): empty, or "top" in any ASCII case, percent-encoded or not."""
    decoded = unquote(fragment)
    return not fragment or (decoded.isascii() and decoded.lower() == "top")


@dataclass(frozen=True, slots=True)
class Found:
    """A link of a page, resolved: what state.sqlite keeps of it for a later pass."""

    # The normalised URL; for an unsupported or invalid link, as written.
    key: str
    fragment: str | None
    line: int
    kind: str
    # "url", UNSUPPORTED, INVALID or FILE_URL.
    category: str = "url"

    def row(self) -> tuple[str, str | None, int, str, str]:
        return self.key, self.fragment, self.line, self.kind, self.category


def unpack_found(blob: bytes) -> tuple[list[Found], str]:
    """A page's links and anchors as state.sqlite keeps them (Checker packs them)."""
    rows, anchors = unpack_refs(blob)
    return [Found(*row) for row in rows], anchors


def restore_book(
    book: LinkBook, pages: Iterable[tuple[str, bytes]], records: Iterable[PageRecord]
) -> None:
    """A resumed check's ledger: the links of the pages done, the records so far."""
    for page, blob in pages:
        found, anchors = unpack_found(blob)
        book.note(page, found, anchors or None)
    for record in records:
        book.note_record(record)


class Followed(Container[str]):
    """The URLs a page followed (queued as pages), sorted: a link the check resolves to
    one of them is given that very string, not a copy. 8 bytes a URL, where a dict of
    them cost 35 (a page of 600,000 links: 5 MB against 21)."""

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self._sorted = sorted(urls)

    def same(self, url: str) -> str:
        """The followed URL equal to ``url`` if there is one, else ``url``."""
        found = self._find(url)
        return url if found is None else found

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and self._find(url) is not None

    def _find(self, url: str) -> str | None:
        ordered = self._sorted
        index = bisect.bisect_left(ordered, url)
        return ordered[index] if index < len(ordered) and ordered[index] == url else None


class LinkBook:
    """The links of one check, their referrers and their results."""

    def __init__(self, config: CrawlConfig, gate: LinkGate) -> None:
        self._gate = gate
        self._sort_query = not config.keep_query_order
        self._accept = accepted_statuses(config.accept)
        self._rules = CheckRules(config.exclude, config.include)
        self._offsite_kind = "anchors" if config.check_fragments else "link"
        self._ledger = Ledger()
        self._fragments: dict[str, array[int]] = {}
        self._anchors: dict[str, str] = {}

    def resolve(
        self,
        refs: Iterable[Ref],
        base: str,
        followed: Followed | None = None,
        query_codec: str | None = None,
    ) -> list[Found]:
        """A page's links (as written, its base URL, the character set of their queries:
        charsets.written_in) resolved (rules 1 and 2); a URL the page ``followed`` is that
        very string, not a copy of it."""
        same = (followed or Followed()).same
        found = []
        page = normalize(base, sort_query=self._sort_query)
        join = link_resolver(page, base, sort_query=self._sort_query, query_codec=query_codec)
        for ref in refs:
            written, _, fragment = ref.written.partition("#")
            scheme = _SCHEME.match(written)
            if scheme and scheme.group()[:-1].lower() not in ("http", "https"):
                category = FILE_URL if scheme.group().lower() == "file:" else UNSUPPORTED
                found.append(Found(ref.written, None, ref.line, ref.kind, category))
                continue
            url = join(written)
            if url is None:
                found.append(Found(ref.written, None, ref.line, ref.kind, INVALID))
                continue
            url = same(url)
            found.append(Found(url, fragment if "#" in ref.written else None, ref.line, ref.kind))
        return found

    def note(self, page: str, found: Iterable[Found], anchors: str | None = None) -> None:
        """Remember who links where (``page``: the page or stylesheet they are on), and
        the page's anchors when it was read."""
        page_id = self._ledger.page_id(page)
        if anchors is not None:
            self._anchors[page] = anchors
        for link in found:
            self._ledger.link(link.key, page_id, link.line, link.kind, link.category)
            if link.fragment is not None and not _is_the_top(link.fragment):
                self._fragments.setdefault(f"{link.key}#{link.fragment}", array("I")).extend(
                    (page_id, link.line)
                )

    def to_check(
        self, found: Iterable[Found], page: str, depth: int, queued: Container[str] = ()
    ) -> list[Entry]:
        """The entries that request the links of a page at ``depth`` only to check them:
        all but the unsupported, invalid and excluded ones, and those the crawl has
        just ``queued`` as pages (the frontier would keep their first entry anyway: a
        URL the crawl follows stays a page). A link it does not follow (nofollow,
        past --max-depth, refused by --deny) is checked, a page of the site read for
        its ids."""
        entries = []
        for link in found:
            if link.key in queued or link.category != "url" or self._excluded_by_rules(link.key):
                continue
            verdict = self._gate.verdict(link.key)
            if verdict == DROPPED:
                continue
            if link.kind == "stylesheet":
                kind = "stylesheet"
            elif link.kind in NAVIGATION:
                # A page of the site the crawl does not read (past --max-depth, nofollow)
                # is read for its ids, so its fragments get their result.
                kind = self._offsite_kind if verdict == OFFSITE else "anchors"
            else:
                kind = "link"
            entries.append(Entry(link.key, depth + 1, page, kind=kind))
        return entries

    def note_record(self, record: PageRecord) -> None:
        self._ledger.record(record)

    def _excluded_by_rules(self, url: str) -> bool:
        return self._rules.active and self._rules.excludes(url)

    def results(self) -> Iterator[LinkCheck]:
        """One LinkCheck per URL linked to or requested, then one per fragment whose
        page was read; URLs the crawl stopped before are left out."""
        for key in self._ledger.urls():
            check = self._check(key)
            if check is not None:
                yield check
        for target, referrers in self._fragments.items():
            check = self._fragment(target, referrers)
            if check is not None:
                yield check

    def _check(self, key: str) -> LinkCheck | None:
        known = self._ledger.result(key)
        result = known[1] if known is not None else None
        referrers = self._ledger.referrers(key, result)
        kind, category = self._ledger.first_link(key)
        kind = kind or (result.kind if result is not None else "link")
        if category == UNSUPPORTED:
            return LinkCheck(key, "unsupported", kind, None, None, None, referrers)
        if category in (INVALID, FILE_URL):
            return LinkCheck(key, "broken", kind, None, category, None, referrers)
        if self._excluded_by_rules(key):
            return LinkCheck(key, "excluded", kind, None, "excluded", None, referrers)
        if self._gate.verdict(key) == DROPPED and result is None:
            return LinkCheck(key, "excluded", kind, None, TRAP, None, referrers)
        if known is None:
            return None
        verdict, status, error, final = self._verdict(*known)
        return LinkCheck(key, verdict, kind, status, error, final, referrers)

    def _verdict(
        self, result_id: int, result: Result
    ) -> tuple[str, int | None, str | None, str | None]:
        """The result of a record: its own, or where its redirect led (a URL checked on
        its own: a hop to a URL already seen ends the record there)."""
        status, error, final = result.status, result.error, result.final_url
        hop = self._ledger.result(final) if final and status and 300 <= status < 400 else None
        ended = hop[1] if hop is not None and hop[0] != result_id else None
        if ended is not None:
            status, error = ended.status, ended.error
            final = ended.final_url or final
        if result.unchanged:
            return "ok", status, error, None
        if error in NOT_REQUESTED:
            return "excluded", status, error, None
        if error == "timeout":
            return "timeout", status, error, None
        if error in BROKEN_ERRORS or error in (INVALID, "dead-letter", "internal"):
            return "broken", status, error, None
        if status is None or status not in self._accept:
            return "broken", status, error, None
        if result.redirects or ended is not None:
            return "redirected", status, error, final
        return "ok", status, error, None

    def _fragment(self, target: str, pairs: array[int]) -> LinkCheck | None:
        """A ``#fragment`` of a page that was read: is there an element of that id or name?"""
        url, _, fragment = target.partition("#")
        page = self._check(url)
        anchors = self._anchors.get(url)
        if page is None or anchors is None or page.result not in ("ok", "redirected"):
            return None
        referrers = self._ledger.places(pairs)
        found = any(f"\0{name}\0" in anchors for name in (fragment, unquote(fragment)))
        if found or fragment.startswith(_NOT_AN_ID):
            return LinkCheck(target, "ok", page.kind, page.status, None, None, referrers)
        if page.error == TOO_LARGE:
            return LinkCheck(target, "excluded", page.kind, page.status, PAGE_CUT, None, referrers)
        missing = FRAGMENT_MISSING
        return LinkCheck(target, "broken", page.kind, page.status, missing, None, referrers)
