"""What every `shopibundle` command group shares: the handler and registrar types, the way a handler
runs, the database handles a short-lived command opens, and how a refusal or an actor is reported.

Kept apart from the groups so that each group's module holds its parsers and handlers only, and
the groups never import one another.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from app.cli.render import print_json
from app.core.config import Settings, get_settings
from app.core.container import build_container
from app.core.db import create_pool, resolve_database_url, resolve_direct_url
from app.core.errors import DomainError
from app.core.logging import configure_logging
from app.core.tasks import Stoppable, run_until_signalled

Subparsers = Any  # argparse._SubParsersAction, private in typeshed
#: A command's handler: the parsed arguments in, an exit code out; an `async` one runs in `asyncio.run`.
Handler = Callable[[argparse.Namespace], "int | Awaitable[int]"]
#: A group's `add_<name>(sub)`: adds its parser (and subparsers) with `set_defaults(func=<handler>)`.
Registrar = Callable[[Subparsers], None]


def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    """Run one handler to its exit code, in a fresh event loop when it is `async`."""
    result = handler(args)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return int(result)


async def _await(awaitable: Awaitable[int]) -> int:
    # `asyncio.run` takes a coroutine, not any awaitable.
    return await awaitable


@asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A small asyncpg pool on the primary's direct URL (DATABASE_DIRECT_URL, else DATABASE_URL, or the
    embedded development database): a short-lived command needs no transaction pooler."""

    url = await asyncio.to_thread(resolve_database_url, settings)
    pool = await create_pool(resolve_direct_url(settings, url), max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


def db_url() -> str:
    """Schema migrations, the full rollback and the demo seed: the primary's direct URL (session
    state, no pooler)."""
    settings = get_settings()
    return resolve_direct_url(settings, resolve_database_url(settings))


async def worker_container(settings: Settings) -> Any:
    """The service's container without its HTTP side: it serves no requests, so it needs none of
    the inbound credentials."""

    return await build_container(settings, serves_requests=False)


async def run_alone(start: Callable[[Any], Awaitable[Stoppable]]) -> int:
    """A background component as a process of its own (`shopibundle worker`, `outbox run`): the
    container without its HTTP side, the component `start` builds on it, run until SIGTERM or
    SIGINT and then stopped gracefully."""
    settings = get_settings()
    configure_logging(settings)
    container = await worker_container(settings)
    try:
        await run_until_signalled(await start(container))
    finally:
        await container.close()
    return 0


def fail(exc: DomainError, as_json: bool) -> int:
    """A domain error on stderr (as the API's problem+json with --json, else one line); exit 1."""
    if as_json:
        print_json({"status": exc.status, "title": exc.title, "detail": exc.detail, **exc.extra}, sys.stderr)
    else:
        print(f"error ({exc.status} {exc.title}): {exc.detail}", file=sys.stderr)
    return 1


def actor(args: argparse.Namespace) -> str:
    """Who the flag audit log names: --actor, else `cli:<login user>`."""
    if getattr(args, "actor", None):
        return str(args.actor)

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"
