"""Phase 1 acceptance: the schema is Prisma's exactly, starts from a legacy database, and rolls back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from app.core.migrations import downgrade, head_revision, upgrade, upgrade_async
from tests import pg

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_MD = ROOT.parent / "shared" / "spec" / "schema.md"
PLAN_MD = ROOT.parent / "shared" / "seed" / "migration-plan-v2.md"
LEGACY_TABLES = [
    "session",
    "active_stores",
    "oauth_state",
    "auto_bundle_data",
    "auto_bundle_rules",
    "bundle_discount_id",
    "ai_fbt_bundles",
    "ai_bundle_events",
    "ai_bundle_ab_assignments",
    "ai_fbt_config",
]
V2_TABLES = [
    "Bundle",
    "BundleComponent",
    "ComponentGroup",
    "BundlePricingRule",
    "BundleDiscount",
    "BundleInventory",
    "BundleAnalytics",
    "BundleEvent",
    "InventorySyncLog",
    "AutoBundleRule",
    "SubscriptionBundle",
    "GiftBundleSettings",
]


@pytest.fixture
async def empty_db() -> AsyncIterator[str]:
    url = await pg.create_database("sbschema")
    yield url
    await pg.drop_database(url)


async def _snapshot(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every legacy row as its text form, sorted: equality means untouched."""
    out = {}
    for table in LEGACY_TABLES:
        rows = await conn.fetch(f'SELECT t::text AS r FROM "{table}" t ORDER BY 1')
        out[table] = [r["r"] for r in rows]
    return out


# ---------------------------------------------------------------- spec parsing (the contract file)
TYPE_MAP = {
    "text": "text",
    "integer": "integer",
    "boolean": "boolean",
    "double precision": "double precision",
    "jsonb": "jsonb",
    "timestamp(3)": "timestamp without time zone",
    "text[]": "ARRAY",
    "date": "date",
}


def _default_of(notes: str) -> str | None:
    m = re.search(r"(?:^|, )default (\S+)", notes)
    return m.group(1).strip(",") if m else None


