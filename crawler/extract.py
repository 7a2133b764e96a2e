"""Extractors: user functions that pull items out of pages, and the link rules.

An extractor is a plain function, sync
or async, named on the command line as ``package.module:function``:

    def extract(page: Page) -> Iterable[dict]:
        yield {"url": page.url, "title": page.soup.title.string}
        page.follow = [url for url in page.follow if "/docs/" in url]

It receives a Page (``url``, ``final_url``, ``status``, ``headers``,
``text``, ``soup``, ``follow``), returns an iterable of items (dicts, each
written as one line of items.jsonl), and may replace ``page.follow`` to
choose which of the page's links are followed. ``text`` is decoded once and
``soup`` (a BeautifulSoup tree, lxml builder) is built once, only when asked for.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from crawler.errors import ConfigError
from crawler.web.parser import decode_html
from crawler.web.urls import path_of

if TYPE_CHECKING:
    from bs4 import BeautifulSoup

Extractor = Callable[
    ["Page"], Iterable[dict[str, Any]] | Awaitable[Iterable[dict[str, Any]]] | None
]
LinkFilter = Callable[[str], bool]


class Page:
    """What an extractor sees of one fetched HTML page."""

    def __init__(
        self,
        url: str,
        final_url: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        charset: str | None,
        follow: list[str],
    ) -> None:
        self.url = url
        self.final_url = final_url
        self.status = status
        self.headers = headers
        self.body = body
        self._charset = charset
        # The in-scope links that will be followed; an extractor may replace the list.
        self.follow = follow

    @cached_property
    def text(self) -> str:
        """The body decoded (BOM, header, <meta>, detection), once."""
        return decode_html(self.body, self._charset)

    @cached_property
    def soup(self) -> BeautifulSoup:
        """The BeautifulSoup tree of the page, built on first use."""
        # Imported here: bs4 is a tenth of a front process's start-up, and most
        # crawls never build a tree.
        from bs4 import BeautifulSoup

        return BeautifulSoup(self.text, "lxml")


@dataclass(frozen=True, slots=True)
class Item:
    """One item an extractor produced, with the page it came from (items.jsonl)."""

    url: str
    data: dict[str, Any]


def load_extractor(spec: str) -> Extractor:
    """The function named ``package.module:function`` or ``path/to/file.py:function``;
    ConfigError if it cannot be had.

    A module name is looked for in the installed packages first, then in the working
    folder, for that name alone: no module of the folder shadows an installed one,
    and no optional module another library looks for (cchardet, say) is ever taken
    from it."""
    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise ConfigError(
            f"--extract wants package.module:function or path/to/file.py:function, not {spec!r}"
        )
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            module = _module_from_file(Path(module_name))
        else:
            module = _module_by_name(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import extractor module {module_name!r}: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read extractor {module_name}: {error.strerror}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{module_name} has no function {function_name!r}")
    return function  # type: ignore[no-any-return]


def _module_by_name(name: str) -> ModuleType:
    top = name.partition(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        # Not installed: the working folder's, found there by name alone (the folder is
        # never put on sys.path, where every later import would search it).
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        if spec is not None:
            _execute(spec)
    return importlib.import_module(name)


def _module_from_file(path: Path) -> ModuleType:
    """The module in the file at ``path``, imported under a name of its own."""
    path = path.resolve()
    if not path.is_file():
        raise ImportError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"_crawler_extractor_{path.stem}", path)
    if spec is None:
        raise ImportError(f"not a Python file: {path}")
    return _execute(spec)


def _execute(spec: ModuleSpec) -> ModuleType:
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


async def run_extractor(extractor: Extractor, page: Page) -> list[dict[str, Any]]:
    """The items of one page (an async extractor is awaited). Its exceptions propagate."""
    produced = extractor(page)
    if inspect.isawaitable(produced):
        produced = await produced
    if produced is None:
        return []
    items = []
    for item in produced:
        if not isinstance(item, dict):
            raise TypeError(f"an extractor must yield dicts, not {type(item).__name__}")
        items.append(item)
    return items


def _matcher(pattern: str) -> Callable[[str], object]:
    """``re:REGEX`` matches anywhere in the URL; a glob from ``/`` matches the URL's path
    and everything below it (``/docs/`` or ``/docs``: /docs and /docs/..., as wget's -I
    and -X take folders); any other glob matches the whole URL. A glob that could match
    no URL (``docs/*``) is refused, with the two spellings that work."""
    try:
        if pattern.startswith("re:"):
            return re.compile(pattern[3:]).search
        if pattern.startswith("/"):
            return _path_matcher(pattern)
        if not pattern.startswith(("http", "*", "?", "[")):
            raise ConfigError(
                f"link pattern {pattern!r} can match no URL: a glob matches the whole URL"
                f" ('*{pattern}*'), or from a slash the URL's path ('/{pattern}')"
            )
        return re.compile(fnmatch.translate(pattern)).fullmatch
    except re.error as error:
        raise ConfigError(f"bad link pattern {pattern!r}: {error}") from None


def _path_matcher(pattern: str) -> Callable[[str], bool]:
    whole = re.compile(fnmatch.translate(pattern)).fullmatch
    below = re.compile(fnmatch.translate(pattern.rstrip("/") + "/*")).fullmatch

    def matches(url: str) -> bool:
        path = path_of(url)
        return bool(whole(path) or below(path))

    return matches


class LinkRules:
    """--allow / --deny patterns and a callable filter: which in-scope links are followed.

    Deny wins; with any allow pattern a URL must match one of them.
    """

    def __init__(
        self, allow: Iterable[str], deny: Iterable[str], link_filter: LinkFilter | None
    ) -> None:
        self._allow = [_matcher(pattern) for pattern in allow]
        self._deny = [_matcher(pattern) for pattern in deny]
        self._filter = link_filter
        self.active = bool(self._allow or self._deny or link_filter)

    def admits(self, url: str) -> bool:
        if not self.active:
            return True
        if any(match(url) for match in self._deny):
            return False
        if self._allow and not any(match(url) for match in self._allow):
            return False
        return self._filter is None or bool(self._filter(url))


class CheckRules:
    """crawler check's --exclude and --include: which links are never requested.

    A link is excluded when an --exclude pattern matches it and no --include
    pattern does (lychee's rule: an include wins over every exclude).
    """

    def __init__(self, exclude: Iterable[str], include: Iterable[str]) -> None:
        self._exclude = [_matcher(pattern) for pattern in exclude]
        self._include = [_matcher(pattern) for pattern in include]
        self.active = bool(self._exclude)

    def excludes(self, url: str) -> bool:
        if not any(match(url) for match in self._exclude):
            return False
        return not any(match(url) for match in self._include)
