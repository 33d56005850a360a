"""`shopibundle reconcile` and `shopibundle outbox`: the write-through to Shopify (docs/write-through.md).

`reconcile` repairs drift between V2 manual bundles and their Shopify objects; `outbox` shows the
queue of pending pushes or runs its dispatcher alone. Both print JSON, for scripts.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.commands.common import Subparsers, fail, run_alone, worker_container
from app.cli.render import print_json
from app.core.config import get_settings
from app.core.errors import DomainError
from app.core.logging import configure_logging
from app.services.flags.snapshot import start_flags, stop_flags
from app.services.shopify_sync import reconciliation
from app.services.shopify_sync.outbox import OutboxDispatcher, outbox_stats


def add_reconcile(sub: Subparsers) -> None:
    p = sub.add_parser("reconcile", help="compare V2 manual bundles with their Shopify objects and repair drift")
    p.add_argument("--shop", action="append", dest="shops", help="only this shop (repeatable; default: all)")
    p.add_argument("--dry-run", action="store_true", help="report the changes without making them")
    p.set_defaults(func=_reconcile)


async def _reconcile(args: argparse.Namespace) -> int:
    settings = get_settings()
    configure_logging(settings)
    container = await worker_container(settings)
    try:
        container.flags = await start_flags(container)  # the rule depends on V2_BUNDLE_ENGINE per shop
        try:
            report = await reconciliation.reconcile(container, shops=args.shops, dry_run=args.dry_run)
        finally:
            await stop_flags(container)
    except DomainError as exc:
        return fail(exc, True)
    finally:
        await container.close()
    print_json(report)
    return 1 if report["errors"] else 0


def add_outbox(sub: Subparsers) -> None:
    p = sub.add_parser("outbox", help="write-through outbox: stats, or run a dispatcher alone")
    osub = p.add_subparsers(dest="outbox_command", required=True)
    stats = osub.add_parser("stats", help="pending rows, lag, dead letters (JSON)")
    stats.add_argument("--shop", default=None)
    stats.set_defaults(func=_outbox_stats)
    run = osub.add_parser("run", help="run only the outbox dispatcher until SIGTERM")
    run.add_argument("--concurrency", type=int, default=None)
    run.set_defaults(func=_outbox_run)


async def _outbox_stats(args: argparse.Namespace) -> int:
    container = await worker_container(get_settings())
    try:
        print_json(await outbox_stats(container, shop=args.shop))
    finally:
        await container.close()
    return 0


async def _outbox_run(args: argparse.Namespace) -> int:
    """A dispatcher alone, until SIGTERM or SIGINT. No legacy-read cache lives in this process, so
    there is none to invalidate after a delivery."""
    overrides: dict[str, Any] = {"on_delivered": None}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    return await run_alone(lambda container: OutboxDispatcher.for_container(container, **overrides))
