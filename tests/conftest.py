"""Shared fixtures: real aiohttp servers on loopback, on free ports, stopped after each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A test certificate authority and certificates for 127.0.0.1 (tests/tls/make_certs.py).
TLS = Path(__file__).parent / "tls"


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
    """serve(routes, host="127.0.0.1") starts a server; all are stopped at teardown.
    ``certificate``: a PEM file of tests/tls (certificate and key), served as https."""
    runners: list[web.AppRunner] = []

    async def start(
        routes: dict[str, Handler], host: str = "127.0.0.1", certificate: str | None = None
    ) -> Site:
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
        context = None
        if certificate is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(TLS / certificate)
        await web.TCPSite(runner, host, 0, ssl_context=context).start()
        runners.append(runner)
        port = runner.addresses[0][1]
        site_record.url = f"{'https' if context else 'http'}://{host}:{port}"
        return site_record

    yield start
    for runner in runners:
        await runner.cleanup()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def until(condition: Callable[[], object], seconds: float, step: float = 0.02) -> None:
    """Poll until ``condition()`` is true; fail the test after ``seconds``."""
    for _ in range(int(seconds / step) + 1):
        if condition():
            return
        await asyncio.sleep(step)
    pytest.fail(f"still not true after {seconds} s")


async def start_cli(
    *args: str,
    cwd: Path,
    stdout: Any = asyncio.subprocess.PIPE,
    stderr: Any = asyncio.subprocess.PIPE,
    **options: Any,
) -> asyncio.subprocess.Process:
    """``crawler ARGS`` (``python -m crawler``) in ``cwd``, as a user runs it; reap it."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", *args, cwd=cwd, stdout=stdout, stderr=stderr, **options
    )


async def run_process(
    *argv: str, cwd: Path, wait: float = 60.0, **options: Any
) -> tuple[int, str, str]:
    """Run a command to its end (killed after ``wait`` seconds): exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **options,
    )
    async with reaped(process):
        async with asyncio.timeout(wait):
            out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def reaped(process: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Run the block; a child process still running at its end (a failed test) is killed."""
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@dataclass
class RedisServer:
    """A redis-server of a test's own, on a free loopback port, without persistence."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server (skipped without one, failed with CRAWLER_REQUIRE_REDIS=1),
    empty: its folder is its own, so no dump.rdb left in the working folder is loaded."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CRAWLER_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed and CRAWLER_REQUIRE_REDIS=1")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    server = RedisServer(process, port)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def busy_loop() -> Iterator[None]:
    """The running loop kept busy while in ``with``, as a crawl keeps it: a callback is
    ready at every turn, so the loop never sleeps until a timer is due."""
    loop = asyncio.get_running_loop()
    handle: asyncio.Handle | None = None

    def turn() -> None:
        nonlocal handle
        handle = loop.call_soon(turn)

    turn()
    try:
        yield
    finally:
        assert handle is not None
        handle.cancel()


class LoopLag:
    """The longest the running loop took to get to a callback that was due, while in
    ``async with``: how late a test server (on this loop) can stamp a request's arrival.
    A test that measures gaps between arrivals allows this much on a busy machine."""

    def __init__(self, step: float = 0.005) -> None:
        self.step = step
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.step
            await asyncio.sleep(self.step)
            self.worst = max(self.worst, loop.time() - due)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
