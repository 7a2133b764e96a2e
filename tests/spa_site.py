"""A single-page-app site for --render's tests and benchmark (aiohttp, loopback).

Every page but /static and /item/N is an app shell: an empty ``<div id="root">``
and a script that builds the page. What each shows:

- ``/``, ``/about``, ``/route/...``: a fetch() of ``/api<path>.json``, its links
  inserted as anchors;
- ``/router``: ``history.pushState`` to /route/one and /route/two;
- ``/timer``: a link to /after-timer 500 ms after the script runs;
- ``/scroll``: 10 links to /item/N, 10 more each time it is scrolled to the bottom,
  60 in all;
- ``/jsredirect``: ``location.href = "/redirected"``;
- ``/surrogate``: a title with a lone surrogate (what no UTF-8 holds), and a
  link inserted by a timer given as a string;
- ``/private``: a fetch() of the cloud metadata address (link /leaked if it
  answers, /refused if not), a WebSocket to this server (counted), and a POST
  whose answer names /posted;
- ``/hostile``: alert(), confirm() (a link to /confirmed if confirmed),
  window.open(), a beforeunload that asks to stay;
- ``/bulky``, ``/bulky-xhr``: links in a 4 MB answer, by fetch() and by XHR;
- ``/sprawl?text=T&times=N&pushes=P``: T written N times (a DOM as large as
  asked), and P pushState URLs;
- ``/spin``: a script that never yields;
- ``/static``: the same site as plain HTML (a twin, never needing a browser).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SHELL = """<!DOCTYPE html><html><head><title>{title}</title></head>
<body><div id="root"></div><script src="/app.js"></script>{script}</body></html>"""
APP = """
fetch("/api" + (location.pathname === "/" ? "/index" : location.pathname) + ".json")
  .then((answer) => answer.json())
  .then((page) => {
    const root = document.getElementById("root");
    const heading = document.createElement("h1");
    heading.textContent = page.title;
    root.appendChild(heading);
    for (const link of page.links) {
      const anchor = document.createElement("a");
      anchor.href = link;
      anchor.textContent = link;
      root.appendChild(anchor);
    }
  });
"""
PAGES = {
    "/index": [
        "/about",
        "/router",
        "/timer",
        "/jsredirect",
        "/private",
        "/static",
    ],
    "/about": ["/", "/team"],
    "/team": [],
    "/router": [],
    "/route/one": [],
    "/route/two": [],
    "/timer": [],
    "/after-timer": [],
    "/redirected": [],
    "/private": [],
    "/refused": [],
    "/posted": [],
    "/leaked": [],
    "/jsredirect": [],
    "/scroll": [],
    "/surrogate": [],
    "/hostile": [],
    "/spin": [],
    "/bulky": [],
    "/bulky-xhr": [],
    "/sprawl": [],
}
SCRIPTS = {
    "/router": '<script>history.pushState({}, "", "/route/one");'
    'history.pushState({}, "", "/route/two");</script>',
    "/timer": "<script>setTimeout(() => { const a = document.createElement('a');"
    " a.href = '/after-timer'; a.textContent = 'later'; document.body.appendChild(a); }, 500);"
    "</script>",
    "/jsredirect": '<script>location.href = "/redirected";</script>',
    # A lone surrogate in the DOM's text, which no UTF-8 can hold.
    # Dialogs that wait for a person, and a window it opens: neither stops the page.
    "/hostile": "<script>alert('hello'); if (confirm('sure?')) {"
    " const a = document.createElement('a'); a.href = '/confirmed'; document.body.appendChild(a);"
    " } window.open('/popup'); window.addEventListener('beforeunload', (e) => {"
    " e.preventDefault(); e.returnValue = ''; });</script>",
    # Content that comes in a big answer (its links, and 4 MB of other data), read
    # by fetch() or by XMLHttpRequest.
    "/bulky": """<script>
fetch("/api/bulky").then((answer) => answer.json()).then((page) => {
  for (const link of page.links) document.body.appendChild(document.createElement("a")).href = link;
});
</script>""",
    "/bulky-xhr": """<script>
const request = new XMLHttpRequest();
request.open("GET", "/api/bulky");
request.onload = () => {
  for (const link of JSON.parse(request.responseText).links)
    document.body.appendChild(document.createElement("a")).href = link;
};
request.send();
</script>""",
    # A DOM the script makes as large as asked, ?text=T&times=N, and URLs it goes to,
    # &pushes=N (and one link in HTML).
    "/sprawl": """<a href="/team">team</a><script>
