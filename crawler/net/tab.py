"""One browser tab rendering one page at a time from a body already fetched.

Rules:
1. The page's own document request is answered with the body the crawler
   fetched: the page is never requested twice.
2. Every other request the page makes is paused (CDP Fetch domain) and either
   failed at once (its resource type is blocked, or it leaves the main frame's
   document: a navigation) or answered by the crawler's fetcher through
   ``fetch``, so the crawl's address rule, proxy, identity and WARC apply.
3. A navigation of the main frame (``location = ...``, a meta refresh) and every
   ``history.pushState`` URL are noted, never followed: the crawl queues them.
4. Settled means: the load event fired, no request is in flight (as the crawler
   sees it, and as the page does: its fetch() and XMLHttpRequest answers wholly
   arrived), the DOM has not changed for ``wait`` seconds since then, and no
   short timer set early is pending; then
   the page is scrolled to its bottom up to ``scroll`` times, settling again.
5. A crashed renderer fails the page at once (``TabCrashed``); the tab is not
   used again. A DOM larger than --max-bytes (with the URLs noted) fails it too
   (``DomTooLarge``), and is never sent to the crawler.
6. Nothing a page does waits for a person: a dialog (alert, confirm, prompt) is
   accepted at once, and a new window is refused by the browser.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from crawler.net.browser import Browser, BrowserGone, CallFailed

_T = TypeVar("_T")
log = logging.getLogger(__name__)

# A subresource's answer, as the fetcher gives it: (status, headers, body), or the
# fetcher's short failure reason as a str.
Answer = tuple[int, Mapping[str, str], bytes] | str
SubFetch = Callable[[str, str, dict[str, str], bytes | None], Awaitable[Answer]]

# Seconds a tab's close is waited for.
CLOSE_WAIT = 1.0
# Requests that only tell a server something (beacons, reports): never sent.
_NEVER = frozenset({"ping", "cspviolationreport", "prefetch"})
# Request headers a page's script may choose, passed on; the crawler sets the rest
# (User-Agent, cookies, credentials) as for any of its requests.
_PASSED = frozenset({"accept", "accept-language", "content-type", "x-requested-with"})
# Answer headers not passed to the browser: the body comes decoded and whole.
_DROPPED = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)
# The main frame has loaded: its load event, or its loading stopped (a script's
# navigation, failed by rule 3, stops it before its load event).
_LOADED = frozenset({"Page.loadEventFired", "Page.frameStoppedLoading"})
# The fetcher's reasons as Chromium's network errors (what a script sees).
_NET_ERRORS = {
    "timeout": "TimedOut",
    "dns": "NameNotResolved",
    "connection-refused": "ConnectionRefused",
    "private-address": "AddressUnreachable",
}

# Runs in every document before its scripts: notes pushState URLs, the time of the
# last DOM change, the short timers set in the first seconds (content shown after
# a timer), and the page's fetch() and XMLHttpRequest calls until their answers
# have wholly arrived (the page's own count: the browser tells the crawler of a
# request later than the page makes it, and an answer reaches the page later than
# the crawler hands it over). An answer's arrival counts as a change.
# ``settled(ms, fresh)`` resolves once all are quiet; ``fresh`` restarts the clock.
_WATCH = """(() => {
  if (window.top !== window || window.__crawler) return;
  const state = {last: performance.now(), urls: [], timers: new Set(), pending: 0};
  const arrived = () => { state.pending -= 1; state.last = performance.now(); };
  const fetch = window.fetch;
  window.fetch = function () {
    const answer = Reflect.apply(fetch, window, arguments);
    state.pending += 1;
    answer.then((response) => response.clone().arrayBuffer()).then(arrived, arrived);
    return answer;
  };
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function () {
    let open = true;
    const end = () => { if (open) { open = false; arrived(); } };
    state.pending += 1;
    this.addEventListener("loadend", end, {once: true});
    try { return send.apply(this, arguments); } catch (error) { end(); throw error; }
  };
  const setTimer = window.setTimeout.bind(window), clearTimer = window.clearTimeout.bind(window);
  const note = (url) => {
    try { state.urls.push(String(new URL(url, location.href))); } catch (e) {}
  };
  for (const name of ["pushState", "replaceState"]) {
    const original = history[name];
    history[name] = function (data, title, url) {
      if (url !== undefined && url !== null) note(url);
      return original.apply(this, arguments);
    };
  }
  window.setTimeout = function (callback, ms, ...rest) {
    if (typeof callback !== "function") return setTimer(callback, ms, ...rest);  // a string
    const counted = !(ms > 1000) && performance.now() < 5000;
    const id = setTimer(function () {
      state.timers.delete(id);
      if (typeof callback === "function") callback.apply(this, rest);
    }, ms);
    if (counted) state.timers.add(id);
    return id;
  };
  window.clearTimeout = function (id) { state.timers.delete(id); return clearTimer(id); };
  new MutationObserver(() => { state.last = performance.now(); })
    .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  state.settled = (ms, fresh) => new Promise((resolve) => {
    if (fresh) state.last = performance.now();
    const check = () => {
      const quiet = performance.now() - state.last;
      if (quiet >= ms && state.timers.size === 0 && state.pending === 0) resolve(true);
      else setTimer(check, Math.max(ms - quiet, 25));
    };
    check();
  });
  Object.defineProperty(window, "__crawler", {value: state});
})();"""
# The DOM as HTML and the URLs noted, or nothing when together they are longer
# than ``limit`` (UTF-16 units, never more than their UTF-8 bytes): what is too
# large is not sent.
_DOM = """((limit) => {
  const doctype = document.doctype ? "<!DOCTYPE " + document.doctype.name + ">" : "";
  const urls = window.__crawler ? window.__crawler.urls : [];
  const html = doctype + document.documentElement.outerHTML;
  const size = urls.reduce((total, url) => total + url.length, html.length);
  return size > limit ? {html: null, urls: []} : {html: html, urls: urls};
})"""
# A scroll counts as a change: the page's scroll handlers run a frame later, and
# settling waits for what they start.
_SCROLL = """(() => {
  const before = document.documentElement.scrollHeight;
  window.scrollTo(0, before);
  if (window.__crawler) window.__crawler.last = performance.now();
  return before;
})()"""


class TabCrashed(Exception):
    """The tab's renderer process died."""


