"""docs/runbook.md is executable: every `shopibundle ...` line of its fenced code blocks runs here,
in document order, against one throwaway database, with its exit code and its effect on the data
checked; and every `curl "$SB/..."` line names an endpoint the service has.

How and why:
* The commands run in-process through `app.cli.main([...])` (in a thread, since the CLI runs its
  own event loop), with `DATABASE_URL` pointing at a database created for this test and
  `SHOPIFY_ADMIN_URL_TEMPLATE` at the session's Shopify simulator. The runbook's day-by-day order
  is a real migration: empty database → `db upgrade` → demo data → dry run → migration → validation
  → stages → Phase 5 cleanup and restore → immediate rollback → full rollback → upgrade again.
* Destructive commands (`cleanup`, `rollback full`) therefore run on that fresh, separate database,
  never on the session database the other tests share.
* Long-running commands are only checked with `--help`: `serve` (an HTTP server until SIGTERM) and
  `worker` (consumes the job queue until SIGTERM). The jobs the runbook starts are run by a
  `JobWorker` this test runs in its own event loop, which is exactly what `shopibundle worker` runs.
* `<JOB_ID>` placeholders get the job the step is about: the main migration job for `status` and
  `retry-failed`, the newest job for `watch`, and for `pause`/`resume`/`cancel` a job this test
  creates while its worker is stopped (so the controls act on a job that is still queued).
* A command the test does not know fails the test: a new runbook line needs a check here.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from app.cli import main as cli_main
from app.core.config import get_settings
from app.core.db import create_pool
from app.core.migrations import head_revision
from app.rules.stages import stage_of
from app.services.cutover.guard import ARCHIVED_LEGACY_TABLES, legacy_table_locations
from app.services.cutover.rollback import BASELINE_REVISION
from app.services.migration import jobs as migration_jobs
from app.services.migration.worker import JobWorker
from devtools.demo_data import DEMO_SHOPS
from tests import pg
from tests.legacy_fixtures import shopify_client

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
#: Started for real elsewhere, checked with --help here (see the module docstring).
HELP_ONLY = {"serve", "worker"}


def fenced_lines(text: str) -> list[str]:
    """Non-empty, non-comment lines of every fenced code block (backslash continuations joined)."""
    lines: list[str] = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                lines.append(stripped)
    return lines


def shopibundle_commands(text: str) -> list[list[str]]:
    """argv (after `shopibundle`) of every command line of this service, in document order."""
    commands = []
    for line in fenced_lines(text):
        argv = shlex.split(line, comments=True)
        while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):  # leading VAR=value assignments
            argv.pop(0)
        if argv and argv[0].rsplit("/", 1)[-1] == "shopibundle":
            commands.append(argv[1:])
    return commands


def curl_requests(text: str) -> list[tuple[str, str]]:
    """(method, path) of every `curl ... "$SB/..."` line."""
    requests = []
    for line in fenced_lines(text):
        argv = shlex.split(line, comments=True)
        if not argv or argv[0] != "curl":
            continue
        method = argv[argv.index("-X") + 1] if "-X" in argv else ("POST" if "-d" in argv else "GET")
        urls = [a for a in argv if a.startswith("$SB/")]
        assert len(urls) == 1, f"one $SB URL per curl line: {line}"
        requests.append((method, urls[0][len("$SB") :].split("?", 1)[0]))
    return requests


def test_runbook_has_the_operations_of_every_phase() -> None:
    commands = [" ".join(argv[:2]) for argv in shopibundle_commands(RUNBOOK.read_text())]
    for expected in (
        "db upgrade",
        "demo seed",
        "migrate start",
        "validate",
        "stage set",
        "stage get",
        "cleanup --reason",
        "cleanup restore",
        "rollback immediate",
        "rollback full",
    ):
        assert any(c.startswith(expected) for c in commands), f"runbook lacks `shopibundle {expected}`"


def test_runbook_curl_lines_name_existing_endpoints() -> None:
    import importlib
    import pkgutil

    import app.api

    routes: list[tuple[str, str]] = []  # every router of app/api (app/api/cutover.py may not be wired yet)
    for info in pkgutil.iter_modules(app.api.__path__):
        router = getattr(importlib.import_module(f"app.api.{info.name}"), "router", None)
        for route in getattr(router, "routes", ()):
            for method in getattr(route, "methods", None) or ():
                routes.append((method, getattr(route, "path", "")))
    requests = curl_requests(RUNBOOK.read_text())
    assert requests, "the runbook shows the HTTP side too"
    for method, path in requests:
        concrete = path.replace("<JOB_ID>", "job123")
        matches = [
            p for m, p in routes if m == method and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p) + "/?", concrete)
        ]
        assert matches, f"runbook: no route for {method} {path}"


# ------------------------------------------------------------------------------------------ runner


@dataclass
class RunbookState:
    """What the walk through the runbook knows; the checks read the database directly."""

    url: str
    simulator: Any
    stack: AsyncExitStack
    pool: asyncpg.Pool | None = None
    worker: JobWorker | None = None
    shopify: Any = None
    main_job: str | None = None
    control_job: str | None = None
    seen: list[str] = field(default_factory=list)

    async def conn(self) -> asyncpg.Connection:
        return await pg.connect(self.url)

    async def ensure_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            self.pool = await create_pool(self.url, max_size=8)
            self.shopify = await self.stack.enter_async_context(shopify_client(self.pool, self.simulator.url_template))
        return self.pool

    async def start_worker(self) -> None:
        if self.worker is None:
            pool = await self.ensure_pool()
            self.worker = JobWorker(
                pool, self.shopify, concurrency=4, lease_s=5.0, poll_interval_s=0.2, sweep_interval_s=0.2
            )
            await self.worker.start()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop(timeout_s=5.0)
            self.worker = None

    async def close(self) -> None:
        await self.stop_worker()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


async def _fetchval(state: RunbookState, sql: str, *args: Any) -> Any:
    conn = await state.conn()
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _revision(state: RunbookState) -> str | None:
    conn = await state.conn()
    try:
        if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return None
        value: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
        return value
    finally:
        await conn.close()


async def _stage(state: RunbookState) -> str:
    from app.repos import flags as flag_repo
    from app.rules.flags import DEFAULT_STATES, FlagState

    conn = await state.conn()
    try:
        rows = await flag_repo.fetch_all(conn)
    finally:
        await conn.close()
    states = dict(DEFAULT_STATES)
    states.update({r["name"]: FlagState.from_row(r) for r in rows})
    return stage_of(states)


async def _locations(state: RunbookState) -> dict[str, str]:
    conn = await state.conn()
    try:
        return dict(await legacy_table_locations(conn))
    finally:
        await conn.close()


async def _latest_job(state: RunbookState, *, real: bool = False) -> dict[str, Any]:
    conn = await state.conn()
    try:
        row = await conn.fetchrow(
            'SELECT id, status, "dryRun", "parentJobId", failed FROM sb_migration_jobs '
            'WHERE NOT ($1 AND "dryRun") ORDER BY "createdAt" DESC, id DESC LIMIT 1',
            real,
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, simulator: Any) -> Iterator[None]:
    for name in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "DUAL_WRITE", "SHADOW_READS"):
        monkeypatch.delenv(f"FEATURE_FLAG_{name}", raising=False)
    monkeypatch.delenv("ADMIN_API_TOKEN", raising=False)
    monkeypatch.setenv("SHOPIFY_ADMIN_URL_TEMPLATE", simulator.url_template)
    monkeypatch.setenv("LOG_FORMAT", "text")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def runbook_db(monkeypatch: pytest.MonkeyPatch, cli_env: None) -> AsyncIterator[str]:
    url = await pg.create_database("sbrunbook")
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        await pg.drop_database(url)


async def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`shopibundle argv` in-process (its own event loop, in a thread); exit code and output."""

    def call() -> int:
        try:
            return cli_main(argv)
        except SystemExit as exc:  # argparse: --help, usage errors
            return int(exc.code or 0)

    rc = await asyncio.to_thread(call)
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


