"""A page's character set label as a browser reads it (the WHATWG Encoding Standard),
named as Python's codecs name it.

Python's codecs know other labels than browsers do, and decode some labels to
other character sets. A browser decodes "iso-8859-1" and "us-ascii" as
windows-1252 (whose curly quotes and euro sign Latin-1 reads as control
characters), "shift_jis" as Microsoft's superset of it, "gb2312" as GB18030,
"euc-kr" as windows-949 and "big5" with its Hong Kong extension: a page in one
of those labels, made on Windows, most often uses characters only the
superset has. A label no browser knows ("utf-7", "utf-32", an EBCDIC code
page) is no label, and a <meta> that says UTF-16 means UTF-8 (the page was read
as ASCII bytes to find it).
"""

from __future__ import annotations

import codecs
import functools
import re

# The encodings of the Encoding Standard, by their Python codec names (its
# "x-user-defined" and "replacement" are left out: no page is read that way).
_BROWSERS = frozenset(
    {
        "utf-8", "cp866", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5", "iso8859-6",
        "iso8859-7", "iso8859-8", "iso8859-10", "iso8859-13", "iso8859-14", "iso8859-15",
        "iso8859-16", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "cp874", "cp1250",
        "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
        "gb18030", "big5hkscs", "euc_jp", "iso2022_jp", "cp932", "cp949", "utf-16-be",
        "utf-16-le",
    }
)  # fmt: skip
# Python's decoding of a label, where a browser decodes it as a superset.
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
    "utf-16": "utf-16-le",
}
# Browsers' labels Python does not know.
_LABELS = {
    "unicode-1-1-utf-8": "utf-8",
    "unicode11utf8": "utf-8",
    "unicode20utf8": "utf-8",
    "x-unicode20utf8": "utf-8",
    "windows-874": "cp874",
    "dos-874": "cp874",
    "iso885911": "cp874",
    "iso-8859-8-i": "iso8859-8",
    "csiso88598i": "iso8859-8",
    "csiso88598e": "iso8859-8",
    "logical": "iso8859-8",
    "visual": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "iso-8859-6-e": "iso8859-6",
    "csiso88596i": "iso8859-6",
    "csiso88596e": "iso8859-6",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-ukrainian": "mac-cyrillic",
    "x-mac-roman": "mac-roman",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "ms_kanji": "cp932",
    "csshiftjis": "cp932",
    "x-gbk": "gb18030",
    "chinese": "gb18030",
    "csgb2312": "gb18030",
    "x-x-big5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "csbig5": "big5hkscs",
    "x-euc-jp": "euc_jp",
    "windows-949": "cp949",
    "korean": "cp949",
    "ksc5601": "cp949",
    "ksc_5601": "cp949",
    **{f"x-cp125{digit}": f"cp125{digit}" for digit in range(9)},
}


@functools.lru_cache(maxsize=256)
def codec_for(label: str, *, in_page: bool = False) -> str | None:
    """The Python codec a browser's reading of ``label`` is (``in_page``: a <meta>'s),
    or None when browsers know no such label."""
    label = label.strip().lower()
    name = _LABELS.get(label)
    if name is None:
        try:
            name = codecs.lookup(label).name
        except (LookupError, ValueError):  # ValueError: a NUL in the label
            return None
        name = _SUPERSETS.get(name, name)
    if in_page and name.startswith("utf-16"):
        return "utf-8"
    return name if name in _BROWSERS else None


def query_codec(codec: str) -> str | None:
    """The character set a page in ``codec`` writes its links' queries in, when it is
    not UTF-8 (WHATWG URL: a page's own encoding, and UTF-8 for UTF-16's)."""
    return None if codec == "utf-8" or codec.startswith("utf-16") else codec


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
