"""The output folder: never written through a symlink; a folder that cannot be
written, a full disk mid-crawl and a bug each end with one line and an exit code
of their own (never 1), and --resume completes once the cause is gone."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import SiteFactory, read_jsonl, run_process, static_site
from test_cli import Result, assert_one_line_error, run_cli

SITE = {"/": ["/a", "/b"], "/a": ["/c"], "/b": ["/c"], "/c": []}


@pytest.mark.parametrize("name", ["pages.jsonl", "stats.json", "report.html", "state.sqlite"])
async def test_a_symlinked_output_file_is_refused_not_written_through(
    serve: SiteFactory, tmp_path: Path, name: str
) -> None:
    site = await serve(static_site(SITE))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).symlink_to(victim)

    result = await run_cli("crawl", site.url + "/", "--output", "out", cwd=tmp_path)

    assert_one_line_error(result, 2, "is a symlink: the crawler writes nothing through one")
    assert victim.read_text() == "precious\n"
    assert site.requests == []


async def test_a_symlinked_mirror_folder_is_never_written_through(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site(SITE))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    host = site.url.removeprefix("http://").replace(":", "_")
    code, _, err = await run_cli("crawl", site.url + "/", "-o", "out", "--quiet", cwd=tmp_path)
    assert code == 0, err
    # Planted between two passes: --incremental keeps html/ (its pages are not all fetched).
    (tmp_path / "out" / "html").mkdir(parents=True)
    (tmp_path / "out" / "html" / host).symlink_to(elsewhere, target_is_directory=True)

    code, _, err = await run_cli(
        "crawl", "-o", "out", "--incremental", "--save-html", "--quiet", cwd=tmp_path
    )

    assert code == 0, err
    assert list(elsewhere.iterdir()) == []
    assert "is a symlink, never written through" in err
    assert len(read_jsonl(tmp_path / "out" / "pages.jsonl")) == 4


async def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    result = await run_cli(
        "crawl", "http://127.0.0.1:9/", "--output", "/proc/self/fdinfo", cwd=tmp_path
    )
    assert_one_line_error(result, 2, "cannot write to output folder /proc/self/fdinfo")


# A crawl whose state cannot be committed once a record is in the batch, as on a
# full disk: the command line runs in a process of its own with this patch.
FULL_DISK = """
import sqlite3, sys
from crawler.cli import main
from crawler.output.state import CrawlState

real = CrawlState.flush

def full(self, counters):
    if any(completion.record for completion in self._completed):
        raise sqlite3.OperationalError("database or disk is full")
    return real(self, counters)

CrawlState.flush = full
sys.exit(main(sys.argv[1:]))
"""
BUG = """
import sys
from crawler import cli

def bug(args):
    raise KeyError("no one foresaw this")