# --------------------------------------------------------------------------------------- the walk


async def _step(state: RunbookState, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Run one runbook command with its placeholders filled, and check exit code and effect."""
    command = argv[0]
    sub = argv[1] if len(argv) > 1 else ""
    state.seen.append(" ".join(argv))

    if command in HELP_ONLY:
        rc, out = await run_cli([command, "--help"], capsys)
        assert rc == 0 and "usage:" in out, out
        return

    if command == "db" and sub == "current":
        expected = 0 if await _revision(state) == head_revision() else 1
        rc, out = await run_cli(argv, capsys)
        assert rc == expected, out
        return

    if command == "db" and sub == "upgrade":
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out
        assert await _revision(state) == head_revision()
        for table in ARCHIVED_LEGACY_TABLES:  # the legacy tables are there (created, or kept)
            assert await _fetchval(state, "SELECT to_regclass($1) IS NOT NULL", f"public.{table}")
        return

    if command == "demo":
        assert argv[:3] == ["demo", "seed", "--simulator"]
        rc, out = await run_cli([*argv[:3], state.simulator.base_url], capsys)
        assert rc == 0, out
        sql = "SELECT count(*) FROM bundle_discount_id WHERE shop = ANY($1::text[])"
        assert await _fetchval(state, sql, list(DEMO_SHOPS)) > 0
        return

    if command == "migrate":
        await _migrate_step(state, argv, capsys)
        return

    if command == "outbox":
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out
        assert isinstance(orjson.loads(out[out.index("{") :]), dict)
        return

    if command == "validate":
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out  # the runbook validates after a complete migration: it must pass
        if "--json" in argv:
            report = orjson.loads(out[out.index("{") :])
            assert report["ok"] is True and report["unmigratedCount"] == 0
        else:
            assert "validation: OK" in out
        return

    if command == "stage":
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out
        if sub == "set":
            target = argv[2]
            assert await _stage(state) == target, out
            if "--sample-rate" in argv:
                rate = float(argv[argv.index("--sample-rate") + 1])
                sql = "SELECT \"sampleRate\" FROM sb_feature_flags WHERE name = 'SHADOW_READS'"
                assert await _fetchval(state, sql) == rate
        else:
            assert "stage:" in out and "legacy tables:" in out
        return

    if command == "cleanup":
        await _cleanup_step(state, argv, capsys)
        return

    if command == "rollback":
        await _rollback_step(state, argv, capsys)
        return

    raise AssertionError(f"runbook command not covered by test_runbook.py: shopibundle {' '.join(argv)}")


async def _migrate_step(state: RunbookState, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    sub = argv[1]
    if sub not in ("pause", "resume", "cancel"):
        await state.start_worker()
    if sub == "start":
        v2_before = await _fetchval(state, 'SELECT count(*) FROM "Bundle"')
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out
        job = await _latest_job(state)
        assert job["status"] == "succeeded", job
        v2_after = await _fetchval(state, 'SELECT count(*) FROM "Bundle"')
        if "--dry-run" in argv:
            assert job["dryRun"] and v2_after == v2_before  # a dry run writes nothing
        else:
            assert not job["dryRun"] and v2_after > v2_before
            state.main_job = job["id"]
        return
    if sub == "status":
        if "<JOB_ID>" in argv:
            assert state.main_job is not None
            argv = [state.main_job if a == "<JOB_ID>" else a for a in argv]
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out
        assert state.main_job is None or state.main_job in out
        return
    if sub == "retry-failed":
        assert state.main_job is not None
        assert (await _latest_job(state, real=True))["failed"] > 0, "the demo data has known failures"
        rc, out = await run_cli([a if a != "<JOB_ID>" else state.main_job for a in argv], capsys)
        assert rc == 0, out
        retry = await _latest_job(state)
        assert retry["parentJobId"] == state.main_job
        return
    if sub == "watch":
        newest = (await _latest_job(state))["id"]
        rc, out = await run_cli([a if a != "<JOB_ID>" else newest for a in argv], capsys)
        assert rc == 0, out
        assert (await _latest_job(state))["status"] == "succeeded"
        return
    if sub in ("pause", "resume", "cancel"):
        if state.control_job is None:  # a job that stays queued: the worker is stopped meanwhile
            await state.stop_worker()
            control = await migration_jobs.create_job(await state.ensure_pool(), kind="all")
            state.control_job = control.id
        rc, out = await run_cli([a if a != "<JOB_ID>" else state.control_job for a in argv], capsys)
        assert rc == 0, out
        status = await _fetchval(state, "SELECT status FROM sb_migration_jobs WHERE id = $1", state.control_job)
        expected = {"pause": {"paused"}, "resume": {"queued", "running"}, "cancel": {"cancelling", "cancelled"}}
        assert status in expected[sub], status
        if sub == "cancel":
            await state.start_worker()
        return
    raise AssertionError(f"runbook command not covered by test_runbook.py: shopibundle {' '.join(argv)}")


async def _cleanup_step(state: RunbookState, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    counts = {}
    for table in ARCHIVED_LEGACY_TABLES:
        schema = "archive" if (await _locations(state))[table] == "archive" else "public"
        counts[table] = await _fetchval(state, f'SELECT count(*) FROM {schema}."{table}"')
    rc, out = await run_cli(argv, capsys)
    assert rc == 0, out
    if len(argv) > 1 and argv[1] == "restore":
        assert set((await _locations(state)).values()) == {"public"}
        assert await _fetchval(state, "SELECT enabled FROM sb_feature_flags WHERE name = 'DUAL_WRITE'") is True
        schema = "public"
    else:
        assert set((await _locations(state)).values()) == {"archive"}
        assert await _stage(state) == "complete"
        assert await _fetchval(state, "SELECT to_regclass('public.ai_fbt_bundles') IS NOT NULL")  # kept, on purpose
        schema = "archive"
    for table, count in counts.items():  # rows move with the tables
        assert await _fetchval(state, f'SELECT count(*) FROM {schema}."{table}"') == count


async def _rollback_step(state: RunbookState, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if argv[1] == "immediate":
        rc, out = await run_cli(argv, capsys)
        assert rc == 0, out
        assert await _stage(state) == "dualwrite"
        return
    assert argv[1] == "full"
    if "--yes" not in argv:  # only says what it would do
        rc, out = await run_cli(argv, capsys)
        assert rc == 2, out
        assert await _revision(state) == head_revision()
        return
    await state.close()  # the worker's connections must not hold the tables the downgrade drops
    bundles = await _fetchval(state, 'SELECT count(*) FROM "Bundle"')
    legacy = await _fetchval(state, "SELECT count(*) FROM bundle_discount_id")
    rc, out = await run_cli(argv, capsys)
    assert rc == 0, out
    assert await _revision(state) == BASELINE_REVISION
    assert await _fetchval(state, "SELECT to_regclass('public.\"Bundle\"')") is None
    assert await _fetchval(state, "SELECT count(*) FROM bundle_v2_backup") == bundles > 0
    assert await _fetchval(state, "SELECT count(*) FROM sb_feature_flag_audit_backup") > 0
    assert await _fetchval(state, "SELECT count(*) FROM bundle_discount_id") == legacy


async def test_every_runbook_command_runs_in_document_order(
    runbook_db: str, simulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = shopibundle_commands(RUNBOOK.read_text())
    assert len(commands) >= 20
    async with AsyncExitStack() as stack:
        state = RunbookState(url=runbook_db, simulator=simulator, stack=stack)
        try:
            for argv in commands:
                await _step(state, argv, capsys)
        finally:
            await state.close()
    # The walk ends going forward again after the full rollback: schema at head, backups kept.
    assert len(state.seen) == len(commands)
    assert state.seen[-1] == "db upgrade"
    assert await _revision(state) == head_revision()
    assert await _fetchval(state, "SELECT count(*) FROM bundle_v2_backup") > 0