def _spec_columns() -> dict[str, dict[str, dict[str, object]]]:
    """Parse schema.md into {table: {column: {type, nullable, default}}}."""
    text = SCHEMA_MD.read_text()
    tables: dict[str, dict[str, dict[str, object]]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(("## ", "Notes", "Relations")):
            current = None
        head = re.match(r'^### "([A-Za-z_]+)"', line)
        if head:
            current = head.group(1)
            tables[current] = {}
            continue
        col = re.match(r"^- `(\w+)` (.+?)(?: — (.*))?$", line)
        if current and col:
            name, type_, notes = col.group(1), col.group(2).strip(), (col.group(3) or "")
            tables[current][name] = {
                "type": type_,
                "nullable": not ("not null" in notes or "PK" in notes),
                "default": _default_of(notes),
            }
    return tables


def _expected_type(type_: str) -> tuple[str, str | None, int | None, int | None]:
    if type_.startswith("enum"):
        return "USER-DEFINED", re.search(r'"(\w+)"', type_).group(1), None, None  # type: ignore[union-attr]
    m = re.match(r"(numeric|decimal)\((\d+),\s*(\d+)\)", type_)
    if m:
        return "numeric", None, int(m.group(2)), int(m.group(3))
    return TYPE_MAP[type_], None, None, None


def _default_matches(expected: str | None, actual: str | None, data_type: str) -> bool:
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if expected == "CURRENT_TIMESTAMP":
        return actual == "CURRENT_TIMESTAMP"
    value = expected.strip('"')
    if data_type in ("integer", "numeric", "double precision"):
        return float(actual.split("::")[0].strip("'")) == float(value)
    if data_type == "boolean":
        return actual == value
    if data_type == "jsonb":
        return actual.startswith(f"'{value}'")
    return actual.split("::")[0] == f"'{value}'"


async def test_every_column_matches_schema_md(db: asyncpg.Connection) -> None:
    spec = _spec_columns()
    assert set(V2_TABLES) | set(LEGACY_TABLES) <= set(spec), "spec parser lost tables"
    checked = 0
    for table, columns in spec.items():
        rows = await db.fetch(
            "SELECT column_name, data_type, udt_name, is_nullable, column_default, numeric_precision, "
            "numeric_scale, datetime_precision FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1",
            table,
        )
        actual = {r["column_name"]: r for r in rows}
        assert set(actual) == set(columns), f"{table}: columns differ"
        for name, want in columns.items():
            got = actual[name]
            data_type, udt, precision, scale = _expected_type(str(want["type"]))
            assert got["data_type"] == data_type, f"{table}.{name} type {got['data_type']} != {data_type}"
            if udt:
                assert got["udt_name"] == udt, f"{table}.{name} enum {got['udt_name']}"
            if precision is not None:
                assert (got["numeric_precision"], got["numeric_scale"]) == (precision, scale), f"{table}.{name}"
            if data_type == "timestamp without time zone":
                assert got["datetime_precision"] == 3, f"{table}.{name} precision"
            assert (got["is_nullable"] == "YES") == want["nullable"], f"{table}.{name} nullability"
            if "set on every write" not in str(want):
                assert _default_matches(want["default"], got["column_default"], data_type), (
                    f"{table}.{name} default {got['column_default']!r} != {want['default']!r}"
                )
            checked += 1
    assert checked > 200


async def test_enum_labels(db: asyncpg.Connection) -> None:
    text = SCHEMA_MD.read_text()
    expected = {
        m.group(1): [s.strip() for s in m.group(2).split(",")] for m in re.finditer(r'^- "(\w+)": (.+)$', text, re.M)
    }
    assert len(expected) == 9
    for name, labels in expected.items():
        rows = await db.fetch(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
            "WHERE t.typname = $1 ORDER BY e.enumsortorder",
            name,
        )
        assert [r["enumlabel"] for r in rows] == labels, name


async def test_prisma_names_of_keys_and_indexes(db: asyncpg.Connection) -> None:
    idx = {r["indexname"]: r["indexdef"] for r in await db.fetch("SELECT indexname, indexdef FROM pg_indexes")}
    for table in V2_TABLES + LEGACY_TABLES:
        assert f"{table}_pkey" in idx
    for name in [
        "Bundle_shop_slug_key",
        "Bundle_shop_status_idx",
        "Bundle_shop_type_idx",
        "Bundle_createdAt_idx",
        "BundleComponent_shopifyProductId_idx",
        "BundleDiscount_bundleId_shopifyDiscountId_key",
        "BundleInventory_bundleId_key",
        "BundleAnalytics_bundleId_date_key",
        "AutoBundleRule_shop_isActive_idx",
        "ai_fbt_bundles_shop_productId_idx",
        "sb_bundle_shop_metaobject_key",
        "sb_bundle_shop_ai_bundle_key",
        "sb_auto_rule_shop_legacy_key",
        "sb_component_product_bundle_idx",
    ]:
        assert name in idx, name
    assert "UNIQUE" in idx["Bundle_shop_slug_key"]
    fks = await db.fetch(
        "SELECT conname, confdeltype, confupdtype FROM pg_constraint "
        "WHERE contype = 'f' AND conname LIKE '%bundleId_fkey'"
    )
    by_name = {r["conname"]: r for r in fks}
    for child in [
        "BundleComponent",
        "BundlePricingRule",
        "BundleDiscount",
        "BundleInventory",
        "BundleAnalytics",
        "BundleEvent",
    ]:
        fk = by_name[f"{child}_bundleId_fkey"]
        assert (fk["confdeltype"], fk["confupdtype"]) == (b"c", b"c"), child  # CASCADE, CASCADE


def _plan_validation_queries() -> list[str]:
    text = PLAN_MD.read_text()
    block = text.split("## Data Validation Queries", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    return [q.strip() for q in block.split(";") if (q.strip() and not q.strip().startswith("--")) or "SELECT" in q]


async def test_plan_validation_queries_run_verbatim(db: asyncpg.Connection) -> None:
    queries = [q for q in _plan_validation_queries() if "SELECT" in q]
    assert len(queries) == 3
    for query in queries:
        await db.fetch(query)  # raises on any name the schema lacks


async def test_upgrade_from_prisma_built_legacy_database_keeps_rows(empty_db: str) -> None:
    conn = await pg.connect(empty_db)
    try:
        await conn.execute((ROOT / "tests" / "fixtures" / "prisma_legacy.sql").read_text())
        before = await _snapshot(conn)
        assert sum(len(v) for v in before.values()) >= 12
        await upgrade_async(empty_db)
        assert await _snapshot(conn) == before
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
        # The legacy app's data and the new schema coexist: the plan's queries see the legacy rows.
        counts = await conn.fetch(_plan_validation_queries()[0])
        assert any(r["source"] == "old" and r["count"] == 4 for r in counts)
    finally:
        await conn.close()


async def test_round_trip_preserves_v2_rows_in_backups(empty_db: str) -> None:
    await upgrade_async(empty_db)
    conn = await pg.connect(empty_db)
    try:
        await conn.execute(
            """INSERT INTO "Bundle" (id, shop, name, title, slug, "updatedAt")
               VALUES ('cb1', 's.myshopify.com', 'n', 't', 'n', now());
               INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "updatedAt")
               VALUES ('cc1', 'cb1', 'gid://shopify/Product/1', now());
               INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "updatedAt")
               VALUES ('cd1', 'cb1', 'gid://shopify/DiscountAutomaticNode/1', now());
               INSERT INTO bundle_discount_id VALUES ('gid://shopify/Metaobject/1', 'n', 'd', 's.myshopify.com');"""
        )
        import asyncio

        await asyncio.to_thread(downgrade, empty_db, "0001_legacy_baseline")
        assert await conn.fetchval("""SELECT to_regclass('"Bundle"')""") is None
        assert await conn.fetchval("""SELECT count(*) FROM pg_type WHERE typname = 'BundleStatus'""") == 0
        assert await conn.fetchval("SELECT name FROM bundle_v2_backup") == "n"
        assert (
            await conn.fetchval('SELECT "shopifyProductId" FROM bundle_component_backup') == "gid://shopify/Product/1"
        )
        assert (await conn.fetchval('SELECT "shopifyDiscountId" FROM bundle_discount_backup')).endswith("/1")
        assert await conn.fetchval("SELECT to_regclass('bundle_inventory_backup')") is None  # held no rows
        assert await conn.fetchval("SELECT count(*) FROM bundle_discount_id") == 1  # legacy untouched
        await asyncio.to_thread(upgrade, empty_db)
        assert await conn.fetchval('SELECT count(*) FROM "Bundle"') == 0
        # A second rollback keeps the first backup under a dated name.
        await conn.execute(
            """INSERT INTO "Bundle" (id, shop, name, title, slug, "updatedAt")
               VALUES ('cb2', 's.myshopify.com', 'n2', 't', 'n2', now())"""
        )
        await asyncio.to_thread(downgrade, empty_db, "0001_legacy_baseline")
        assert await conn.fetchval("SELECT name FROM bundle_v2_backup") == "n2"
        dated = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bundle_v2_backup_%'")
        assert dated == 1
        await asyncio.to_thread(upgrade, empty_db)
    finally:
        await conn.close()


async def test_alembic_check_reports_no_drift(db_url: str) -> None:
    import asyncio

    from alembic import command
    from app.core.migrations import alembic_config

    await asyncio.to_thread(command.check, alembic_config(db_url))
