"""The bundled demo site: a deterministic aiohttp.web app served on 127.0.0.1.

Imports nothing from crawler, so it can run as its own process
(``python -m crawler.demo --pages N``), which prints its URL on the first line
of stdout and serves until it is stopped.

The site: an index, ``pages`` numbered pages (each links to the next, so all
are reachable, and to a few others chosen by a seeded random generator), an
about page, a redirect (/old-home), three missing pages (404), a page that
fails (500), a PDF, a page robots.txt disallows (/private/), an off-site link,
a mailto: link, robots.txt and sitemap.xml.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys

from aiohttp import web

DEFAULT_PAGES = 500
_BROKEN = ("/missing/1", "/missing/2", "/missing/3", "/server-error")


def _page_links(number: int, pages: int) -> list[str]:
    chooser = random.Random(number)
    links = [f"/page/{number % pages + 1}"]
    links += [f"/page/{chooser.randint(1, pages)}" for _ in range(5)]
    if number % 97 == 0:
        links.append(_BROKEN[(number // 97) % len(_BROKEN)])
    if number % 50 == 0:
        links += ["/private/report", "/files/report.pdf", "/old-home"]
    if number % 25 == 0:
        links += ["https://example.invalid/elsewhere", "mailto:team@example.invalid"]
    return links


def _html(title: str, links: list[str], body: str = "") -> str:
    items = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{body}</p><ul>{items}</ul></body></html>"
    )


async def old_home(_: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/")


async def server_error(_: web.Request) -> web.Response:
    raise web.HTTPInternalServerError(text="the demo fails here on purpose")


async def pdf(_: web.Request) -> web.Response:
    return web.Response(body=b"%PDF-1.4\n%demo\n", content_type="application/pdf")


async def private(_: web.Request) -> web.Response:
    return web.Response(text=_html("Private", []), content_type="text/html")


async def robots(request: web.Request) -> web.Response:
    base = f"{request.scheme}://{request.host}"
    text = f"User-agent: *\nDisallow: /private/\nSitemap: {base}/sitemap.xml\n"
    return web.Response(text=text)


def build_app(pages: int = DEFAULT_PAGES) -> web.Application:
    """The demo site with ``pages`` numbered pages."""
    words = ["polite", "crawler", "demo", "site", "page", "link", "robots", "sitemap", "redirect"]

    async def index(_: web.Request) -> web.Response:
        links = [f"/page/{n}" for n in range(1, min(pages, 10) + 1)] + ["/about", _BROKEN[0]]
        return web.Response(text=_html("Demo home", links), content_type="text/html")

    async def page(request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        if not 1 <= number <= pages:
            raise web.HTTPNotFound()
        body = " ".join(random.Random(-number).choices(words, k=120))
        html = _html(f"Demo page {number}", _page_links(number, pages), body)
        return web.Response(text=html, content_type="text/html")

    async def about(_: web.Request) -> web.Response:
        links = ["/", "/private/report", "/files/report.pdf", "/old-home", _BROKEN[3]]
        links += ["https://example.invalid/elsewhere", "mailto:team@example.invalid"]
        return web.Response(text=_html("About the demo", links), content_type="text/html")

    async def sitemap(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        urls = "".join(f"<url><loc>{base}/page/{n}</loc></url>" for n in range(1, pages + 1))
        xml = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
        return web.Response(text=xml, content_type="application/xml")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/page/{number:\\d+}", page)
    app.router.add_get("/about", about)
    app.router.add_get("/old-home", old_home)
    app.router.add_get("/server-error", server_error)
    app.router.add_get("/files/report.pdf", pdf)
    app.router.add_get("/private/report", private)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/sitemap.xml", sitemap)
    return app


async def start(pages: int = DEFAULT_PAGES, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the demo on 127.0.0.1 (a free port by default); return the runner and base URL."""
    runner = web.AppRunner(build_app(pages), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    address = runner.addresses[0]
    return runner, f"http://127.0.0.1:{address[1]}/"


async def serve(pages: int, port: int) -> None:
    """Serve until SIGINT or SIGTERM, printing the URL first."""
    runner, url = await start(pages, port)
    print(url, flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.demo", description=__doc__)
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pages < 1:
        parser.error("--pages must be at least 1")
    asyncio.run(serve(args.pages, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
