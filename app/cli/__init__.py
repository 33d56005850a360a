"""`shopibundle`, the operator's command line: commands in `commands`, what they print in `render`."""

from app.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
