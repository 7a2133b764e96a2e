"""The public surface: crawler.__all__ and the synchronous wrapper."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

import crawler
from conftest import SiteFactory, html_page, run_process, static_site


def test_all_is_sorted_and_exported() -> None:
    assert crawler.__all__ == sorted(crawler.__all__)
    for name in crawler.__all__:
        assert getattr(crawler, name).__doc__, f"{name} has no docstring"


def test_py_typed_is_shipped() -> None:
    assert (Path(crawler.__file__).parent / "py.typed").exists()


@pytest.fixture
def threaded_site() -> Iterator[str]:
    """A server on its own loop in a thread, for code that runs its own event loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def page(_: web.Request) -> web.StreamResponse:
        return html_page("home", ["/next"])

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/next", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder["runner"] = runner
        holder["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    assert ready.wait(10)
    yield str(holder["url"])
    runner = holder["runner"]
    assert isinstance(runner, web.AppRunner)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_run_is_a_synchronous_crawl(threaded_site: str, tmp_path: Path) -> None:
    stats = crawler.run(crawler.CrawlConfig(seeds=(threaded_site,), output_dir=tmp_path))
    assert stats.pages == 2
    assert stats.finished
    assert (tmp_path / "pages.jsonl").read_text().count("\n") == 2


def test_every_public_name_is_documented() -> None:
    reference = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    for name in crawler.__all__:
        assert f"\n## {name}\n" in reference, f"docs/api.md has no section for {name}"


async def test_the_library_prints_nothing(serve: SiteFactory, tmp_path: Path) -> None:
    """An extractor that raises fails its page: the record says so, nothing is printed
    (Python's last-resort handler printed a traceback for every page)."""
    site = await serve(static_site({"/": ["/a"], "/a": []}))
    script = (
        "import asyncio\n"
        "from crawler import CrawlConfig, crawl\n"
        "def broken(page):\n    raise RuntimeError('my bug')\n"
        f"stats = asyncio.run(crawl(CrawlConfig(seeds=['{site.url}/'], extract=broken)))\n"
        "assert stats.error_counts == {'extractor-failed': 2}, stats.error_counts\n"
    )
    code, out, err = await run_process(sys.executable, "-c", script, cwd=tmp_path)
    assert (code, out, err) == (0, "", "")
