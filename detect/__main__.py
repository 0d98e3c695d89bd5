"""`python -m detect ...`: the same command line as `detect ...` (cli.py's app)."""

from __future__ import annotations

import sys


def main() -> int:
    from cli import app  # cli.py sits above the package: the one upward reference, at the entry point

    return app()


if __name__ == "__main__":
    sys.exit(main())
