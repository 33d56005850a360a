"""`python -m app.cli ...`, the same as `shopibundle ...`."""

import sys

from app.cli import main

if __name__ == "__main__":  # importing the module (tests collect every module of `app`) runs nothing
    sys.exit(main())
