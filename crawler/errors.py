"""Exception hierarchy of the crawler.

Per-URL failures are never exceptions
(they are records with an ``error`` reason); these are the errors that stop a
run, and ``cli.py`` maps each to its exit code.
"""


class CrawlerError(Exception):
    """Base of every error the crawler raises on purpose."""

    exit_code = 2


class ConfigError(CrawlerError):
    """A setting, flag or config file a person must fix (exit 2). ``setting`` names
    the CrawlConfig field at fault, when one is: the message starts with it, and
    the command line says the flag (or config key) the person typed instead."""

    exit_code = 2

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class NothingToDo(CrawlerError):
    """--resume on a crawl that is already finished: said, and exit 0."""

    exit_code = 0


class OutputLocked(CrawlerError):
    """Another live run holds the output directory's lock (exit 3)."""

    exit_code = 3


class FrontierUnavailable(CrawlerError):
    """The shared frontier (Redis) stopped answering for too long (exit 5)."""

    exit_code = 5


class OutputFailed(CrawlerError):
    """The crawl's output folder or state could not be written (a full disk, an I/O
    error) mid-crawl: the crawl stopped, what was committed is kept, and --resume
    completes it once the cause is fixed (exit 6)."""

    exit_code = 6
