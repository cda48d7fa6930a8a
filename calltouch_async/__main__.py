"""``python -m calltouch_async``: the ``calltouch-async`` command line (see ``cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
