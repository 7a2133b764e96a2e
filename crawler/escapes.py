"""Text from pages made safe for where it is shown: a terminal, XML, markdown.

A page chooses its hrefs, titles and ids; a check reports what it found as written
(an invalid URL, a javascript: link). Control characters in them must not reach
a terminal raw (an escape sequence rewrites the screen or the title bar), break
an XML document (XML 1.0 allows no C0 control but tab and line breaks) or start a
new line in a markdown comment (a heading, a link, an @mention of someone).
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, and the Unicode characters that reorder or break
# lines in a terminal or an editor (bidi embeddings, overrides and isolates, the
# line and paragraph separators: the "Trojan Source" characters). Lone surrogates
# too: no file takes them.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``,
    ``\\u202e``): one line, shown as it is, on a terminal, in XML or in markdown."""
    if text.isprintable():  # the common case: nothing to do
        return text
    return _UNSAFE.sub(_escape, text)
