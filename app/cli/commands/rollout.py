"""`shopibundle rollout`: guarded per-shop rollouts, as /admin/rollouts (start, status, watch, pause,
resume, abort).

A rollout moves shops through the stages wave by wave, each advancing only on its own evidence;
the replicas' rollout driver does the moving, these commands create, show and steer it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError

from app.cli.commands.common import Subparsers, actor, fail, worker_container
from app.cli.render import print_json, render_rollout
from app.core.config import get_settings
from app.core.errors import DomainError
from app.rules.stages import STAGES
from app.schemas.rollouts import CreateRolloutIn
from app.services.flags.snapshot import start_flags, stop_flags
from app.services.rollouts import operations as rollouts_service


def add_rollout(sub: Subparsers) -> None:
    p = sub.add_parser(
        "rollout", help="guarded per-shop rollouts: start, status, watch, pause, resume, abort (as /admin/rollouts)"
    )
    rsub = p.add_subparsers(dest="rollout_command", required=True)

    start = rsub.add_parser("start", help="move shops through the stages, each advancing only on its evidence")
    start.add_argument("--target", required=True, choices=[s for s in STAGES if s != "off"], help="target stage")
    who = start.add_mutually_exclusive_group(required=True)
    who.add_argument("--shop", action="append", dest="shops", help="a shop, in wave order (repeatable)")
    who.add_argument("--percent", type=int, help="the shops whose stable V2_BUNDLE_ENGINE bucket is below this")
    start.add_argument("--wave-size", type=int, default=None, help="shops moving at once (default 10)")
    start.add_argument(
        "--guard", action="append", default=[], metavar="NAME=VALUE", help="a guard threshold, e.g. minComparisons=200"
    )
    start.add_argument("--dry-run", action="store_true", help="say what would happen; write nothing")
    start.add_argument("--reason", required=True, help="why (kept in the flag audit log)")
    start.add_argument("--actor", help="audit name (default cli:<user>)")
    start.add_argument("--watch", action="store_true", help="then show the live view until it finishes")
    start.add_argument("--interval", type=float, default=1.0)
    start.add_argument("--json", action="store_true")
    start.set_defaults(func=_rollout_start)

    status = rsub.add_parser("status", help="one rollout with its shops and guards, or the latest rollouts")
    status.add_argument("rollout_id", nargs="?")
    status.add_argument("--limit", type=int, default=10)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_rollout_status)

    watch = rsub.add_parser("watch", help="live view of one rollout until it is completed or aborted")
    watch.add_argument("rollout_id")
    watch.add_argument("--interval", type=float, default=1.0)
    watch.set_defaults(func=_rollout_watch)

    for name, helptext in (
        ("pause", "stop advances (step-backs stay armed)"),
        ("resume", "advance again (rolled-back shops observe from now)"),
        ("abort", "stop for good; every shop keeps its stage"),
    ):
        action = rsub.add_parser(name, help=helptext)
        action.add_argument("rollout_id")
        action.add_argument("--actor", help="audit name (default cli:<user>)")
        action.add_argument("--json", action="store_true")
        action.set_defaults(func=_rollout_action, action=name)


def _guard_values(pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs as JSON numbers (ints stay ints: the schema is strict about types)."""
    guards: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--guard {pair!r}: expected NAME=VALUE")
        try:
            guards[name] = int(raw)
        except ValueError:
            try:
                guards[name] = float(raw)
            except ValueError:
                raise ValueError(f"--guard {pair!r}: VALUE must be a number") from None
    return guards


@asynccontextmanager
async def _rollout_container() -> AsyncIterator[Any]:
    """The service's container with a started flag store (rollouts write per-shop flags through it)."""
    container = await worker_container(get_settings())
    try:
        container.flags = await start_flags(container)
        try:
            yield container
        finally:
            await stop_flags(container)
    finally:
        await container.close()


async def _rollout_start(args: argparse.Namespace) -> int:
    try:
        body = CreateRolloutIn.model_validate(
            {
                "targetStage": args.target,
                "shops": args.shops,
                "percent": args.percent,
                "waveSize": args.wave_size,
                "guards": _guard_values(args.guard) or None,
                "dryRun": args.dry_run,
                "reason": args.reason,
            }
        )
    except (ValueError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    async with _rollout_container() as container:
        try:
            result = await rollouts_service.create_rollout(
                container,
                container.flags,
                body,
                actor=actor(args),
            )
        except DomainError as exc:
            return fail(exc, args.json)
        if args.json:
            print_json(result)
        elif result.get("dryRun"):
            print_json(result)
        else:
            print(f"rollout {result['id']} {result['status']}: shopibundle rollout watch {result['id']}")
        if args.watch and not result.get("dryRun"):
            return await _watch_rollout(container, str(result["id"]), args.interval)
    return 0


async def _rollout_status(args: argparse.Namespace) -> int:
    async with _rollout_container() as container:
        try:
            if args.rollout_id:
                rollouts = [await rollouts_service.get_rollout(container, args.rollout_id)]
            else:
                page = await rollouts_service.list_rollouts(container, limit=max(1, args.limit), cursor=None)
                rollouts = page["items"]
        except DomainError as exc:
            return fail(exc, args.json)
    if args.json:
        print_json(rollouts[0] if args.rollout_id else rollouts)
        return 0
    if not rollouts:
        print("no rollout yet")
    for rollout in rollouts:
        print("\n".join(render_rollout(rollout)))
    return 0


ROLLOUT_FINISHED = ("completed", "aborted")


async def _watch_rollout(container: Any, rollout_id: str, interval: float) -> int:
    """Redraw the rollout each interval (the whole view on a terminal; only changes otherwise);
    exit 0 when completed, 1 when aborted."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        rollout = await rollouts_service.get_rollout(container, rollout_id)
        view = "\n".join(render_rollout(rollout))
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J" + view + "\n")
            sys.stdout.flush()
        elif view != last:
            print(view, flush=True)
        last = view
        if rollout["status"] in ROLLOUT_FINISHED:
            return 0 if rollout["status"] == "completed" else 1
        await asyncio.sleep(interval)


async def _rollout_watch(args: argparse.Namespace) -> int:
    async with _rollout_container() as container:
        try:
            return await _watch_rollout(container, args.rollout_id, args.interval)
        except DomainError as exc:
            return fail(exc, False)


async def _rollout_action(args: argparse.Namespace) -> int:
    actions = {
        "pause": rollouts_service.pause_rollout,
        "resume": rollouts_service.resume_rollout,
        "abort": rollouts_service.abort_rollout,
    }
    async with _rollout_container() as container:
        try:
            rollout = await actions[args.action](container, args.rollout_id, actor=actor(args))
        except DomainError as exc:
            return fail(exc, args.json)
    if args.json:
        print_json(rollout)
    else:
        print("\n".join(render_rollout(rollout)))
    return 0