class DomTooLarge(Exception):
    """The page built a DOM larger than --max-bytes."""


@dataclass(frozen=True, slots=True)
class Page:
    """What rendering made of a page: its DOM, and the URLs it tried to go to."""

    html: bytes
    urls: tuple[str, ...]
    requests: int


@dataclass(frozen=True, slots=True)
class Settings:
    """How a page is rendered (--render-wait, --render-scroll, --render-block), and
    the largest DOM taken (--max-bytes, as its UTF-8)."""

    wait: float
    scroll: int
    block: frozenset[str]
    max_bytes: int


class Tab:
    """One target of the browser, reused page after page; ``open()`` makes one."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self._browser = browser
        self.target = target
        self._session = session
        self._page: _Loading | None = None
        self.crashed = False
        self.pages = 0

    @classmethod
    async def open(cls, browser: Browser) -> Tab:
        target = (await browser.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attaching = {"targetId": target, "flatten": True}
        attached = await browser.call("Target.attachToTarget", attaching)
        tab = cls(browser, target, attached["sessionId"])
        browser.on_events(tab._session, tab._event)
        await asyncio.gather(
            tab._call("Page.enable"),
            tab._call("Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH}),
            tab._call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}),
        )
        return tab

    async def close(self) -> None:
        """Close the tab; a browser too busy to answer within a second is left to
        its own close (the renderer's rules 2 and 4)."""
        self._browser.on_events(self._session, None)
        with contextlib.suppress(BrowserGone, CallFailed, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT):
                await self._browser.call("Target.closeTarget", {"targetId": self.target})

    async def render(self, url: str, answer: Answer, fetch: SubFetch, settings: Settings) -> Page:
        """The DOM of the page at ``url`` whose document is ``answer``, once settled."""
        page = self._page = _Loading(answer, fetch, settings.block)
        try:
            navigated = await self._call("Page.navigate", {"url": url})
            page.frame = navigated.get("frameId")
            await self._wait(page.loaded)
            await self._settle(page, settings.wait)
            for _ in range(settings.scroll):
                height = await self._evaluate(_SCROLL)
                await self._settle(page, settings.wait)
                if await self._evaluate("document.documentElement.scrollHeight") <= height:
                    break
            dom = await self._evaluate(f"{_DOM}({settings.max_bytes})")
        finally:
            self._page = None
            await page.stop()
        if dom["html"] is None:
            raise DomTooLarge()
        html = dom["html"].encode("utf-8", "replace")  # a script's lone surrogates
        if len(html) > settings.max_bytes:
            raise DomTooLarge()
        urls = (*page.navigations, *dom["urls"])
        return Page(html, tuple(dict.fromkeys(urls)), page.requests)

    async def _settle(self, page: _Loading, wait: float) -> None:
        """Until the DOM, the short timers and the network are all quiet (rule 4).
        After the crawler answers the page's last request, the page has ``wait``
        seconds from then to act on it."""
        ms, fresh = int(wait * 1000), "false"
        while True:
            await self._evaluate(f"window.__crawler.settled({ms}, {fresh})", promise=True)
            if page.quiet():
                return
            await self._wait(page.idle.wait())
            fresh = "true"

    async def _evaluate(self, expression: str, *, promise: bool = False) -> Any:
        result = await self._call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": promise},
        )
        if "exceptionDetails" in result:
            raise CallFailed(str(result["exceptionDetails"].get("text")))
        return result["result"].get("value")

    async def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._wait(self._browser.call(method, params, self._session))

    async def _wait(self, awaitable: Awaitable[_T]) -> _T:
        """``awaitable``, unless the tab crashes (TabCrashed) or the browser ends
        (BrowserGone) first: a page's load event, say, never comes from a dead one."""
        if self.crashed:
            raise TabCrashed()
        page = self._page
        if page is None:
            return await awaitable
        waiting = asyncio.ensure_future(awaitable)
        ends = (waiting, page.crash, self._browser.gone)
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiting.done():
                waiting.cancel()  # the tab or browser ended first, or the render was cancelled
        if waiting.done() and not waiting.cancelled():
            return waiting.result()
        if self._browser.gone.done():
            raise BrowserGone()
        raise TabCrashed()

    def _event(self, method: str, params: dict[str, Any]) -> None:
        page = self._page
        if method == "Inspector.targetCrashed":
            self.crashed = True
            if page is not None and not page.crash.done():
                page.crash.set_result(None)
        elif method == "Fetch.requestPaused":
            if page is None:
                self._browser.send("Fetch.failRequest", _failed(params, "Aborted"), self._session)
            else:
                page.paused(params, self._browser, self._session)
        elif method in _LOADED and page is not None and not page.loaded.done():
            page.load_event(method, params)
        elif method == "Page.javascriptDialogOpening":
            # alert(), confirm(), prompt() and beforeunload stop the page's scripts
            # until answered: answered at once, as a person clicking OK.
            self._browser.send("Page.handleJavaScriptDialog", {"accept": True}, self._session)


