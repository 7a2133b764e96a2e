"""``python -m crawler``: the same as the ``crawler`` console script."""

import sys

from crawler.cli import main

# Guarded: the multiprocessing front's spawned workers import this module again.
if __name__ == "__main__":
    sys.exit(main())