cli.run_report = bug
sys.exit(cli.main(sys.argv[1:]))
"""


async def run_patched(script: str, *args: str, cwd: Path) -> Result:
    """The command line, with a patch applied first, in a process of its own."""
    (cwd / "patched.py").write_text(script)
    return await run_process(sys.executable, "patched.py", *args, cwd=cwd)


async def test_a_full_disk_stops_the_crawl_with_its_own_code_and_resume_completes(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site(SITE))

    args = ("crawl", site.url + "/", "--output", "out", "--quiet")
    result = await run_patched(FULL_DISK, *args, cwd=tmp_path)

    assert_one_line_error(result, 6, "database or disk is full")
    assert "--resume continues" in result[2]
    code, _, err = await run_cli("crawl", "--resume", "--output", "out", "--quiet", cwd=tmp_path)
    assert code == 0, err  # the space freed
    urls = [record["url"] for record in read_jsonl(tmp_path / "out" / "pages.jsonl")]
    assert sorted(urls) == sorted(site.url + path for path in SITE)


async def test_a_bug_exits_with_its_own_code_in_one_line(tmp_path: Path) -> None:
    result = await run_patched(BUG, "report", "somewhere", cwd=tmp_path)

    assert_one_line_error(result, 7, "internal error: KeyError: 'no one foresaw this'")


@pytest.mark.parametrize("userinfo", ["me:hunter2", "hunter2"])  # a token alone too
async def test_a_seeds_credentials_are_written_nowhere(
    serve: SiteFactory, tmp_path: Path, userinfo: str
) -> None:
    site = await serve(static_site(SITE))
    seed = site.url.replace("http://", f"http://{userinfo}@") + "/"

    code, out, err = await run_cli(
        "crawl", seed, "--output", "out", "--log-file", "crawl.log", cwd=tmp_path
    )

    assert code == 0, err
    assert "hunter2" not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "patched.py":
            assert b"hunter2" not in path.read_bytes(), path


def test_a_record_line_is_json_that_reads_back_and_never_raises() -> None:
    from crawler.output.lines import record_from_line, record_line
    from crawler.records import PageRecord

    record = PageRecord(
        url="http://a.org/é",
        final_url="http://a.org/é",
        status=200,
        depth=1,
        referrer="http://a.org/",
        content_type="text/html",
        title="Ünïcode «title»",
        links=3,
        bytes=10,
        elapsed_ms=2,
        fetched_at="2026-11-30T10:00:00.000+00:00",
        error=None,
    )
    assert record_from_line(record_line(record)) == record
    assert json.loads(record_line(record))["title"] == "Ünïcode «title»"
    # A lone surrogate (bytes that were not UTF-8) is no reason to lose the record.
    broken = dataclasses.replace(record, title="a\udcffb")
    assert json.loads(record_line(broken))["title"] == "a?b"


async def test_warc_never_opens_a_file_that_is_not_its_own(
    serve: SiteFactory, tmp_path: Path
) -> None:
    """A symlink at the --warc path, or an existing file that is no WARC file: one line,
    exit 2, nothing touched (the torn-tail repair cut notes.txt to 0 bytes)."""
    site = await serve(static_site(SITE))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "crawl.warc.gz").symlink_to(victim)
    result = await run_cli(
        "crawl", site.url + "/", "-o", "out", "--warc", "out/crawl.warc.gz", cwd=tmp_path
    )
    assert_one_line_error(result, 2, "is a symbolic link")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    gzipped = tmp_path / "other.gz"
    gzipped.write_bytes(gzip.compress(b"not a web archive\n"))
    for path in (notes, gzipped):
        before = path.read_bytes()
        result = await run_cli(
            "crawl", site.url + "/", "-o", "out", "--warc", path.name, cwd=tmp_path
        )
        assert_one_line_error(result, 2, "is not a WARC file a crawl wrote")
        assert path.read_bytes() == before
    assert victim.read_text() == "precious\n"
    assert site.requests == []


async def test_the_warc_file_keeps_no_credentials_or_cookies(
    serve: SiteFactory, tmp_path: Path
) -> None:
    site = await serve(static_site(SITE))
    (tmp_path / "cookies.txt").write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tsess10n\n"
    )
    seed = site.url.replace("http://", "http://ann:s3cret@") + "/"
    code, _, err = await run_cli(
        "crawl", seed, "-o", "out", "-q", "--warc", "crawl.warc.gz", "--cookies", "cookies.txt",
        "--header", "Authorization: Bearer t0ken", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    archive = gzip.decompress((tmp_path / "crawl.warc.gz").read_bytes())
    assert b"Authorization: [redacted]" in archive and b"Cookie: [redacted]" in archive
    for secret in (b"s3cret", b"sess10n", b"t0ken", base64.b64encode(b"ann:s3cret")):
        assert secret not in archive


async def test_a_folder_no_crawl_wrote_keeps_its_files(serve: SiteFactory, tmp_path: Path) -> None:
    """Files of the names a pass writes, in a folder no crawl wrote, are refused, never
    moved aside (and deleted by the next pass); a mirror folder the crawl did not
    write (no --save-html) stays where it is across passes."""
    site = await serve(static_site(SITE))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("<p>my report</p>")
    result = await run_cli("crawl", site.url + "/", "-o", "out", cwd=tmp_path)
    assert_one_line_error(result, 2, "which no crawl wrote there")
    assert (out / "report.html").read_text() == "<p>my report</p>"
    assert site.requests == [] and not (out / "previous").exists()
    (out / "report.html").unlink()
    (out / "html").mkdir()
    (out / "html" / "mine.html").write_text("mine")
    for _ in range(3):
        code, _, err = await run_cli("crawl", site.url + "/", "-o", "out", "-q", cwd=tmp_path)
        assert code == 0, err
        assert (out / "html" / "mine.html").read_text() == "mine"


@pytest.mark.parametrize("killed_after", range(6))
async def test_a_pass_start_killed_anywhere_leaves_one_whole_pass(
    serve: SiteFactory, tmp_path: Path, killed_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start of a pass moves the last one aside by renames; killed after any of them
    (each rename, then the state's new generation), the next --update lists every
    URL once and keeps the last pass in previous/ (was: every URL twice)."""
    from crawler import CrawlConfig, crawl
    from crawler.output import passes, state

    site = await serve(static_site(SITE))
    config = CrawlConfig(seeds=(site.url + "/",), output_dir=tmp_path / "out", update=True)
    await crawl(config)
    await crawl(config)  # a previous/ to replace
    done: list[str] = []

    class Killed(BaseException):
        pass

    def counted(original: Any) -> Any:
        def step(*args: Any, **kwargs: Any) -> Any:
            if len(done) == killed_after:
                raise Killed
            done.append(original.__name__)
            return original(*args, **kwargs)

        return step

    with monkeypatch.context() as patched:
        patched.setattr(Path, "rename", counted(Path.rename))
        patched.setattr(passes, "_remove", counted(passes._remove))
        patched.setattr(
            state.CrawlState, "start_generation", counted(state.CrawlState.start_generation)
        )
        with contextlib.suppress(Killed):
            await crawl(config)
    stats = await crawl(config)
    assert stats.finished
    urls = [record["url"] for record in read_jsonl(tmp_path / "out" / "pages.jsonl")]
    assert sorted(urls) == sorted(set(urls)) and len(urls) == len(SITE)
    kept = read_jsonl(tmp_path / "out" / "previous" / "pages.jsonl")
    assert len(kept) == len(SITE)
    assert not (tmp_path / "out" / "previous.next").exists()
    assert not (tmp_path / "out" / "previous.old").exists()
