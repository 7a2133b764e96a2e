"""Pure: the line where an element's tag starts, as people read a page's source.

No I/O; crawler check's refs.PageRefs is given its ``line`` (loop/parsing.page_refs).
"""

from __future__ import annotations

import bisect
import re
from array import array

from lxml import etree


class TagStarts:
    """The line where an element's tag starts. lxml gives the line where the start tag
    ends (``<a`` on line 3, ``href=...>`` on line 5: 5); people read the first. From
    the end of that line, the ``<tag`` before it whose text holds one of the element's
    attribute values is the element's; none within a few tags: lxml's line.

    libxml2 keeps an element's line in 16 bits: every element past line 65,535 says
    65,535. There the tags are found in the source in document order, from where the
    last one was found: the next ``<tag`` holding one of its values (before it, for an
    element of a streamed page, shown as it ends, whose children came first). So are
    the tags of a page too deep for libxml2's tree, whose elements have no line."""

    _LOOK_BACK = 16
    _LOOK_AHEAD = 64
    _CAPPED = 65535

    def __init__(self, source: bytes, streamed: bool) -> None:
        self._source = source
        # Where each line ends (8 bytes a line), made on the first element past line 1.
        self._line_ends: array[int] | None = None
        # Past line 65,535: where the last tag found starts; elements shown as they end.
        self._cursor = 0
        self._streamed = streamed
        self._patterns: dict[bytes, re.Pattern[bytes]] = {}

    def line(self, element: etree._Element) -> int:
        reported: int | None = element.sourceline
        source = self._source
        if not source or (reported is not None and reported < 2):
            return reported or 0
        if self._line_ends is None:
            self._line_ends = array("Q", (match.start() for match in re.finditer(b"\n", source)))
        ends = self._line_ends
        capped = reported is not None and reported >= self._CAPPED and len(ends) >= self._CAPPED
        if reported is None or capped:  # no line (a page read again: parser._flat_tree)
            if capped:
                self._cursor = max(self._cursor, ends[self._CAPPED - 2] + 1)
            start = self._in_order(element)
            return bisect.bisect_left(ends, start if start is not None else self._cursor) + 1
        end = ends[reported - 1] if reported - 1 < len(ends) else len(source)
        start = self._start(element, end)
        if start is None:
            return reported
        return reported - (bisect.bisect_left(ends, end) - bisect.bisect_left(ends, start))

    def _in_order(self, element: etree._Element) -> int | None:
        """The offset of the element's ``<tag`` past line 65,535 (see the class)."""
        if self._streamed and len(element):
            start = self._start(element, self._cursor)
            if start is not None:
                return start  # a parent: its tag is before its children's
        tag, values = self._tag_and_values(element)
        pattern = self._patterns.get(tag)
        if pattern is None:
            pattern = self._patterns[tag] = re.compile(
                b"<" + re.escape(tag) + rb"[\s/>]", re.IGNORECASE
            )
        source, position = self._source, self._cursor
        for _ in range(self._LOOK_AHEAD):
            match = pattern.search(source, position)
            if match is None:
                break
            position = match.start()
            closing = source.find(b">", position)
            text = source[position : closing if closing != -1 else len(source)]
            if not values or any(value in text for value in values):
                self._cursor = position + 1
                return position
            position += 1
        return self._start(element, self._cursor)

    @staticmethod
    def _tag_and_values(element: etree._Element) -> tuple[bytes, list[bytes]]:
        tag = str(element.tag).encode("ascii", "replace").lower()
        return tag, [value.encode() for value in element.values() if value and "&" not in value]

    def _start(self, element: etree._Element, end: int) -> int | None:
        """The offset of the element's ``<tag``, searching back from ``end``."""
        source = self._source
        tag, values = self._tag_and_values(element)
        if not values:
            return None
        position = end
        for _ in range(self._LOOK_BACK):
            position = source.rfind(b"<", 0, position)
            if position == -1:
                return None
            name = source[position + 1 : position + 1 + len(tag)].lower()
            after = source[position + 1 + len(tag) : position + 2 + len(tag)]
            if name == tag and (after.isspace() or after in (b">", b"/")):
                closing = source.find(b">", position)
                text = source[position : closing if closing != -1 else end]
                if any(value in text for value in values):
                    return position
        return None
