"""`python -m app.cli ...`, the same as `shopibundle ...`."""

import sys

from app.cli.commands import main

sys.exit(main())
