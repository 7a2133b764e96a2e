"""Shared fixtures: real aiohttp servers on loopback, on free ports, stopped after each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Site:
    """A running test server: its base URL and a log of the paths it was asked for."""

    url: str
    requests: list[str] = field(default_factory=list)
    arrivals: list[tuple[str, float]] = field(default_factory=list)

    def count(self, path: str) -> int:
        return self.requests.count(path)


def html_page(title: str, links: list[str] = (), extra: str = "") -> web.Response:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    text = f"<html><head><title>{title}</title></head><body>{anchors}{extra}</body></html>"
    return web.Response(text=text, content_type="text/html")


def static_site(pages: dict[str, list[str]]) -> dict[str, Handler]:
    """Routes for a site given as {path: [links]}; each page's title is its path."""

    def handler(path: str, links: list[str]) -> Handler:
        async def serve(_: web.Request) -> web.StreamResponse:
            return html_page(path, links)

        return serve

    return {path: handler(path, links) for path, links in pages.items()}


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def serve() -> AsyncIterator[SiteFactory]:
    """serve(routes, host="127.0.0.1") starts a server; all are stopped at teardown."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler], host: str = "127.0.0.1") -> Site:
        import time

        app = web.Application()
        site_record = Site("")

        @web.middleware
        async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            site_record.requests.append(request.path_qs)
            site_record.arrivals.append((request.path_qs, time.monotonic()))
            return await handler(request)

        app.middlewares.append(log_requests)
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
        runners.append(runner)
        port = runner.addresses[0][1]
        site_record.url = f"http://{host}:{port}"
        return site_record

    yield start
    for runner in runners:
        await runner.cleanup()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@contextlib.asynccontextmanager
async def reaped(process: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Run the block; a child process still running at its end (a failed test) is killed."""
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