def _failed(params: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"requestId": params["requestId"], "errorReason": reason}


class _Loading:
    """One page while it renders: its requests in flight, and what it tried to reach."""

    def __init__(self, answer: Answer, fetch: SubFetch, block: frozenset[str]) -> None:
        loop = asyncio.get_running_loop()
        self.frame: str | None = None
        self.loaded: asyncio.Future[None] = loop.create_future()
        self.crash: asyncio.Future[None] = loop.create_future()
        self.idle = asyncio.Event()
        self.idle.set()
        self.navigations: list[str] = []
        self.requests = 0
        self._answer: Answer | None = answer
        self._fetch = fetch
        self._block = block | _NEVER
        self._flying: set[asyncio.Task[None]] = set()

    def load_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired" or params.get("frameId") == self.frame:
            self.loaded.set_result(None)

    def quiet(self) -> bool:
        return not self._flying

    def paused(self, params: dict[str, Any], browser: Browser, session: str) -> None:
        request = params["request"]
        kind = str(params.get("resourceType", "other")).lower()
        if kind == "document":
            if params.get("frameId") != self.frame and self.frame is not None:
                browser.send("Fetch.failRequest", _failed(params, "BlockedByClient"), session)
            elif self._answer is not None:  # rule 1: the document the crawler fetched
                answer, self._answer = self._answer, None
                browser.send("Fetch.fulfillRequest", _fulfilled(params, answer), session)
            else:  # rule 3: a navigation, noted and stopped
                self.navigations.append(request["url"])
                browser.send("Fetch.failRequest", _failed(params, "Aborted"), session)
            return
        if kind in self._block or not request["url"].startswith(("http://", "https://")):
            browser.send("Fetch.failRequest", _failed(params, "BlockedByClient"), session)
            return
        self.requests += 1
        task = asyncio.create_task(self._answered(params, browser, session), name="subresource")
        self._flying.add(task)
        self.idle.clear()
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._flying.discard(task)
        if not self._flying:
            self.idle.set()

    async def _answered(self, params: dict[str, Any], browser: Browser, session: str) -> None:
        request = params["request"]
        headers = {
            name: value for name, value in request["headers"].items() if name.lower() in _PASSED
        }
        data = None
        if request.get("hasPostData"):
            data = b"".join(
                base64.b64decode(entry.get("bytes", ""))
                for entry in request.get("postDataEntries", ())
            )
        try:
            answer = await self._fetch(request["method"], request["url"], headers, data)
        except Exception:  # a bug of ours: the request fails, the page does not hang on it
            log.error("a rendered page's request failed: %s", request["url"], exc_info=True)
            answer = "internal"
        if isinstance(answer, str):
            reason = _NET_ERRORS.get(answer, "Failed")
            browser.send("Fetch.failRequest", _failed(params, reason), session)
        else:
            browser.send("Fetch.fulfillRequest", _fulfilled(params, answer), session)

    async def stop(self) -> None:
        """The page's requests still in flight are cancelled (the tab moves on)."""
        for task in self._flying:
            task.cancel()
        if self._flying:
            await asyncio.gather(*self._flying, return_exceptions=True)


def _fulfilled(params: dict[str, Any], answer: Answer) -> dict[str, Any]:
    assert not isinstance(answer, str)
    status, headers, body = answer
    kept = [
        {"name": name, "value": value}
        for name, value in headers.items()
        if name.lower() not in _DROPPED
    ]
    return {
        "requestId": params["requestId"],
        "responseCode": status,
        "responseHeaders": kept,
        "body": base64.b64encode(body).decode("ascii"),
    }
