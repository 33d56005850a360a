"""`shopibundle`: the operator's command line (console script `shopibundle`, or `python -m app.cli`).

It talks to the database directly through the services (no HTTP, no admin token), so it works
from any host that can reach PostgreSQL, with the same environment variables as the service.

Adding a subcommand is one function and one registration: write `add_<name>(sub)` that creates
its parser with `sub.add_parser(...)` and `set_defaults(func=<handler>)`, and decorate it with
`@register`. A handler takes the parsed `argparse.Namespace` and returns an exit code; it may be
`async` (it then runs in `asyncio.run`).

    shopibundle serve [--host H] [--port P]
    shopibundle worker [--queue Q] [--concurrency N]
    shopibundle db upgrade [REV] | downgrade REV | current
    shopibundle migrate start --kind K [--shop S ...] [--dry-run] [--batch-size N] [--watch]
    shopibundle migrate status [JOB] | watch JOB | cancel JOB | pause JOB | resume JOB | retry-failed JOB
    shopibundle reconcile [--shop S ...] [--dry-run]
    shopibundle outbox stats [--shop S] | run [--concurrency N]
    shopibundle validate [--shop S] [--json]
    shopibundle stage [get | set STAGE --reason R]
    shopibundle rollout start --target STAGE (--shop S ... | --percent N) --reason R [--guard NAME=VALUE ...] [--watch]
    shopibundle rollout status [ID] | watch ID | pause ID | resume ID | abort ID
    shopibundle rollback immediate --reason R [--yes] | full --yes
    shopibundle cleanup --reason R [--force] | cleanup restore --reason R
    shopibundle demo seed [--simulator URL]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import inspect
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import uvicorn
from pydantic import ValidationError

from app.cli.render import (
    print_job,
    print_json,
    print_rollout,
    progress_line,
    render_flags,
    render_rollout,
    render_v2_only,
    render_validation,
)
from app.core.config import Settings, get_settings
from app.core.container import build_container
from app.core.db import asyncpg_connect_kwargs, connect, create_pool, resolve_database_url, resolve_direct_url
from app.core.errors import DomainError
from app.core.logging import configure_logging
from app.core.migrations import current_revision, downgrade, head_revision, upgrade
from app.core.security import is_valid_shop
from app.rules.stages import STAGES
from app.schemas.jobs import CreateJobIn
from app.schemas.rollouts import CreateRolloutIn
from app.services.cutover.cleanup import phase5_cleanup, restore_from_archive
from app.services.cutover.rollback import ConfirmationRequired, V2OnlyData, full_rollback, immediate_rollback
from app.services.cutover.stage import rollout_status, set_stage
from app.services.flags.snapshot import start_flags, stop_flags
from app.services.migration import jobs as migration_jobs
from app.services.migration.validation import build_validation_report
from app.services.migration.worker import JobWorker
from app.services.rollouts import operations as rollouts_service
from app.services.shopify_sync import reconciliation
from app.services.shopify_sync.outbox import outbox_stats, run_standalone

Subparsers = Any  # argparse._SubParsersAction, private in typeshed
Handler = Callable[[argparse.Namespace], "int | Awaitable[int]"]
Registrar = Callable[[Subparsers], None]

#: Every top-level subcommand, in help order. `@register` appends.
COMMANDS: list[Registrar] = []


def register(fn: Registrar) -> Registrar:
    """Make `fn(sub)` add its subcommand to the parser `main` builds."""
    COMMANDS.append(fn)
    return fn


# ----------------------------------------------------------------------------------- helpers


def _settings() -> Settings:
    return get_settings()


def _configure_logging(settings: Settings) -> None:

    configure_logging(settings)


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A small asyncpg pool on the primary's direct URL (DATABASE_DIRECT_URL, else DATABASE_URL, or the
    embedded development database): a short-lived command needs no transaction pooler."""

    url = await asyncio.to_thread(resolve_database_url, settings)
    pool = await create_pool(resolve_direct_url(settings, url), max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


# ----------------------------------------------------------------------------------- serve


@register
def add_serve(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (uvicorn app.main:app)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:

    _configure_logging(_settings())
    uvicorn.run("app.main:app", host=args.host, port=args.port, workers=args.workers, access_log=False, log_config=None)
    return 0


# ----------------------------------------------------------------------------------- worker


@register
def add_worker(sub: Subparsers) -> None:
    p = sub.add_parser(
        "worker",
        help="run only the migration job worker (optional: service replicas run one by default)",
    )
    p.add_argument("--queue", default="default", help="job queue to consume (default: default)")
    p.add_argument("--concurrency", type=int, default=None, help="shops in parallel (default WORKER_CONCURRENCY)")
    p.set_defaults(func=_worker)


async def _worker_container(settings: Settings) -> Any:
    """The service's container without its HTTP side: it serves no requests, so it needs none of
    the inbound credentials."""

    return await build_container(settings, serves_requests=False)


async def _worker(args: argparse.Namespace) -> int:

    settings = _settings()
    _configure_logging(settings)
    container = await _worker_container(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    overrides: dict[str, Any] = {"queue": args.queue}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    worker = await JobWorker.for_container(container, **overrides)
    try:
        await worker.run_until(stop)
    finally:
        await container.close()
    return 0


# ----------------------------------------------------------------------------------- db


@register
def add_db(sub: Subparsers) -> None:
    p = sub.add_parser("db", help="schema migrations (Alembic)")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="upgrade to a revision (default head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)
    down = dbsub.add_parser("downgrade", help="downgrade to a revision (e.g. -1 or 0003_service_tables)")
    down.add_argument("revision")
    down.set_defaults(func=_db_downgrade)
    cur = dbsub.add_parser("current", help="print the database's revision and the code's head")
    cur.set_defaults(func=_db_current)


def _db_url() -> str:
    """Schema migrations and the demo seed: the primary's direct URL (session state, no pooler)."""
    settings = _settings()
    return resolve_direct_url(settings, resolve_database_url(settings))


def _db_upgrade(args: argparse.Namespace) -> int:

    upgrade(_db_url(), args.revision)
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:

    downgrade(_db_url(), args.revision)
    return 0


async def _db_current(args: argparse.Namespace) -> int:

    url = await asyncio.to_thread(_db_url)
    kwargs: dict[str, Any] = asyncpg_connect_kwargs(url)
    conn = await asyncpg.connect(**kwargs)
    try:
        current = await current_revision(conn)
    finally:
        await conn.close()
    head = head_revision()
    print(f"current: {current or '(none)'}\nhead:    {head}")
    return 0 if current == head else 1


# ----------------------------------------------------------------------------------- migrate


@register
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


def _fail(exc: DomainError, as_json: bool) -> int:
    if as_json:
        print_json({"status": exc.status, "title": exc.title, "detail": exc.detail, **exc.extra}, sys.stderr)
    else:
        print(f"error ({exc.status} {exc.title}): {exc.detail}", file=sys.stderr)
    return 1


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
    async with _pool(_settings()) as pool:
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
            return _fail(exc, args.json)
        if args.json:
            print_json(job)
        else:
            print(f"started job {job.id} ({job.kind}, {job.stats.total} items, status {job.status})")
        if args.watch:
            return await _watch(pool, job.id, 1.0)
    return 0


async def _migrate_status(args: argparse.Namespace) -> int:

    async with _pool(_settings()) as pool:
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
            return _fail(exc, args.json)
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
    async with _pool(_settings()) as pool:
        try:
            return await _watch(pool, args.job_id, args.interval)
        except DomainError as exc:
            return _fail(exc, False)


async def _migrate_action(args: argparse.Namespace) -> int:

    settings = _settings()
    async with _pool(settings) as pool:
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
            return _fail(exc, args.json)
    if args.json:
        print_json(job)
    else:
        print_job(job)
    return 0


# ----------------------------------------------------------------------------------------- write-through


@register
def add_reconcile(sub: Subparsers) -> None:
    p = sub.add_parser("reconcile", help="compare V2 manual bundles with their Shopify objects and repair drift")
    p.add_argument("--shop", action="append", dest="shops", help="only this shop (repeatable; default: all)")
    p.add_argument("--dry-run", action="store_true", help="report the changes without making them")
    p.set_defaults(func=_reconcile)


async def _reconcile(args: argparse.Namespace) -> int:

    settings = _settings()
    _configure_logging(settings)
    container = await _worker_container(settings)
    try:
        container.flags = await start_flags(container)  # the rule depends on V2_BUNDLE_ENGINE per shop
        try:
            report = await reconciliation.reconcile(container, shops=args.shops, dry_run=args.dry_run)
        finally:
            await stop_flags(container)
    except DomainError as exc:
        return _fail(exc, True)
    finally:
        await container.close()
    print_json(report)
    return 1 if report["errors"] else 0


@register
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

    container = await _worker_container(_settings())
    try:
        print_json(await outbox_stats(container, shop=args.shop))
    finally:
        await container.close()
    return 0


async def _outbox_run(args: argparse.Namespace) -> int:

    return await run_standalone(args.concurrency)


# ----------------------------------------------------------------------------------- validate, stage, rollback, cleanup


def _actor(args: argparse.Namespace) -> str:
    """Who the flag audit log names: --actor, else `cli:<login user>`."""
    if getattr(args, "actor", None):
        return str(args.actor)

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


@register
def add_validate(sub: Subparsers) -> None:
    p = sub.add_parser("validate", help="the migration validation report (exit 1 when not ok)")
    p.add_argument("--shop", help="one shop (default: all shops)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=_validate)


async def _validate(args: argparse.Namespace) -> int:

    if args.shop is not None and not is_valid_shop(args.shop):
        print(f"error: invalid shop domain {args.shop!r}", file=sys.stderr)
        return 2
    async with _pool(_settings()) as pool:
        try:
            report = await build_validation_report(pool, args.shop)
        except DomainError as exc:
            return _fail(exc, args.json)
        except asyncpg.UndefinedTableError as exc:  # V2 or service tables absent
            print(f"error: the schema is not at head ({exc}): run `shopibundle db upgrade`", file=sys.stderr)
            return 1
    if args.json:
        print_json(report)
    else:
        print("\n".join(render_validation(report)))
    return 0 if report["ok"] else 1


@register
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

    settings = _settings()
    async with _pool(settings) as pool:
        try:
            status = await rollout_status(pool, settings=settings)
        except DomainError as exc:
            return _fail(exc, args.json)
    if args.json:
        print_json(status)
        return 0
    print("\n".join(render_flags(status)))
    print("legacy tables: " + ", ".join(f"{t} in {where}" for t, where in status["legacyTables"].items()))
    return 0


async def _stage_set(args: argparse.Namespace) -> int:

    settings = _settings()
    async with _pool(settings) as pool:
        try:
            result = await set_stage(
                pool,
                args.stage,
                actor=_actor(args),
                reason=args.reason,
                sample_rate=args.sample_rate,
                settings=settings,
            )
        except DomainError as exc:
            return _fail(exc, args.json)
    changed = ", ".join(result["changedFlags"]) or "nothing"
    print_rollout(result, args.json, f"stage set to {args.stage}; changed: {changed}")
    return 0


@register
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

    settings = _settings()
    async with _pool(settings) as pool:
        try:
            result = await immediate_rollback(
                pool, actor=_actor(args), reason=args.reason, settings=settings, confirm=args.yes
            )
        except V2OnlyData as exc:
            return _refuse_v2_only(exc, args.json, "add --yes to roll back anyway")
        except DomainError as exc:
            return _fail(exc, args.json)
    changed = ", ".join(result["changedFlags"]) or "nothing (already rolled back)"
    print_rollout(result, args.json, f"immediate rollback done; changed: {changed}; {result['propagation']}")
    return 0


async def _rollback_full(args: argparse.Namespace) -> int:

    url = await asyncio.to_thread(_db_url)
    try:
        result = await full_rollback(url, confirmed=args.yes, actor=_actor(args), reason=args.reason)
    except ConfirmationRequired as exc:
        return _refuse_v2_only(exc, args.json, "")
    except DomainError as exc:
        return _fail(exc, args.json)
    if args.json:
        print_json(result)
        return 0
    print(f"full rollback done: revision {result['fromRevision']} -> {result['toRevision']}")
    for backup in result["backups"]:
        print(f"  backup {backup['table']}: {backup['rows']} rows")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0


@register
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
    container = await _worker_container(_settings())
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
                actor=_actor(args),
                target_stage=body.targetStage,
                reason=body.reason,
                shops=body.shops,
                percent=body.percent,
                wave_size=body.waveSize,
                guards=body.guards.model_dump(exclude_none=True) if body.guards else None,
                dry_run=body.dryRun,
            )
        except DomainError as exc:
            return _fail(exc, args.json)
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
            return _fail(exc, args.json)
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
            return _fail(exc, False)


async def _rollout_action(args: argparse.Namespace) -> int:
    actions = {
        "pause": rollouts_service.pause_rollout,
        "resume": rollouts_service.resume_rollout,
        "abort": rollouts_service.abort_rollout,
    }
    async with _rollout_container() as container:
        try:
            rollout = await actions[args.action](container, args.rollout_id, actor=_actor(args))
        except DomainError as exc:
            return _fail(exc, args.json)
    if args.json:
        print_json(rollout)
    else:
        print("\n".join(render_rollout(rollout)))
    return 0


@register
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
    settings = _settings()
    async with _pool(settings) as pool:
        try:
            result = await phase5_cleanup(
                pool, actor=_actor(args), reason=args.reason, force=args.force, settings=settings
            )
        except DomainError as exc:
            return _fail(exc, args.json)
    moved = ", ".join(f"{m['table']} ({m['rows']} rows)" for m in result["archivedTables"])
    print_rollout(result, args.json, f"phase 5 cleanup done: moved to schema archive: {moved}")
    return 0


async def _cleanup_restore(args: argparse.Namespace) -> int:

    settings = _settings()
    async with _pool(settings) as pool:
        try:
            result = await restore_from_archive(pool, actor=_actor(args), reason=args.reason, settings=settings)
        except DomainError as exc:
            return _fail(exc, args.json)
    moved = ", ".join(f"{m['table']} ({m['rows']} rows)" for m in result["restoredTables"])
    print_rollout(result, args.json, f"restored to schema public: {moved}; DUAL_WRITE on")
    return 0


@register
def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="demo data (development and staging only)")
    dsub = p.add_subparsers(dest="demo_command", required=True)
    seed = dsub.add_parser("seed", help="load the demo legacy data set into the database and the Shopify simulator")
    seed.add_argument(
        "--simulator", default="http://127.0.0.1:8081", help="simulator base URL (default http://127.0.0.1:8081)"
    )
    seed.set_defaults(func=_demo_seed)


async def _demo_seed(args: argparse.Namespace) -> int:
    # Development tools, absent from the image: imported only when the demo command runs.
    from devtools.demo_data import seed_demo
    from devtools.shopify_simulator import SimulatorControl

    url = await asyncio.to_thread(_db_url)
    conn = await connect(url)
    try:
        async with SimulatorControl(args.simulator) as sim:
            summary = await seed_demo(conn, sim)
    except (httpx.HTTPError, asyncpg.PostgresError) as exc:
        print(f"error: demo seed failed: {exc!r}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    print(
        f"demo data: {len(summary.shops)} shops, {summary.manual_rows} bundle_discount_id rows, "
        f"{summary.metaobjects} metaobjects, {summary.ai_bundles} AI bundles, {summary.auto_rules} auto rules"
    )
    return 0


# ----------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopibundle", description="ShopiBundle V2 service, worker and migration jobs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        result = handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except KeyboardInterrupt:
        return 130
    return int(result)


async def _await(awaitable: Awaitable[int]) -> int:
    return await awaitable
