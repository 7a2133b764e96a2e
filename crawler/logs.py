"""The command line's logging: one line a message on stderr, everything in --log-file.

Only cli.py uses it: the library never configures logging.
"""

from __future__ import annotations

import logging
from pathlib import Path

from crawler.errors import ConfigError
from crawler.escapes import visible


class Visible(logging.Formatter):
    """A message's control characters (a URL or title from a page) are escaped: a log
    line is one line, and no escape sequence reaches a terminal."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message)
        return super().formatMessage(record)


class OneLine(Visible):
    """stderr gets one line a message; a traceback goes to the --log-file only."""

    def format(self, record: logging.LogRecord) -> str:
        line = logging.makeLogRecord(record.__dict__)
        line.exc_info = line.exc_text = line.stack_info = None
        return super().format(line)


def _ours_or_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.partition(".")[0] == "crawler"


def setup_logging(log_file: str | Path | None, *, verbose: bool = False) -> None:
    """Warnings and errors on stderr (with ``verbose``, the debug log too); the log
    file gets the crawl's story from INFO up."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    if verbose:  # the crawler's own debug log; other libraries' warnings only
        logging.getLogger("crawler").setLevel(logging.DEBUG)
        stderr.setLevel(logging.DEBUG)
        stderr.addFilter(_ours_or_warning)
    stderr.setFormatter(OneLine("crawler: %(levelname)s: %(message)s"))
    root.addHandler(stderr)
    if log_file is not None:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot write log file {log_file}: {error.strerror}") from None
        handler.setLevel(logging.INFO)
        handler.setFormatter(Visible("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
