"""`shopibundle`, the operator's command line: commands in `commands`, what they print in `render`."""

from app.cli.commands import main

__all__ = ["main"]
