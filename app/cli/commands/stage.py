"""`shopibundle stage`: the migration stage every shop is at, and moving all of them to another one
(the flag writes of `app.services.cutover.stage`, audited like the admin API's)."""

from __future__ import annotations

import argparse

from app.cli.commands.common import Subparsers, actor, fail, open_pool
from app.cli.render import print_json, print_rollout, render_flags
from app.core.config import get_settings
from app.core.errors import DomainError
from app.rules.stages import STAGES
from app.services.cutover.stage import rollout_status, set_stage


def add_stage(sub: Subparsers) -> None:

    p = sub.add_parser("stage", help="migration stage: get (default) | set STAGE --reason R")
    ssub = p.add_subparsers(dest="stage_command")
    get = ssub.add_parser("get", help="stage, flags and where the legacy tables are")
    get.add_argument("--json", action="store_true")
    get.set_defaults(func=_stage_get)
    put = ssub.add_parser("set", help="move every flag to a stage (audited; every replica within 1 s)")
    put.add_argument("stage", choices=STAGES)
    put.add_argument("--reason", required=True, help="why (kept in the flag audit log)")
    put.add_argument("--sample-rate", type=float, default=None, help="SHADOW_READS rate for shadow/live")
    put.add_argument("--actor", help="audit name (default cli:<user>)")
    put.add_argument("--json", action="store_true")
    put.set_defaults(func=_stage_set)
    p.set_defaults(func=_stage_get, json=False)


async def _stage_get(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_pool(settings) as pool:
        try:
            status = await rollout_status(pool, settings=settings)
        except DomainError as exc:
            return fail(exc, args.json)
    if args.json:
        print_json(status)
        return 0
    print("\n".join(render_flags(status)))
    print("legacy tables: " + ", ".join(f"{t} in {where}" for t, where in status["legacyTables"].items()))
    return 0


async def _stage_set(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_pool(settings) as pool:
        try:
            result = await set_stage(
                pool,
                args.stage,
                actor=actor(args),
                reason=args.reason,
                sample_rate=args.sample_rate,
                settings=settings,
            )
        except DomainError as exc:
            return fail(exc, args.json)
    changed = ", ".join(result["changedFlags"]) or "nothing"
    print_rollout(result, args.json, f"stage set to {args.stage}; changed: {changed}")
    return 0