const asked = new URLSearchParams(location.search);
document.body.appendChild(document.createElement("p")).textContent =
  asked.get("text").repeat(Number(asked.get("times")));
for (let i = 0; i < Number(asked.get("pushes")); i++) history.pushState({}, "", "/route/" + i);
</script>""",
    # A script that never yields: its render times out, the next page is rendered.
    "/spin": "<script>while (true) {}</script>",
    # ... and a timer given as a string of code, as old pages set them.
    "/surrogate": '<script>document.title = "half \\ud800 a pair";'
    "setTimeout(\"document.body.appendChild(document.createElement('a')).href = '/strung'\","
    " 20);</script>",
    "/private": """<script>
const add = (href) => { const a = document.createElement("a"); a.href = href;
  a.textContent = href; document.body.appendChild(a); };
fetch("http://169.254.169.254/latest/meta-data/").then(() => add("/leaked"), () => add("/refused"));
try { new WebSocket("ws://" + location.host + "/ws"); } catch (e) {}
fetch("/api/post", {method: "POST", body: "x=1", headers: {"Content-Type": "text/plain"}})
  .then((answer) => answer.json()).then((page) => add(page.link));
</script>""",
    "/scroll": """<script>
let batch = 0;
const more = () => {
  if (batch >= 6) return;
  fetch("/api/items?batch=" + batch++).then((answer) => answer.json()).then((items) => {
    for (const item of items) {
      const row = document.createElement("div");
      row.style.height = "120px";
      const a = document.createElement("a");
      a.href = item; a.textContent = item;
      row.appendChild(a);
      document.body.appendChild(row);
    }
  });
};
more();
window.addEventListener("scroll", () => {
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 10) more();
});
</script>""",
}
STATIC = """<!DOCTYPE html><html><head><title>static</title></head><body>
<h1>A page in plain HTML</h1><p>{text}</p>{links}</body></html>"""


class SpaSite:
    """The site's routes, and what it saw: WebSocket connections and POST bodies."""

    def __init__(self) -> None:
        self.sockets = 0
        self.posts: list[bytes] = []
        self.requests: list[str] = []
        # Called with an API path before it is answered (a test's hook).
        self.on_api: Callable[[str], None] | None = None

    def app(self) -> web.Application:
        @web.middleware
        async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests.append(request.path_qs)
            return await handler(request)

        app = web.Application(middlewares=[log_requests])
        app.router.add_get("/app.js", self._app_js)
        app.router.add_get("/api/items", self._items)
        app.router.add_post("/api/post", self._post)
        app.router.add_get("/api/bulky", self._bulky)
        app.router.add_get("/api/{path:.*}.json", self._api)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/static", self._static)
        app.router.add_get("/item/{number}", self._static)
        app.router.add_get("/{path:.*}", self._shell)
        return app

    async def _shell(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if (path if path != "/" else "/index") not in PAGES:
            raise web.HTTPNotFound()
        body = SHELL.format(title=path, script=SCRIPTS.get(path, ""))
        return web.Response(text=body, content_type="text/html")

    async def _app_js(self, _: web.Request) -> web.StreamResponse:
        return web.Response(text=APP, content_type="application/javascript")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        if path not in PAGES:
            raise web.HTTPNotFound()
        if self.on_api is not None:
            self.on_api(path)
        return web.json_response({"title": path, "links": PAGES[path]})

    async def _items(self, request: web.Request) -> web.StreamResponse:
        batch = int(request.query.get("batch", "0"))
        return web.json_response([f"/item/{batch * 10 + number}" for number in range(10)])

    async def _bulky(self, _: web.Request) -> web.StreamResponse:
        return web.json_response({"links": ["/team", "/about"], "data": ["0123456789"] * 400_000})

    async def _post(self, request: web.Request) -> web.StreamResponse:
        self.posts.append(await request.read())
        return web.Response(text=json.dumps({"link": "/posted"}), content_type="application/json")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        self.sockets += 1
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.close()
        return socket

    async def _static(self, request: web.Request) -> web.StreamResponse:
        links = "".join(f'<a href="/{name}">{name}</a>' for name in ("about", "team", "timer"))
        links += '<a href="/router">router</a><a href="/">home</a>'
        text = "Plain words a reader can read without any script running at all. " * 3
        return web.Response(text=STATIC.format(text=text, links=links), content_type="text/html")
