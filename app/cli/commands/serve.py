"""`shopibundle serve` and `shopibundle worker`: the two long-running processes.

A replica (`serve`) also runs the job worker; `worker` runs only the worker, for a deployment that
wants job capacity apart from the HTTP replicas.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from app.cli.commands.common import Subparsers, run_alone
from app.core.config import get_settings
from app.core.logging import configure_logging
from app.services.migration.worker import JobWorker


def add_serve(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (uvicorn app.main:app)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    configure_logging(get_settings())
    uvicorn.run("app.main:app", host=args.host, port=args.port, workers=args.workers, access_log=False, log_config=None)
    return 0


def add_worker(sub: Subparsers) -> None:
    p = sub.add_parser(
        "worker",
        help="run only the migration job worker (optional: service replicas run one by default)",
    )
    p.add_argument("--queue", default="default", help="job queue to consume (default: default)")
    p.add_argument("--concurrency", type=int, default=None, help="shops in parallel (default WORKER_CONCURRENCY)")
    p.set_defaults(func=_worker)


async def _worker(args: argparse.Namespace) -> int:
    """Consume the queue until SIGTERM or SIGINT, then stop the worker gracefully."""
    overrides: dict[str, Any] = {"queue": args.queue}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    return await run_alone(lambda container: JobWorker.for_container(container, **overrides))
