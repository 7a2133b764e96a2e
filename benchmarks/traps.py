"""A site made only of traps and hostile answers, crawled with the default settings.

    python3 benchmarks/traps.py

Serves (aiohttp, on 127.0.0.1, a free port, in a child process stopped at the
end) an endless calendar, paths that grow forever, URLs thousands of
characters long, decompression bombs (gzip, deflate, brotli), a body far
past --max-bytes, a lying Content-Length, a connection reset mid-body, a
server that trickles, one that stalls, 429 and 503 storms, redirect loops and
chains, redirects to file:/javascript:/data:, garbage, NUL bytes, deep
nesting and mislabelled charsets; then runs `crawler crawl` on it with only
--timeout 5 and --max-retry-after 1, and prints the time it took, its peak
RSS, the records by error, and whether any file appeared outside the output
folder.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import brotli
from aiohttp import web


def page(links: list[str], extra: str = "") -> web.Response:
    anchors = "".join(f'<a href="{link}">x</a>' for link in links)
    return web.Response(
        text=f"<html><body>{anchors}{extra}</body></html>", content_type="text/html"
    )


def build() -> web.Application:
    routes = web.RouteTableDef()
    # Built here, in the server's process only: a 300 MB buffer in the measuring
    # process would be counted in the crawler's peak RSS (fork copies it).
    bomb = b"<html>" + b" " * 300_000_000
    bombs = {
        "gzip": gzip.compress(bomb, compresslevel=6),
        "deflate": zlib.compress(bomb),
        "br": brotli.compress(bomb, quality=5),
    }

    @routes.get("/")
    async def home(_: web.Request) -> web.Response:
        links = ["/calendar/0", "/grow/", "/long", "/big", "/liar", "/reset", "/trickle", "/stall"]
        links += [f"/bomb/{kind}" for kind in bombs] + [f"/busy/{n}" for n in range(20)]
        links += ["/loop-a", "/chain/0", "/to-file", "/to-js", "/to-data", "/garbage", "/deep"]
        links += ["/sjis", "/same?b=2&a=1", "/same?a=1&b=2#x", "/./same?a=1&b=2"]
        return page(links)

    @routes.get("/calendar/{month}")
    async def calendar(request: web.Request) -> web.Response:
        month = int(request.match_info["month"])
        return page([f"/calendar/{month + 1}", f"/calendar/{month + 1}?view=week"])

    @routes.get("/grow/{tail:.*}")
    async def grow(request: web.Request) -> web.Response:
        return page([request.path + "a/", request.path + "b/"])

    @routes.get("/long")
    async def long(_: web.Request) -> web.Response:
        return page(["/x" * 5000])

    @routes.get("/big")
    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"<html>" + b"x" * 50_000_000, content_type="text/html")

    @routes.get("/bomb/{kind}")
    async def bomb(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        headers = {"Content-Encoding": kind, "Content-Type": "text/html"}
        return web.Response(body=bombs[kind], headers=headers)

    @routes.get("/liar")
    async def liar(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/html", "Content-Length": "99999"}
        )
        await response.prepare(request)
        await response.write(b"<html>short")
        assert request.transport is not None
        request.transport.close()
        return response

    @routes.get("/reset")
    async def reset(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html>" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    @routes.get("/trickle")
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        # The crawler hangs up at its --timeout: the trickle ends there, quietly.
        with contextlib.suppress(ConnectionResetError):
            for _ in range(1000):
                await response.write(b".")
                await asyncio.sleep(0.1)
        return response

    @routes.get("/stall")
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html>")
        await asyncio.sleep(3600)
        return response

    @routes.get("/busy/{n}")
    async def busy(request: web.Request) -> web.Response:
        status = 429 if int(request.match_info["n"]) % 2 else 503
        return web.Response(status=status, headers={"Retry-After": "3600"})

    def redirect(location: str):  # type: ignore[no-untyped-def]
        async def handler(_: web.Request) -> web.Response:
            raise web.HTTPFound(location)

        return handler

    for path, location in {
        "/loop-a": "/loop-b",
        "/loop-b": "/loop-a",
        "/to-file": "file:///etc/passwd",
        "/to-js": "javascript:alert(1)",
        "/to-data": "data:text/html,x",
    }.items():
        routes.get(path)(redirect(location))

    @routes.get("/chain/{n}")
    async def chain(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/chain/{int(request.match_info['n']) + 1}")

    @routes.get("/garbage")
    async def garbage(_: web.Request) -> web.Response:
        return web.Response(
            body=os.urandom(100_000) + b"\x00<a href='/g'>", content_type="text/html"
        )

    @routes.get("/deep")
    async def deep(_: web.Request) -> web.Response:
        return web.Response(body=b"<div>" * 200_000, content_type="text/html")

    @routes.get("/sjis")
    async def sjis(_: web.Request) -> web.Response:
        body = "<meta charset='shift_jis'><a href='/日本'>x</a>".encode("shift_jis")
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})

    @routes.get("/{other:.*}")
    async def anything(_: web.Request) -> web.Response:
        return page([])

    app = web.Application()
    app.add_routes(routes)
    return app


def serve(port: int) -> None:
    web.run_app(
        build(), host="127.0.0.1", port=port, print=None, access_log=None, shutdown_timeout=1
    )


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            before = set(work.iterdir())
            command = [sys.executable, "-m", "crawler", "crawl", f"http://127.0.0.1:{port}/"]
            command += ["--output", "out", "--quiet", "--timeout", "5", "--max-retry-after", "1"]
            started = time.monotonic()
            process = subprocess.Popen(command, cwd=work)
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.monotonic() - started
            records = [json.loads(line) for line in (work / "out" / "pages.jsonl").open()]
            errors = collections.Counter(str(r["error"] or r["status"]) for r in records)
            print(
                f"exit {os.waitstatus_to_exitcode(status)} after {seconds:.1f} s, "
                f"peak RSS {usage.ru_maxrss / 1024:.1f} MB, {len(records)} records"
            )
            print("records by error (or status):", dict(sorted(errors.items())))
            print("files outside out/:", sorted(set(work.iterdir()) - before - {work / "out"}))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        main()
