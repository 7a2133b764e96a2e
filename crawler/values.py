"""Values of settings as people write them: durations ("12h"), status ranges
("200..299,403"), proxy URLs ("host:port"), headers and seeds, each checked into
what the crawl uses.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from crawler.errors import ConfigError
from crawler.web.urls import normalize, redact_url


def proxy_url(value: str, name: str) -> str:
    """A proxy URL as curl takes one: without a scheme it is http://. Only HTTP proxies
    are supported: another scheme (socks5://) is refused, never ignored (the requests
    would go direct)."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    scheme = text.partition("://")[0].lower()
    if scheme != "http" or not text.partition("://")[2].strip("/"):
        raise ConfigError(
            f"{name}: only http:// proxies are supported, not {redact_url(value)!r}", setting=name
        )
    return text


# Headers the crawler sets itself (or that would break its requests).
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# What a header's value cannot hold (RFC 9110 §5.5): control characters but the tab.
_CONTROL = frozenset(chr(code) for code in (*range(0x09), *range(0x0A, 0x20), 0x7F))


def check_headers(headers: tuple[str, ...], user_agent: str) -> None:
    """Refuse a header ("Name: value") or user agent that cannot be sent as one."""
    for header in headers:
        name, colon, _ = header.partition(":")
        if not colon or not name.strip() or any(c in name for c in " \t\r\n"):
            raise ConfigError(f"header wants 'Name: value', not {header!r}", setting="header")
        if name.strip().lower() in _OWN_HEADERS or not _CONTROL.isdisjoint(header):
            raise ConfigError(f"header {name.strip()!r} cannot be set", setting="header")
    if not _CONTROL.isdisjoint(user_agent):
        raise ConfigError(
            f"user_agent is sent as a header: one line of text, not {user_agent!r}",
            setting="user_agent",
        )


def check_seed(seed: str) -> None:
    """Refuse a seed that is no http(s) URL, suggesting the URL a host name means."""
    if normalize(seed) is not None:
        return
    guess = "http://" + seed
    first = seed.split("/")[0]
    host = first.partition(":")[0].lower()
    # A host name, with a port or not ("mailto:a@b.org" is none).
    hostlike = "@" not in first and ("." in host or host == "localhost" or host[:1] == "[")
    if "://" not in seed and normalize(guess) is not None and hostlike:
        raise ConfigError(f"not an http(s) URL: {seed!r} (did you mean {guess}?)", "seeds")
    raise ConfigError(f"not an http(s) URL: {seed!r}", setting="seeds")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(value: str, setting: str) -> float:
    """Seconds from "90", "90s", "30m", "12h", "1d" or "2w"."""
    text = value.strip().lower()
    scale = _UNITS.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        seconds = float(number) * (scale or 1)
        if not math.isfinite(seconds):
            raise ValueError(value)
    except ValueError:
        raise ConfigError(
            f"{setting} wants seconds or a duration like 30m, 12h, 1d, not {value!r}",
            setting=setting,
        ) from None
    return seconds


def accepted_statuses(accept: str) -> frozenset[int]:
    """The statuses of ``--accept``: codes and ranges, "200..299,403"."""
    statuses: set[int] = set()
    for part in accept.replace(" ", "").split(","):
        low, dots, high = part.partition("..")
        try:
            first, last = int(low), int(high if dots else low)
        except ValueError:
            first = last = 0
        if not 100 <= first <= last <= 599:
            raise ConfigError(
                f"accept wants status codes and ranges like 200..299,403, not {accept!r}",
                setting="accept",
            )
        statuses.update(range(first, last + 1))
    return frozenset(statuses)


RENDER_MODES = ("never", "auto", "always")
# Resource types a rendered page's requests have (CDP's, in lower case): what
# render_block may name.
RESOURCE_TYPES = frozenset(
    {
        "document",
        "stylesheet",
        "image",
        "media",
        "font",
        "script",
        "texttrack",
        "xhr",
        "fetch",
        "prefetch",
        "eventsource",
        "manifest",
        "ping",
        "cspviolationreport",
        "preflight",
        "other",
    }
)
# Debian's browser packages, the lighter first: the headless shell costs 72-84 CPU
# ms a page here against 113-126 for chromium --headless.
BROWSER_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser")
BROWSER_PACKAGE = "chromium-headless-shell"


def find_browser(given: Path | None) -> Path | None:
    """The browser to start: ``given`` (--browser) if set, else Debian's on PATH."""
    if given is not None:
        return given
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    return None


def render_problem(
    render: str, block: tuple[str, ...], browser: Path | None
) -> tuple[str, str] | None:
    """What is wrong with the --render settings, and the setting it is about."""
    if render not in RENDER_MODES:
        return f"render must be one of {', '.join(RENDER_MODES)}, not {render!r}", "render"
    unknown = sorted(set(block) - RESOURCE_TYPES)
    if unknown:
        known = ", ".join(sorted(RESOURCE_TYPES))
        problem = f"render_block: unknown type(s) {', '.join(unknown)} (known: {known})"
        return problem, "render_block"
    if browser is not None and not (browser.is_file() and os.access(browser, os.X_OK)):
        return f"browser: {browser} is no program that can be run", "browser"
    if render == "always" and find_browser(browser) is None:
        return (
            "--render always needs a headless browser: install Debian's"
            f" {BROWSER_PACKAGE} (apt-get install {BROWSER_PACKAGE}), or give --browser PATH",
            "render",
        )
    return None
