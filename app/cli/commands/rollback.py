"""`shopibundle rollback`: immediate (flags only, no restart) or full (the V2 schema dropped after
backups), through `app.services.cutover.rollback`.

A refused rollback exits 2 and names what only V2 holds: the immediate one refuses while V2 holds
data the legacy tables cannot represent (unless --yes), the full one always without --yes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.cli.commands.common import Subparsers, actor, db_url, fail, open_pool
from app.cli.render import print_json, print_rollout, render_v2_only
from app.core.config import get_settings
from app.core.errors import DomainError
from app.services.cutover.rollback import ConfirmationRequired, V2OnlyData, full_rollback, immediate_rollback


def add_rollback(sub: Subparsers) -> None:
    p = sub.add_parser("rollback", help="immediate (flags, every replica within 1 s) | full (Alembic downgrade)")
    rsub = p.add_subparsers(dest="rollback_command", required=True)
    imm = rsub.add_parser("immediate", help="reads back to legacy, V2 features off, dual write on (no restart)")
    imm.add_argument("--reason", required=True, help="why (kept in the flag audit log)")
    imm.add_argument("--actor", help="audit name (default cli:<user>)")
    imm.add_argument(
        "--yes", action="store_true", help="proceed although V2 holds data the legacy tables cannot represent"
    )
    imm.add_argument("--json", action="store_true")
    imm.set_defaults(func=_rollback_immediate)
    full = rsub.add_parser(
        "full", help="drop the V2 schema: backups of every V2 and service table holding rows, then down to 0001"
    )
    full.add_argument("--yes", action="store_true", help="confirm; without it nothing happens")
    full.add_argument("--reason", default="shopibundle rollback full", help="why (flag audit log, logs)")
    full.add_argument("--actor", help="audit name (default cli:<user>)")
    full.add_argument("--json", action="store_true")
    full.set_defaults(func=_rollback_full)


def _refuse_v2_only(exc: DomainError, as_json: bool, hint: str) -> int:
    """A rollback refused for want of confirmation: the reason and what only V2 holds; exit 2."""
    if as_json:
        print_json({"status": exc.status, "title": exc.title, "detail": exc.detail, **exc.extra}, sys.stderr)
        return 2
    print(f"refusing: {exc.detail}", file=sys.stderr)
    for line in render_v2_only(exc.extra.get("v2Only") or {}):
        print(line, file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    return 2


async def _rollback_immediate(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_pool(settings) as pool:
        try:
            result = await immediate_rollback(
                pool, actor=actor(args), reason=args.reason, settings=settings, confirm=args.yes
            )
        except V2OnlyData as exc:
            return _refuse_v2_only(exc, args.json, "add --yes to roll back anyway")
        except DomainError as exc:
            return fail(exc, args.json)
    changed = ", ".join(result["changedFlags"]) or "nothing (already rolled back)"
    print_rollout(result, args.json, f"immediate rollback done; changed: {changed}; {result['propagation']}")
    return 0


async def _rollback_full(args: argparse.Namespace) -> int:
    url = await asyncio.to_thread(db_url)
    try:
        result = await full_rollback(url, confirmed=args.yes, actor=actor(args), reason=args.reason)
    except ConfirmationRequired as exc:
        return _refuse_v2_only(exc, args.json, "")
    except DomainError as exc:
        return fail(exc, args.json)
    if args.json:
        print_json(result)
        return 0
    print(f"full rollback done: revision {result['fromRevision']} -> {result['toRevision']}")
    for backup in result["backups"]:
        print(f"  backup {backup['table']}: {backup['rows']} rows")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0
