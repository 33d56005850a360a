"""`shopibundle cleanup`: Phase 5 (dual write off, the migrated legacy tables moved into schema
`archive`) and `cleanup restore`, its undo, through `app.services.cutover.cleanup`."""

from __future__ import annotations

import argparse
import sys

from app.cli.commands.common import Subparsers, actor, fail, open_pool
from app.cli.render import print_rollout
from app.core.config import get_settings
from app.core.errors import DomainError
from app.services.cutover.cleanup import phase5_cleanup, restore_from_archive


def add_cleanup(sub: Subparsers) -> None:
    p = sub.add_parser(
        "cleanup", help="Phase 5: dual write off, migrated legacy tables into schema `archive` | restore"
    )
    p.add_argument("--reason", help="why (kept in the flag audit log); required")
    p.add_argument("--force", action="store_true", help="even if validation is not ok or reads are not on V2 yet")
    p.add_argument("--actor", help="audit name (default cli:<user>)")
    p.add_argument("--json", action="store_true")
    csub = p.add_subparsers(dest="cleanup_command")
    restore = csub.add_parser("restore", help="move the archived tables back to public and turn dual write on")
    restore.add_argument("--reason", required=True, help="why (kept in the flag audit log)")
    restore.add_argument("--actor", help="audit name (default cli:<user>)")
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(func=_cleanup_restore)
    p.set_defaults(func=_cleanup)


async def _cleanup(args: argparse.Namespace) -> int:
    if not args.reason:
        print("error: cleanup needs --reason", file=sys.stderr)
        return 2
    settings = get_settings()
    async with open_pool(settings) as pool:
        try:
            result = await phase5_cleanup(
                pool, actor=actor(args), reason=args.reason, force=args.force, settings=settings
            )
        except DomainError as exc:
            return fail(exc, args.json)
    moved = ", ".join(f"{m['table']} ({m['rows']} rows)" for m in result["archivedTables"])
    print_rollout(result, args.json, f"phase 5 cleanup done: moved to schema archive: {moved}")
    return 0


async def _cleanup_restore(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_pool(settings) as pool:
        try:
            result = await restore_from_archive(pool, actor=actor(args), reason=args.reason, settings=settings)
        except DomainError as exc:
            return fail(exc, args.json)
    moved = ", ".join(f"{m['table']} ({m['rows']} rows)" for m in result["restoredTables"])
    print_rollout(result, args.json, f"restored to schema public: {moved}; DUAL_WRITE on")
    return 0
