"""The renderer: a page's fetched body turned into its DOM by a headless browser.

One browser per process, started on the first page that needs it; ``tabs``
pages render at once, each in a tab kept for the next page.

Rules:
1. A render never raises for the page's sake: it ends in a ``Rendering`` with
   the DOM, or with a short ``error`` ("timeout", "too-large",
   "renderer-crashed", "browser-crashed") and the crawl keeps the page's plain
   parse.
2. A crashed tab is closed and the page tried once more in a new one; a dead
   browser is started again once for every tab (the pages it held are tried
   once more). More than ``MAX_DEATHS`` deaths in a minute: rendering is given
   up with one warning, and every later render answers None (plain).
3. A tab that timed out is closed, not reused: its page may still be running.
4. A tab is replaced after ``TAB_PAGES`` pages, and the browser every
   ``RECYCLE_PAGES`` pages once its tabs are idle, so memory stays flat over a
   long crawl.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from crawler.net.browser import Browser, BrowserGone, CallFailed
from crawler.net.tab import Answer, DomTooLarge, Page, Settings, SubFetch, Tab, TabCrashed
from crawler.records import TOO_LARGE

log = logging.getLogger(__name__)

MAX_DEATHS = 3
DEATH_WINDOW = 60.0
RECYCLE_PAGES = 2000
# Pages a tab renders before it is closed for a new one: a renderer process grows
# with every page it shows (here 24 to 63 MB over about 90 pages). Measured over
# 2,000 pages with 8 tabs: peak 787 MB kept, 628 MB at 50 a tab, 498 MB at 25,
# for the same CPU a page.
TAB_PAGES = 25


@dataclass(frozen=True, slots=True)
class Rendering:
    """The end of one render: the page's DOM, or why there is none."""

    page: Page | None
    error: str | None
    elapsed_ms: int


class Renderer:
    """The crawl's browser and its tabs; an async context manager (closes the browser)."""

    def __init__(
        self,
        browser: Path,
        *,
        tabs: int,
        timeout: float,
        settings: Settings,
        fetch: SubFetch,
        restarted: Callable[[], None] = lambda: None,
    ) -> None:
        self._path = browser
        self._timeout = timeout
        self._settings = settings
        self._fetch = fetch
        self._restarted = restarted
        self._slots = asyncio.Semaphore(tabs)
        self._starting = asyncio.Lock()
        self._browser: Browser | None = None
        self._idle: list[Tab] = []
        self._busy = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._rendered = 0
        self._deaths: collections.deque[float] = collections.deque()
        self.given_up = False

    async def __aenter__(self) -> Renderer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._shut()

    async def render(self, url: str, document: Answer) -> Rendering | None:
        """``url``'s DOM from its fetched ``document``; None once rendering is given up."""
        started = time.monotonic()
        error = None
        for _ in range(2):
            if self.given_up:
                return None
            try:
                async with self._slots:
                    page = await self._in_tab(url, document)
                return Rendering(page, None, _since(started))
            except TimeoutError:
                return Rendering(None, "timeout", _since(started))
            except DomTooLarge:
                return Rendering(None, TOO_LARGE, _since(started))
            except (TabCrashed, CallFailed):
                error = "renderer-crashed"
            except BrowserGone:
                error = "browser-crashed"
        return Rendering(None, error, _since(started))

    async def _in_tab(self, url: str, document: Answer) -> Page:
        tab = await self._tab()
        healthy = False
        try:
            async with asyncio.timeout(self._timeout):
                page = await tab.render(url, document, self._fetch, self._settings)
            healthy = not tab.crashed
            return page
        finally:
            await self._done_with(tab, healthy)

    async def _tab(self) -> Tab:
        while True:
            async with self._starting:
                browser = await self._usable_browser()
                if browser is not None:
                    self._busy += 1
                    self._drained.clear()
                    break
            await self._drained.wait()  # a browser to replace: its tabs finish first
        try:
            if self._idle:
                return self._idle.pop()
            return await Tab.open(browser)
        except BaseException:
            self._release()
            raise

    async def _done_with(self, tab: Tab, healthy: bool) -> None:
        self._rendered += 1
        tab.pages += 1
        browser = self._browser
        if healthy and browser is not None and browser.alive() and tab.pages < TAB_PAGES:
            self._idle.append(tab)
        else:
            await tab.close()
        self._release()

    def _release(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._drained.set()

    async def _usable_browser(self) -> Browser | None:
        """The running browser, started (again) if it is not; None while a browser to
        replace still has pages in its tabs (rules 2 and 4)."""
        browser = self._browser
        if browser is not None and browser.alive() and self._rendered < RECYCLE_PAGES:
            return browser
        if browser is not None:
            if self._busy > 0:
                return None
            if not browser.alive():
                self._died()
            await self._shut()
        if self.given_up:
            raise BrowserGone()
        try:
            self._browser = await Browser.start(self._path)
        except OSError as error:
            self.given_up = True
            log.warning(
                "cannot start the browser %s (%s): pages are parsed as fetched",
                self._path,
                error.strerror or error,
            )
            raise BrowserGone() from None
        self._rendered = 0
        return self._browser

    def _died(self) -> None:
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - DEATH_WINDOW:
            self._deaths.popleft()
        if len(self._deaths) > MAX_DEATHS:
            self.given_up = True
            log.warning(
                "the browser died %d times in a minute: rendering given up, pages are parsed"
                " as fetched",
                len(self._deaths),
            )
        else:
            self._restarted()
            log.warning("the browser died; starting it again")

    async def _shut(self) -> None:
        browser, self._browser = self._browser, None
        tabs, self._idle = self._idle, []
        if browser is None:
            return
        with contextlib.suppress(BrowserGone):
            for tab in tabs:
                await tab.close()
        await browser.close()


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
