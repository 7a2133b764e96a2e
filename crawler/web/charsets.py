"""A link's query in its page's character set, as browsers write it (WHATWG URL:
a special URL's query is encoded in its document's encoding, the path and the
fragment in UTF-8): ``?q=café`` on a windows-1252 page is ``?q=caf%E9``, another
URL than ``?q=caf%C3%A9`` to a server that reads Latin-1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def written_in(resolve: Callable[[str], T], codec: str | None) -> Callable[[str], T]:
    """``resolve`` for the links of a page whose queries are in ``codec``
    (parser.ParsedPage.query_codec): each link as query_in writes it; ``resolve``
    itself for a UTF-8 page (None)."""
    if codec is None:
        return resolve

    def resolve_written(link: str) -> T:
        return resolve(link if link.isascii() else query_in(link, codec))

    return resolve_written


# What a browser leaves as it is of the bytes of a query in a page's character set:
# the special-query percent-encode set's complement (WHATWG URL).
_QUERY_KEPT = frozenset(range(0x21, 0x7F)) - frozenset(b"\"#<>'")
_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# The URL Standard's schemes whose query is written in the page's character set.
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})


def query_in(link: str, codec: str) -> str:
    """``link`` as a browser reads it on a page in ``codec``: the characters of its
    query past ASCII in that character set, percent-encoded, and one the set lacks
    as the percent-encoded ``&#N;`` (WHATWG URL, for a special URL's query; the
    path and the fragment are UTF-8 on any page)."""
    hash_mark = link.find("#")
    end = len(link) if hash_mark == -1 else hash_mark
    start = link.find("?", 0, end) + 1
    if not start or link[start:end].isascii():
        return link
    scheme = _SCHEME_PREFIX.match(link)
    if scheme is not None and scheme.group()[:-1].lower() not in _SPECIAL_SCHEMES:
        return link
    query = _NON_ASCII.sub(lambda run: _in_charset(run.group(), codec), link[start:end])
    return link[:start] + query + link[end:]


def _in_charset(text: str, codec: str) -> str:
    """``text`` in ``codec``, its bytes percent-encoded as query_in says."""
    written = []
    while text:
        try:
            data, rest = text.encode(codec), ""
        except UnicodeEncodeError as error:
            data, rest = text[: error.start].encode(codec), text[error.start :]
        written.append("".join(chr(b) if b in _QUERY_KEPT else f"%{b:02X}" for b in data))
        if rest:
            written.append(f"%26%23{ord(rest[0])}%3B")
        text = rest[1:]
    return "".join(written)
