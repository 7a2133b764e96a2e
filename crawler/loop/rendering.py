"""--render: the parse stage with a headless browser in front of it.

The visit's one door is ``parse()``; with --render it is this stage's, which
parses the page as fetched, decides, and when it renders, parses the rendered
DOM instead (net/renderer.py), so nofollow, <base>, meta robots, the gate and
the extractor see what a browser shows.

Rules:
1. The page is fetched once, by the crawler: the browser is handed its body.
2. "auto" costs an ordinary page nothing but a regex (web/appshell.py); a page
   is rendered on evidence only, and a host whose last ``BARREN`` renders gained
   no link is rendered one page in ``SAMPLE`` after that, until one gains again.
3. A failed render keeps the plain parse: the fetch worked, the page is no error;
   its record says why (``render_error``).
4. The browser's own requests go through the crawler's fetcher (the address rule,
   proxy, identity, cookies, WARC), unpaced: they are the page's, as a browser's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from crawler.config import CrawlConfig
from crawler.extract import LinkRules
from crawler.loop.parsing import BIG_PAGE_BYTES, Parsed, Parser, ParseStage, Rendered
from crawler.net.fetcher import Fetcher, Response
from crawler.net.renderer import Renderer, Rendering
from crawler.net.tab import Answer, Settings
from crawler.stats import Tally
from crawler.values import BROWSER_PACKAGE, find_browser
from crawler.web.appshell import app_shell
from crawler.web.urls import host_key

log = logging.getLogger(__name__)

BARREN = 5
SAMPLE = 20


class RenderingParse:
    """The parse stage of a crawl with --render auto or always."""

    def __init__(
        self,
        plain: ParseStage,
        renderer: Renderer,
        config: CrawlConfig,
        conversion: Callable[[str, bytes], None] | None,
    ) -> None:
        self._plain = plain
        self._renderer = renderer
        self._always = config.render == "always"
        self._only = LinkRules(config.render_allow, (), None)
        self._conversion = conversion
        # Per host: renders in a row that gained no link, and pages passed over since.
        self._barren: dict[str, list[int]] = {}

    async def parse(self, response: Response) -> Parsed:
        # "always" needs the body as fetched parsed only if its render fails.
        parsed = None if self._always else await self._plain.parse(response)
        reason = self._reason(response, parsed)
        if reason is not None:
            rendering = await self._renderer.render(response.url, _document(response))
            if rendering is not None:  # None: rendering given up (net/renderer.py)
                return await self._rendered(response, reason, rendering, parsed)
        return parsed or await self._plain.parse(response)

    async def _rendered(
        self, response: Response, reason: str, rendering: Rendering, parsed: Parsed | None
    ) -> Parsed:
        page = rendering.page
        if page is None:  # rule 3
            parsed = parsed or await self._plain.parse(response)
            failed = Rendered(reason, rendering.elapsed_ms, None, rendering.error)
            return replace(parsed, rendered=failed)
        dom = replace(response, body=page.html, charset="utf-8")
        again = await self._plain.parse(dom, page.urls)
        if self._conversion is not None:
            self._conversion(response.url, page.html)
        if parsed is not None:  # auto: did rendering this host's pages gain links?
            self._learn(response.url, gained=not set(again.follow) <= set(parsed.follow))
        return replace(again, rendered=Rendered(reason, rendering.elapsed_ms, page.requests))

    def _reason(self, response: Response, parsed: Parsed | None) -> str | None:
        if self._only.active and not self._only.admits(response.url):
            return None
        if parsed is None:
            return "always"
        if len(response.body) >= BIG_PAGE_BYTES:
            return None  # an app shell is small; a big page is read off the loop, once
        barren = self._barren.get(host_key(response.url)) if self._barren else None
        if barren is not None and barren[0] >= BARREN:
            barren[1] += 1
            if barren[1] % SAMPLE:
                return None
        return app_shell(response.body, len(parsed.follow))

    def _learn(self, url: str, *, gained: bool) -> None:
        host = host_key(url)
        if gained:
            self._barren.pop(host, None)
        else:
            self._barren.setdefault(host, [0, 0])[0] += 1


def _document(response: Response) -> Answer:
    assert response.status is not None
    return (response.status, response.headers, response.body)


@contextlib.asynccontextmanager
async def rendering(
    config: CrawlConfig,
    fetcher: Fetcher,
    tally: Tally,
    conversion: Callable[[str, bytes], None] | None,
) -> AsyncIterator[Callable[[ParseStage], Parser]]:
    """The crawl's renderer, if --render asks for one and a browser is there; yields
    what puts it in front of the parse stage (nothing, else). The browser is
    started on the first page that needs it and closed on the way out."""
    browser = find_browser(config.browser) if config.render != "never" else None
    if browser is None:
        if config.render == "auto":
            log.warning(
                "--render auto: no headless browser (apt-get install %s); pages are parsed"
                " as fetched",
                BROWSER_PACKAGE,
            )
        yield lambda plain: plain
        return

    async def fetch(method: str, url: str, headers: dict[str, str], data: bytes | None) -> Answer:
        response = await fetcher.fetch(
            url,
            max_bytes=config.max_bytes,
            any_type=True,
            headers=headers,
            method=method,
            data=data,
            paced=False,
        )
        if response.status is None:
            return response.error or "connection"
        return (response.status, response.headers, response.body)

    def restarted() -> None:
        tally.browser_restarts += 1

    settings = Settings(
        config.render_wait, config.render_scroll, frozenset(config.render_block), config.max_bytes
    )
    async with Renderer(
        browser,
        tabs=config.render_tabs,
        timeout=config.render_timeout,
        settings=settings,
        fetch=fetch,
        restarted=restarted,
    ) as renderer:
        yield lambda plain: RenderingParse(plain, renderer, config, conversion)
