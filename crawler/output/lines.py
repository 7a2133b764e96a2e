"""The one place a record or an item becomes text: the JSON lines of the output files.

pages.jsonl, state.sqlite's copy of each record and items.jsonl hold these
lines; pages.csv holds the same fields (files.py writes both from the
record). A line read back (--resume) becomes the same record again.
"""

from __future__ import annotations

import json
from typing import Any

from crawler.records import RECORD_FIELDS, PageRecord


def record_line(record: PageRecord) -> str:
    return json.dumps(record.as_dict(), ensure_ascii=False)


def record_from_line(line: str) -> PageRecord:
    values = json.loads(line)
    return PageRecord(**{name: values[name] for name in RECORD_FIELDS if name in values})


def item_line(item: dict[str, Any]) -> str:
    """An extractor's item; values JSON cannot hold are written as their str()."""
    return json.dumps(item, ensure_ascii=False, default=str)
