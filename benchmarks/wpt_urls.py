"""Agreement of urls.normalize with browsers, on the web-platform-tests URL data.

    python3 benchmarks/wpt_urls.py PATH/TO/urltestdata.json [--show]

The data is web-platform-tests' url/resources/urltestdata.json (the suite
browsers and ada test against); it is not in this repository: give its path.
Its http(s) cases are those whose base is http(s), or with no base an input
that starts with http: or https:. Each case's expected URL is the browser's
(the case's own components: protocol, hostname, port, pathname, search) put
through the crawler's documented dedup rules, written here a second time,
independently of the code under test: fragment and userinfo dropped, a
host's trailing dot removed, an empty query dropped, unreserved escapes
decoded and the others upper-cased, query parameters sorted. A case the
browser refuses ("failure") must give None; so must one whose result is not
http(s). Prints the agreement and, with --show, every disagreement.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from crawler.web.urls import normalize

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return re.sub(r"%([0-9A-Fa-f]{2})", one, text)


def expected(case: dict[str, Any]) -> str | None:
    """The browser's URL for a case, under the crawler's dedup rules."""
    if case.get("failure"):
        return None
    scheme = case["protocol"].rstrip(":")
    if scheme not in ("http", "https"):
        return None
    host = case["hostname"]
    if not host.startswith("["):
        host = host.rstrip(".")
    port = f":{case['port']}" if case["port"] else ""
    query = _unescape(case["search"].removeprefix("?"))
    pieces = sorted((piece for piece in query.split("&") if piece), key=lambda p: p.partition("="))
    query = "&".join(pieces)
    path = _unescape(case["pathname"])
    return f"{scheme}://{host}{port}{path}" + (f"?{query}" if query else "")


def http_cases(data: list[Any]) -> list[dict[str, Any]]:
    cases = []
    for case in data:
        if not isinstance(case, dict):
            continue  # a comment line
        base = case.get("base")
        if base is not None:
            if base.lower().startswith(("http:", "https:")):
                cases.append(case)
        elif case["input"].strip().lower().startswith(("http:", "https:")):
            cases.append(case)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--show", action="store_true", help="list every disagreement")
    args = parser.parse_args()
    cases = http_cases(json.loads(args.data.read_text(encoding="utf-8")))
    wrong = []
    for case in cases:
        ours = normalize(case["input"], case.get("base"))
        if ours != expected(case):
            wrong.append((case, ours))
    agree = len(cases) - len(wrong)
    print(f"{agree} of {len(cases)} http(s) cases agree ({100 * agree / len(cases):.1f}%)")
    if args.show:
        for case, ours in wrong:
            where = f"{case['input']!r} on {case.get('base')!r}"
            print(f"  {where}: ours {ours!r}, browsers {expected(case)!r}")


if __name__ == "__main__":
    main()
