"""`shopibundle migrate`: migration jobs (start, status, watch, cancel, pause, resume, retry-failed).

The same job engine as /admin/migrations/jobs: a command plans or changes a job in the database and a
worker (a replica's, or `shopibundle worker`) runs it; `watch` polls the job's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from app.cli.commands.common import Subparsers, fail, open_pool
from app.cli.render import print_job, print_json, progress_line
from app.core.config import get_settings
from app.core.errors import DomainError
from app.schemas.jobs import CreateJobIn
from app.services.migration import jobs as migration_jobs


def add_migrate(sub: Subparsers) -> None:
    p = sub.add_parser("migrate", help="migration jobs: start, status, watch, cancel, pause, resume, retry-failed")
    msub = p.add_subparsers(dest="migrate_command", required=True)

    start = msub.add_parser("start", help="plan and start a job (a worker runs it)")
    start.add_argument("--kind", required=True, choices=["bundles", "ai_bundles", "auto_bundle_rules", "all"])
    start.add_argument("--shop", action="append", dest="shops", help="restrict to this shop (repeatable)")
    start.add_argument("--dry-run", action="store_true", help="count and report; write no V2 rows")
    start.add_argument("--batch-size", type=int, default=100)
    start.add_argument("--fill-products", action="store_true", help="also cache product facts on components")
    start.add_argument("--queue", default="default", help="worker queue (advanced; default: default)")
    start.add_argument("--watch", action="store_true", help="then show live progress until it finishes")
    start.add_argument("--json", action="store_true", help="print the job as JSON")
    start.set_defaults(func=_migrate_start)

    status = msub.add_parser("status", help="one job, or the most recent jobs")
    status.add_argument("job_id", nargs="?")
    status.add_argument("--limit", type=int, default=20)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_migrate_status)

    watch = msub.add_parser("watch", help="live progress bar with rate and ETA until the job finishes")
    watch.add_argument("job_id")
    watch.add_argument("--interval", type=float, default=1.0)
    watch.set_defaults(func=_migrate_watch)

    for name, helptext in (
        ("cancel", "cancel (cancelled once in-flight batches end)"),
        ("pause", "pause (workers stop claiming batches)"),
        ("resume", "resume a paused job"),
        ("retry-failed", "start a new job over a finished job's failed items"),
    ):
        action = msub.add_parser(name, help=helptext)
        action.add_argument("job_id")
        action.add_argument("--json", action="store_true")
        action.set_defaults(func=_migrate_action, action=name)


async def _migrate_start(args: argparse.Namespace) -> int:

    try:
        body = CreateJobIn(
            kind=args.kind,
            shops=args.shops,
            dryRun=args.dry_run,
            batchSize=args.batch_size,
            fillProducts=args.fill_products,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    async with open_pool(get_settings()) as pool:
        try:
            job = await migration_jobs.create_job(
                pool,
                kind=body.kind,
                shops=body.shops,
                dry_run=body.dryRun,
                batch_size=body.batchSize,
                fill_products=body.fillProducts,
                queue=args.queue,
            )
        except DomainError as exc:
            return fail(exc, args.json)
        if args.json:
            print_json(job)
        else:
            print(f"started job {job.id} ({job.kind}, {job.stats.total} items, status {job.status})")
        if args.watch:
            return await _watch(pool, job.id, 1.0)
    return 0


async def _migrate_status(args: argparse.Namespace) -> int:
    async with open_pool(get_settings()) as pool:
        try:
            if args.job_id:
                job = await migration_jobs.get_job(pool, args.job_id)
                if args.json:
                    print_json(job)
                else:
                    print_job(job)
                return 0
            page = await migration_jobs.list_jobs(pool, limit=args.limit)
        except DomainError as exc:
            return fail(exc, args.json)
    if args.json:
        print_json(page)
        return 0
    if not page.items:
        print("no migration jobs")
    for job in page.items:
        created = job.createdAt.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{job.id}  {created}  {job.kind:<17} {job.status:<10} {'dry-run ' if job.dryRun else ''}"
            f"{job.stats.processed}/{job.stats.total} migrated={job.stats.migrated} failed={job.stats.failed} "
            f"skipped={job.stats.skipped}"
        )
    return 0


async def _watch(pool: asyncpg.Pool[Any], job_id: str, interval: float) -> int:
    """Redraw one progress line each interval (a new line each time when not on a terminal)."""

    tty = sys.stdout.isatty()
    last = ""
    while True:
        job = await migration_jobs.get_job(pool, job_id)
        line = progress_line(job)
        if tty:
            sys.stdout.write("\r\x1b[2K" + line)
            sys.stdout.flush()
        elif line != last:
            print(line, flush=True)
        last = line
        if job.status in migration_jobs.TERMINAL:
            if tty:
                sys.stdout.write("\n")
            if job.stats.failed:
                print(f"{job.stats.failed} failed items: shopibundle migrate status {job.id} / GET {job.failuresUrl}")
            return 0 if job.status == "succeeded" else 1
        await asyncio.sleep(interval)


async def _migrate_watch(args: argparse.Namespace) -> int:
    async with open_pool(get_settings()) as pool:
        try:
            return await _watch(pool, args.job_id, args.interval)
        except DomainError as exc:
            return fail(exc, False)


async def _migrate_action(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_pool(settings) as pool:
        try:
            if args.action == "cancel":
                job = await migration_jobs.cancel_job(pool, args.job_id, lease_s=settings.job_lease_s)
            elif args.action == "pause":
                job = await migration_jobs.pause_job(pool, args.job_id)
            elif args.action == "resume":
                job = await migration_jobs.resume_job(pool, args.job_id)
            else:
                job = await migration_jobs.retry_failed(pool, args.job_id)
        except DomainError as exc:
            return fail(exc, args.json)
    if args.json:
        print_json(job)
    else:
        print_job(job)
    return 0
