"""`shopibundle`: the operator's command line (console script `shopibundle`, or `python -m app.cli`).

It talks to the database directly through the services (no HTTP, no admin token), so it works
from any host that can reach PostgreSQL, with the same environment variables as the service.
The commands are in `app.cli.commands` (one module per group), what they print in `render`.

Adding a subcommand is one function and one line: write `add_<name>(sub)` in its group's module,
creating its parser with `sub.add_parser(...)` and `set_defaults(func=<handler>)`, and list it in
`COMMANDS` below. A handler takes the parsed `argparse.Namespace` and returns an exit code; it may
be `async` (it then runs in `asyncio.run`).

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

from app.cli.commands import cleanup, db, demo, migrate, rollback, rollout, serve, stage, validate, write_through
from app.cli.commands.common import Registrar, run_handler

#: Every top-level subcommand, in help order: listed here, not registered on import, so that the
#: order `shopibundle --help` shows does not depend on the order the modules are imported in.
COMMANDS: tuple[Registrar, ...] = (
    serve.add_serve,
    serve.add_worker,
    db.add_db,
    migrate.add_migrate,
    write_through.add_reconcile,
    write_through.add_outbox,
    validate.add_validate,
    stage.add_stage,
    rollback.add_rollback,
    rollout.add_rollout,
    cleanup.add_cleanup,
    demo.add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopibundle", description="ShopiBundle V2 service, worker and migration jobs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The console script: parse, run the command's handler, exit with its code (130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        return run_handler(args.func, args)
    except KeyboardInterrupt:
        return 130
