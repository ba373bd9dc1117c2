"""``python -m polyvae.cli``: the ``polyvae`` command."""

import sys

from polyvae.cli import main

if __name__ == "__main__":
    sys.exit(main())
