"""``python -m crawler``: the same as the ``crawler`` console script."""

import sys

from crawler.cli import main

sys.exit(main())
