"""``python -m crawler``: the same as the ``crawler`` console script."""

import sys

# Guarded: the multiprocessing front's spawned children import this module again,
# and need none of the command line.
if __name__ == "__main__":
    from crawler.cli import main

    sys.exit(main())
