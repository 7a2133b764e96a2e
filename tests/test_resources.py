"""The crawl within this machine's resources: open files (net/pool.py)."""

from __future__ import annotations

import json
import resource
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from conftest import html_page, read_jsonl
from test_cli import assert_one_line_error, run_cli

HOSTS = 300


@pytest.fixture
async def many_hosts() -> AsyncIterator[list[str]]:
    """One server on HOSTS ports of 127.0.0.1 (each port a host of its own): every
    front page links to every other one."""
    urls: list[str] = []

    async def front(request: web.Request) -> web.Response:
        return html_page(request.host, urls)

    app = web.Application()
    app.router.add_get("/", front)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    for _ in range(HOSTS):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
    urls += [f"http://127.0.0.1:{port}/" for _, port in runner.addresses]
    yield urls
    await runner.cleanup()


def _files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


async def test_a_crawl_of_more_hosts_than_open_files_fetches_every_page(
    many_hosts: list[str], tmp_path: Path
) -> None:
    """300 hosts, 128 files (soft and hard): the idle connections kept fit beside the
    requests in flight, so no connect fails for want of a file (before: a third of the
    pages recorded connection-refused, and their hosts marked down)."""
    code, _, err = await run_cli(
        "crawl",
        many_hosts[0],
        "--span-hosts",
        "--concurrency",
        "16",
        "-o",
        "out",
        "-q",
        cwd=tmp_path,
        preexec_fn=lambda: _files(128),
    )

    assert code == 0, err
    records = read_jsonl(tmp_path / "out" / "pages.jsonl")
    assert Counter((r["status"], r["error"]) for r in records) == {(200, None): HOSTS}
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["finished"] and stats["pages"] == HOSTS


async def test_a_concurrency_the_file_limit_cannot_hold_is_one_line(tmp_path: Path) -> None:
    result = await run_cli(
        "crawl",
        "http://127.0.0.1:9/",
        "--concurrency",
        "500",
        cwd=tmp_path,
        preexec_fn=lambda: _files(256),
    )
    assert_one_line_error(result, 2, "--concurrency 500 needs as many sockets")
    assert "(ulimit -n)" in result[2]
