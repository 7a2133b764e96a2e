"""Passes over one output folder: --update's choice, and the previous pass kept aside.

A pass is one crawl of the site from its seeds to its end, however many
runs (--resume) it takes. When a new pass starts in a folder that holds
one (a new crawl after a finished one, --incremental, --update), what the
last pass wrote moves to ``previous/``: nothing of it survives into the new
pass's files, and the new pass can be compared with it (``broken_changes``).
--incremental keeps ``html/`` in place: pages that did not change are not
fetched again, so the mirror is updated, not rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.config import CrawlConfig
from crawler.errors import ConfigError
from crawler.output.files import PASS_FILES, PREVIOUS, RETIRED, STAGING
from crawler.output.state import CrawlState


def settle_update(config: CrawlConfig) -> CrawlConfig:
    """--update as the mode the output folder needs: a new crawl when it holds none,
    --resume for an unfinished one, --incremental for a finished one."""
    if not config.update or config.output_dir is None:
        return config
    path = config.output_dir / "state.sqlite"
    if not path.exists():
        return dataclasses.replace(config, update=False)
    state = CrawlState.open(path)
    try:
        finished = state.meta("status") == "finished"
    finally:
        state.close()
    return dataclasses.replace(config, update=False, incremental=finished, resume=not finished)


def keep_previous(directory: Path, *, ours: bool, html: bool) -> None:
    """Move the last pass's files into ``previous/`` (the one before is dropped), before
    the new pass writes anything (its state included).

    Only the crawl's own files move: ``ours`` says a crawl of this folder wrote them
    (its state or its shared crawl's marker is there), ``html`` that the last pass
    wrote ``html/`` and the new one does not update it. In a folder no crawl wrote,
    files of the names a pass writes are not ours: the pass refuses to start rather
    than move, overwrite or later delete them.

    Crash-safe: the files go into ``previous.next/`` first, which then replaces
    ``previous/`` by renames; a start killed at any instant is rolled forward by the
    next one (the files in the folder and in ``previous.next/`` are all still the
    last pass's, since the new pass writes nothing before this returns). The folder
    was checked for symlinks when it was locked (files.OUTPUT_NAMES)."""
    present = [name for name in PASS_FILES if (directory / name).exists()]
    if html and (directory / "html").exists():
        present.append("html")
    if not ours:
        if present:
            raise ConfigError(
                f"{directory} holds {', '.join(present)}, which no crawl wrote there (no"
                " state.sqlite): the crawler writes these names and never touches files"
                " not its own; move them, or give the crawl another --output"
            )
        return
    staging, retired = directory / STAGING, directory / RETIRED
    previous = directory / PREVIOUS
    try:
        if not present and not staging.exists():
            _remove(retired)
            return
        staging.mkdir(exist_ok=True)
        for name in present:
            (directory / name).rename(staging / name)
        _remove(retired)
        if previous.exists() or previous.is_symlink():
            previous.rename(retired)
        staging.rename(previous)
        _remove(retired)
    except OSError as error:
        raise ConfigError(f"cannot keep the last pass in {previous}: {error.strerror}") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@dataclass(frozen=True, slots=True)
class BrokenChanges:
    """This pass's broken links against the previous pass's (none: all are new)."""

    new: list[dict[str, Any]]
    known: list[dict[str, Any]]
    fixed: list[str]


def broken_changes(directory: Path) -> BrokenChanges:
    current = _broken(directory / "broken.jsonl")
    before = _broken(directory / PREVIOUS / "broken.jsonl")
    return BrokenChanges(
        new=[link for url, link in current.items() if url not in before],
        known=[link for url, link in current.items() if url in before],
        fixed=[url for url in before if url not in current],
    )


def _broken(path: Path) -> dict[str, dict[str, Any]]:
    """broken.jsonl by URL; a missing or torn file is as far as it can be read."""
    links: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return links
    for line in text.splitlines():
        try:
            link = json.loads(line)
            links[link["url"]] = link
        except (ValueError, KeyError, TypeError):
            continue
    return links
