"""`shopibundle validate`: the migration validation report, as GET /admin/migrations/validation.

Exit 1 when the report is not ok, so a script can gate the next stage on it.
"""

from __future__ import annotations

import argparse
import sys

import asyncpg

from app.cli.commands.common import Subparsers, fail, open_pool
from app.cli.render import print_json, render_validation
from app.core.config import get_settings
from app.core.errors import DomainError
from app.core.security import is_valid_shop
from app.services.migration.validation import build_validation_report


def add_validate(sub: Subparsers) -> None:
    p = sub.add_parser("validate", help="the migration validation report (exit 1 when not ok)")
    p.add_argument("--shop", help="one shop (default: all shops)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=_validate)


async def _validate(args: argparse.Namespace) -> int:
    if args.shop is not None and not is_valid_shop(args.shop):
        print(f"error: invalid shop domain {args.shop!r}", file=sys.stderr)
        return 2
    async with open_pool(get_settings()) as pool:
        try:
            report = await build_validation_report(pool, args.shop)
        except DomainError as exc:
            return fail(exc, args.json)
        except asyncpg.UndefinedTableError as exc:  # V2 or service tables absent
            print(f"error: the schema is not at head ({exc}): run `shopibundle db upgrade`", file=sys.stderr)
            return 1
    if args.json:
        print_json(report)
    else:
        print("\n".join(render_validation(report)))
    return 0 if report["ok"] else 1
