"""The parse stage: an HTML answer to its title, directives and followed links.

Why a stage of its own: a page of ordinary size is parsed right here, on the
event loop (lxml takes about 0.1 ms for 15 KB, less than a hop to another
task or thread would cost), but a big one would hold the loop, and with it
every request in flight, for as long as its parse takes: a 10 MB page of
links takes seconds. A page from ``BIG_PAGE_BYTES`` up is parsed, and its
links judged by the gate, in a thread: lxml parses without the GIL, and the
interpreter hands the loop its turn at every switch interval (5 ms) while
the thread walks the tree, so the loop keeps running. Only the counting of
refused links is done back on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from crawler.loop.gate import LinkGate, Sorted
from crawler.net.fetcher import Response
from crawler.offload import in_thread
from crawler.web.parser import ParsedPage, RefsReader, header_directives, parse_html
from crawler.web.refs import PageRefs
from crawler.web.tag_lines import TagStarts

BIG_PAGE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a render did to a page (--render), for its record: why it was rendered,
    in how long, with how many requests, or why the render failed."""

    reason: str
    elapsed_ms: int
    requests: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed page and the links of it the crawl follows (none when nofollow). The
    page's links as written are let go of once judged (a page of 600,000 links holds
    them twice else): ``links`` counts them. ``response`` is the answer parsed: the
    one fetched, or with --render the same with the rendered DOM as its body."""

    page: ParsedPage
    follow: list[str]
    links: int
    response: Response
    rendered: Rendered | None = None


class Parser(Protocol):
    """The parse stage as the visit sees it: ParseStage, or rendering's in front of it."""

    async def parse(self, response: Response) -> Parsed: ...


class ParseStage:
    """Parses the HTML answers of one crawl, big ones off the event loop."""

    def __init__(self, gate: LinkGate, *, honour_nofollow: bool, refs: bool = False) -> None:
        self._gate = gate
        self._honour_nofollow = honour_nofollow
        # crawler check: every link and requisite with its line, and the anchors.
        self._refs = page_refs if refs else None

    async def parse(self, response: Response, more: tuple[str, ...] = ()) -> Parsed:
        """The page's links, and ``more`` absolute URLs it leads to (a rendered page's
        script navigations), judged by the gate."""
        if len(response.body) < BIG_PAGE_BYTES:
            page, links = self._parse(response, more)
        else:
            page, links = await in_thread(self._parse, response, more)
        written = len(page.links) + len(more)
        return Parsed(replace(page, links=()), self._gate.count(links), written, response)

    def _parse(self, response: Response, more: tuple[str, ...]) -> tuple[ParsedPage, Sorted]:
        page = parse_response(response, honour_nofollow=self._honour_nofollow, refs=self._refs)
        if page.nofollow:
            return page, Sorted([])
        links = (*page.links, *more) if more else page.links
        return page, self._gate.sort(
            links, page.base, own=response.url, query_codec=page.query_codec
        )


def page_refs(body: bytes, streamed: bool) -> PageRefs:
    """crawler check's reader of a page: its refs, each at the line where its tag starts."""
    return PageRefs(TagStarts(body, streamed).line)


def parse_response(
    response: Response, *, honour_nofollow: bool, refs: RefsReader | None = None
) -> ParsedPage:
    """Parse an HTML answer; an X-Robots-Tag header adds to the page's own directives."""
    parsed = parse_html(
        response.body, response.url, response.charset, honour_nofollow=honour_nofollow, refs=refs
    )
    directives = header_directives(response.x_robots_tag)
    if not directives:
        return parsed
    nofollow = parsed.nofollow or (honour_nofollow and "nofollow" in directives)
    return replace(
        parsed,
        links=() if nofollow else parsed.links,
        nofollow=nofollow,
        noindex=parsed.noindex or "noindex" in directives,
    )
