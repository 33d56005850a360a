"""Legacy data sets for migration tests and benchmarks, written to the database AND the simulator.

* `seed_messy_legacy(conn, sim, shops)`: every messy case of shopify.md in a few shops, with the
  outcome each item must end with (`ExpectedOutcomes`), for a job of kind "all" (auto rules, then AI
  bundles, then manual bundles: the order `ITEM_KINDS_BY_JOB_KIND["all"]` runs them in).
* `seed_bulk_manual_bundles(conn, sim, shops, per_shop)`: many ordinary manual bundles, fast (one
  simulator call and one COPY per shop), for throughput benchmarks and race tests.

Shops must be fresh (`new_shop()`): everything is keyed by them. Two legacy keys are the table's
primary key and so exist at most once in the whole database: `Auto Generated Bundle` and
`gid://shopify/Metaobject/[object Object]`. Seeding moves those rows to the new shop (an upsert), as
a shared test database may already hold them from an earlier seed.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from app.core.ids import new_id
from app.core.time import utcnow
from app.repos.sessions import get_offline_token
from app.services.migration.items.common import ITEM_KINDS_BY_JOB_KIND, ItemKind, ItemOutcome, MigrationContext
from app.services.migration.items.dispatch import migrate_batch, plan_items
from app.shopify.client import ShopifyClient

BUNDLE_TYPE = "product-bundles"
OBJECT_OBJECT_KEY = "gid://shopify/Metaobject/[object Object]"
AUTO_GENERATED_KEY = "Auto Generated Bundle"
METAOBJECT_PREFIX = "gid://shopify/Metaobject/"


@dataclass(frozen=True)
class Expected:
    """What one item must end as: status plus reason code (None for migrated)."""

    status: str
    reason: str | None = None


@dataclass
class ExpectedOutcomes:
    """Expected outcome of every legacy item seeded, keyed by (item_kind, legacy_id), plus facts the
    tests check on the migrated data."""

    shops: list[str]
    messy_shop: str
    clean_shops: list[str]  # only ordinary, migratable bundle_discount_id rows and nothing else
    unauthorized_shop: str  # no `session` row: every item that needs Shopify fails shop_unauthorized
    auto_data_shop: str  # deprecated auto_bundle_data + the 'Auto Generated Bundle' row
    outcomes: dict[tuple[str, str], Expected] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    # legacy_id → facts about the V2 bundle it must become
    names: dict[str, str] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    discount_values: dict[str, Decimal] = field(default_factory=dict)
    component_counts: dict[str, int] = field(default_factory=dict)
    slug_groups: list[tuple[set[str], set[str]]] = field(default_factory=list)  # (legacy ids, their slugs)
    handle_targets: dict[str, str] = field(default_factory=dict)  # handle key → real metaobject GID
    ai_statuses: dict[str, str] = field(default_factory=dict)  # ai id → V2 status
    ai_discounts: dict[str, set[str]] = field(default_factory=dict)  # ai id → Shopify discount ids
    rule_discounts: dict[str, str] = field(default_factory=dict)  # legacy rule key → shopifyDiscountId
    copied_rules: dict[str, str] = field(default_factory=dict)  # auto_bundle_data key → id of its copy rule
    deleted_metaobjects: list[str] = field(default_factory=list)

    def expect(self, kind: str, legacy_id: str, status: str, reason: str | None = None) -> None:
        self.outcomes[(kind, legacy_id)] = Expected(status, reason)

    def for_kind(self, kind: str) -> dict[str, Expected]:
        return {legacy_id: e for (k, legacy_id), e in self.outcomes.items() if k == kind}

    def keys(self, kind: str, shop: str | None = None, status: str | None = None) -> list[str]:
        """Legacy ids of a kind (optionally of a shop's items / of one expected status)."""
        return sorted(
            legacy_id
            for (k, legacy_id), e in self.outcomes.items()
            if k == kind
            and (shop is None or self.item_shops.get((k, legacy_id)) == shop)
            and (status is None or e.status == status)
        )

    item_shops: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, legacy_id) → shop

    def shop_of(self, kind: str, legacy_id: str) -> str:
        return self.item_shops[(kind, legacy_id)]


def _discount_gid() -> str:
    return f"gid://shopify/DiscountAutomaticNode/{random.randint(10**11, 10**12)}"


async def _register_shop(
    conn: asyncpg.Connection, sim: Any, shop: str, *, session: bool = True, plan: str | None = None
) -> str:
    token = f"shpat_{uuid.uuid4().hex[:16]}"
    await sim.put_shop(shop, token, plan=plan)
    if session:
        await conn.execute(
            """
            INSERT INTO "session" (id, content, shop) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content
            """,
            f"offline_{shop}",
            json.dumps({"accessToken": token, "shop": shop, "scope": "read_products,write_metaobjects"}),
            shop,
        )
    return token


async def _add_products(sim: Any, shop: str, count: int) -> list[dict[str, Any]]:
    items = [
        {
            "title": f"Product {i} of {shop.split('.')[0]}",
            "price": f"{10 + i}.50",
            "sku": f"SKU-{i}",
            "imageUrl": f"https://cdn.example.com/{i}.png",
            "inventoryQuantity": 5 + i,
        }
        for i in range(count)
    ]
    created: list[dict[str, Any]] = await sim.add_products(shop, items)
    return created


async def _insert_bdi(conn: asyncpg.Connection, rows: list[tuple[str, str, str, str]]) -> None:
    """(bundleId, bundleName, discountId, shop) rows; the two global singletons are moved to this shop."""
    await conn.executemany(
        """
        INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)
        ON CONFLICT ("bundleId") DO UPDATE
        SET "bundleName" = EXCLUDED."bundleName", "discountId" = EXCLUDED."discountId", shop = EXCLUDED.shop
        """,
        rows,
    )


async def copy_auto_bundle_data(conn: asyncpg.Connection, shop: str) -> str:
    """What the legacy app's hand-run SQL (`add_multiple_auto_bundles.sql`) did to a shop's
    `auto_bundle_data` row: a copy in `auto_bundle_rules` named 'Migrated Auto Bundle' with the same
    collections, tags and values, active, with a fresh id; the data row is kept. Returns the copy's id."""
    copy_id: str = await conn.fetchval(
        """
        INSERT INTO auto_bundle_rules (id, shop, name, collections, tags, "minPrice", "maxPrice", "minProducts",
                                       discount, "isActive", "createdAt", "updatedAt")
        SELECT $2, shop, 'Migrated Auto Bundle', collections, tags, "minPrice", "maxPrice", "minProducts",
               discount, true, now(), now()
        FROM auto_bundle_data WHERE shop = $1
        RETURNING id
        """,
        shop,
        new_id(),
    )
    return copy_id


async def seed_messy_legacy(
    conn: asyncpg.Connection, sim: Any, shops: list[str], *, copied_auto_rule: bool = False
) -> ExpectedOutcomes:
    """Seed the messy legacy data set; shops[0] messy, shops[1] clean, shops[2] without a session row,
    shops[3] with the deprecated auto_bundle_data (with `copied_auto_rule`: and the copy the legacy
    app's own SQL made of it in auto_bundle_rules, one rule migrated once); any further shop is another
    clean one."""
    if len(shops) < 4:
        raise ValueError("seed_messy_legacy needs at least 4 shops")
    messy, clean, unauthorized, auto_data = shops[0], shops[1], shops[2], shops[3]
    exp = ExpectedOutcomes(
        shops=list(shops),
        messy_shop=messy,
        clean_shops=[clean, *shops[4:]],
        unauthorized_shop=unauthorized,
        auto_data_shop=auto_data,
    )

    def expect(kind: str, shop: str, legacy_id: str, status: str, reason: str | None = None) -> None:
        exp.expect(kind, legacy_id, status, reason)
        exp.item_shops[(kind, legacy_id)] = shop

    for shop in shops:
        exp.tokens[shop] = await _register_shop(conn, sim, shop, session=shop != unauthorized)

    # ------------------------------------------------------------------ messy shop: manual bundles
    products = await _add_products(sim, messy, 4)
    p = [prod["id"] for prod in products]
    v = [prod["variantId"] for prod in products]
    uniq = uuid.uuid4().hex[:8]
    handle = f"legacy-import-gift-box-{uniq}"
    # name → (fields, legacy bundleName, expected)
    specs: list[tuple[str, dict[str, Any], str, Expected]] = [
        (
            "plain",
            {
                "bundle_name": "Starter Kit",
                "bundle_title": "Starter Kit Deluxe",
                "description": "Two things",
                "created_at": "2024-03-01T10:00:00Z",
                "discount": "15",
                "products": json.dumps([p[0], p[1]]),
            },
            "Starter Kit",
            Expected("migrated"),
        ),
        (
            "objects",
            {
                "bundle_name": "Objects Set",
                "bundle_title": "Objects Set",
                "discount": "15%",
                "products": json.dumps(
                    [{"productId": p[0], "variantId": v[0], "quantity": 2}, {"productId": p[1].rsplit("/", 1)[1]}]
                ),
            },
            "Objects Set",
            Expected("migrated"),
        ),
        (
            "decimal",
            {"bundle_name": "Decimal Deal", "discount": "12.5", "products": json.dumps([p[2]])},
            "Decimal Deal",
            Expected("migrated"),
        ),
        (
            "empty_discount",
            {"bundle_name": "No Discount", "discount": "", "products": json.dumps([p[3]])},
            "No Discount",
            Expected("migrated"),
        ),
        (
            "abc",
            {"bundle_name": "Bad Discount", "discount": "abc", "products": json.dumps([p[0]])},
            "Bad Discount",
            Expected("failed", "invalid_legacy_data"),
        ),
        (
            "dup1",
            {"bundle_name": "Summer Set", "discount": "10", "products": json.dumps([p[0], p[2]])},
            "Summer Set",
            Expected("migrated"),
        ),
        (
            "dup2",
            {"bundle_name": "Summer Set", "discount": "20", "products": json.dumps([p[1], p[3]])},
            "Summer Set",
            Expected("migrated"),
        ),
        (
            "cafe",
            {"bundle_name": "Café Crème", "discount": "5", "products": json.dumps([p[0]])},
            "Café Crème",
            Expected("migrated"),
        ),
        (
            "japanese",
            {"bundle_name": "夏のセット", "discount": "30", "products": json.dumps([p[1]])},
            "夏のセット",
            Expected("migrated"),
        ),
        (
            "emoji",
            {"bundle_name": "🎁🎁", "discount": "30", "products": json.dumps([p[2]])},
            "🎁🎁",
            Expected("migrated"),
        ),
        ("missing_fields", {"products": json.dumps([p[3]])}, "Bare Bundle", Expected("migrated")),
        ("blank_name", {"bundle_name": "Named In Shopify", "products": json.dumps([p[0]])}, "  ", Expected("migrated")),
        (
            "double_encoded",
            {"bundle_name": "Double", "discount": "7", "products": json.dumps(json.dumps([p[1], p[2]]))},
            "Double",
            Expected("migrated"),
        ),
        (
            "unparsable",
            {"bundle_name": "Broken JSON", "discount": "10", "products": "[gid://shopify/Product/1"},
            "Broken JSON",
            Expected("failed", "invalid_legacy_data"),
        ),
        (
            "no_products",
            {"bundle_name": "No Products", "discount": "10"},
            "No Products",
            Expected("failed", "invalid_legacy_data"),
        ),
        (
            "gone",
            {"bundle_name": "Deleted In Shopify", "discount": "10", "products": json.dumps([p[0]])},
            "Deleted In Shopify",
            Expected("failed", "metaobject_not_found"),
        ),
        (
            "handle",
            {
                "bundle_name": "Gift Box",
                "bundle_title": "Gift Box",
                "discount": "25",
                "products": json.dumps([p[0], p[3]]),
            },
            "Gift Box",
            Expected("migrated"),
        ),
        (
            "ai_metaobject",
            {"bundle_name": "FBT", "products": json.dumps([p[0], p[1]])},
            "AI generated",
            Expected("skipped", "ai_bundle_metaobject"),
        ),
    ]
    items = [
        {"type": BUNDLE_TYPE, "fields": fields, **({"handle": handle} if key == "handle" else {})}
        for key, fields, _, _ in specs
    ]
    created = await sim.add_metaobjects(messy, items)
    gid = {key: mo["id"] for (key, _, _, _), mo in zip(specs, created, strict=True)}
    await sim.delete_metaobject(messy, gid["gone"])
    exp.deleted_metaobjects.append(gid["gone"])

    bdi: list[tuple[str, str, str, str]] = []
    for key, _fields, legacy_name, expected in specs:
        legacy_id = gid[key] if key != "handle" else f"{METAOBJECT_PREFIX}{handle}"
        if key == "handle":
            exp.handle_targets[legacy_id] = gid["handle"]
        bdi.append((legacy_id, legacy_name, _discount_gid(), messy))
        expect("bundle", messy, legacy_id, expected.status, expected.reason)
    ids = {key: row[0] for (key, _, _, _), row in zip(specs, bdi, strict=True)}
    exp.names.update(
        {
            ids["plain"]: "Starter Kit",
            ids["missing_fields"]: "Bare Bundle",
            ids["blank_name"]: "Named In Shopify",
            ids["cafe"]: "Café Crème",
        }
    )
    exp.titles.update(
        {
            ids["plain"]: "Starter Kit Deluxe",
            ids["missing_fields"]: "Bare Bundle",
            ids["blank_name"]: "Named In Shopify",
        }
    )
    exp.discount_values.update(
        {
            ids["plain"]: Decimal("15"),
            ids["objects"]: Decimal("15"),
            ids["decimal"]: Decimal("12.5"),
            ids["empty_discount"]: Decimal("0"),
            ids["missing_fields"]: Decimal("0"),
            ids["handle"]: Decimal("25"),
        }
    )
    exp.component_counts.update({ids["plain"]: 2, ids["objects"]: 2, ids["double_encoded"]: 2, ids["handle"]: 2})
    exp.slug_groups.append(({ids["dup1"], ids["dup2"]}, {"summer-set", "summer-set-2"}))
    exp.slug_groups.append(({ids["japanese"], ids["emoji"]}, {"bundle", "bundle-2"}))
    exp.slug_groups.append(({ids["cafe"]}, {"cafe-creme"}))

    # Odd rows: a handle that resolves to nothing, `[object Object]`, auto-rule rows.
    missing_handle = f"{METAOBJECT_PREFIX}no-such-handle-{uniq}"
    bdi.append((missing_handle, "Lost Import", _discount_gid(), messy))
    expect("bundle", messy, missing_handle, "failed", "metaobject_not_found")
    bdi.append((OBJECT_OBJECT_KEY, "Broken Import", _discount_gid(), messy))
    expect("bundle", messy, OBJECT_OBJECT_KEY, "failed", "invalid_legacy_data")

    # ------------------------------------------------------------------ messy shop: auto rules
    now = utcnow()
    r1, r2, r3 = new_id(), new_id(), new_id()
    await conn.executemany(
        """
        INSERT INTO auto_bundle_rules (id, shop, name, collections, tags, "minPrice", "maxPrice", "minProducts",
                                       discount, "isActive", "createdAt", "updatedAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
        """,
        [
            (r1, messy, "Kitchen combos", ["gid://shopify/Collection/1", " "], [], "10", "200", "2", "10", True, now),
            (r2, messy, "  ", None, ["summer", "summer", "sale"], "$10", "", "", "12,5 %", False, now),
            (r3, messy, "Broken prices", [], ["x"], "abc", "", "2", "10", True, now),
        ],
    )
    rule_discount = _discount_gid()
    bdi.append((f"auto-rule-{r1}", "Kitchen combos", rule_discount, messy))
    expect("bundle", messy, f"auto-rule-{r1}", "skipped", "auto_rule_discount")
    bdi.append((f"auto-rule-{new_id()}", "Deleted rule", _discount_gid(), messy))  # orphan: its rule is gone
    expect("bundle", messy, bdi[-1][0], "skipped", "auto_rule_discount")
    expect("auto_rule", messy, r1, "migrated")
    expect("auto_rule", messy, r2, "migrated")
    expect("auto_rule", messy, r3, "failed", "invalid_legacy_data")
    exp.rule_discounts[r1] = rule_discount

    # ------------------------------------------------------------------ messy shop: AI bundles
    a1, a2, a3, a4 = new_id(), new_id(), new_id(), new_id()
    ai_discount_row = next(row for row in bdi if row[0] == ids["ai_metaobject"])[2]
    a2_discount = _discount_gid()
    await conn.executemany(
        """
        INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift,
                                    "isActive", "bundleMetaobjectId", "discountId", "generatedAt", "lastUpdatedAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
        """,
        [
            (a1, messy, p[0], [p[1]], 0.8, 0.05, 2.1, True, ids["ai_metaobject"], None, now),
            (a2, messy, p[2].rsplit("/", 1)[1], [p[3], p[0]], 0.5, 0.02, 1.4, True, None, a2_discount, now),
            (a3, messy, p[1], [], 0.31, 0.011, 1.01, False, None, None, now),
            (a4, messy, "not-a-product", [p[1]], 0.4, 0.03, 1.2, True, None, None, now),
        ],
    )
    expect("ai_bundle", messy, a1, "migrated")
    expect("ai_bundle", messy, a2, "migrated")
    expect("ai_bundle", messy, a3, "migrated")
    expect("ai_bundle", messy, a4, "failed", "invalid_legacy_data")
    exp.ai_statuses.update({a1: "ACTIVE", a2: "ACTIVE", a3: "PAUSED"})
    exp.ai_discounts.update({a1: {ai_discount_row}, a2: {a2_discount}, a3: set()})
    exp.component_counts[a2] = 3

    # ------------------------------------------------------------------ clean shops
    for shop in exp.clean_shops:
        prods = await _add_products(sim, shop, 3)
        cp = [prod["id"] for prod in prods]
        clean_specs = [
            ("Morning Bundle", "20", json.dumps([cp[0], cp[1]])),
            (
                "Evening Bundle",
                "5%",
                json.dumps([{"productId": cp[1], "variantId": prods[1]["variantId"], "quantity": 3}]),
            ),
            ("Night Bundle", "", json.dumps([cp[2]])),
        ]
        made = await sim.add_metaobjects(
            shop,
            [
                {"type": BUNDLE_TYPE, "fields": {"bundle_name": n, "bundle_title": n, "discount": d, "products": pr}}
                for n, d, pr in clean_specs
            ],
        )
        for (name, _, _), mo in zip(clean_specs, made, strict=True):
            bdi.append((mo["id"], name, _discount_gid(), shop))
            expect("bundle", shop, mo["id"], "migrated")

    # ------------------------------------------------------------------ shop without a session row
    prods = await _add_products(sim, unauthorized, 2)
    made = await sim.add_metaobjects(
        unauthorized,
        [
            {
                "type": BUNDLE_TYPE,
                "fields": {"bundle_name": f"Locked {i}", "discount": "10", "products": json.dumps([prods[i]["id"]])},
            }
            for i in range(2)
        ],
    )
    for i, mo in enumerate(made):
        bdi.append((mo["id"], f"Locked {i}", _discount_gid(), unauthorized))
        expect("bundle", unauthorized, mo["id"], "failed", "shop_unauthorized")
    # An AI bundle needs no Shopify call: it migrates even though the shop has no token.
    a5 = new_id()
    await conn.execute(
        """
        INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift)
        VALUES ($1, $2, $3, $4, 0.6, 0.04, 1.7)
        """,
        a5,
        unauthorized,
        prods[0]["id"],
        [prods[1]["id"]],
    )
    expect("ai_bundle", unauthorized, a5, "migrated")
    exp.ai_statuses[a5] = "ACTIVE"

    # ------------------------------------------------------------------ shop with the deprecated auto bundle
    prods = await _add_products(sim, auto_data, 2)
    made = await sim.add_metaobjects(
        auto_data,
        [
            {
                "type": BUNDLE_TYPE,
                "fields": {"bundle_name": "Plain One", "discount": "10", "products": json.dumps([prods[0]["id"]])},
            }
        ],
    )
    bdi.append((made[0]["id"], "Plain One", _discount_gid(), auto_data))
    expect("bundle", auto_data, made[0]["id"], "migrated")
    await conn.execute(
        """
        INSERT INTO auto_bundle_data (shop, collections, tags, "minPrice", "maxPrice", "minProducts", discount)
        VALUES ($1, $2, $3, '', '100', '2', '10%')
        """,
        auto_data,
        [],
        ["summer"],
    )
    generated_discount = _discount_gid()
    bdi.append((AUTO_GENERATED_KEY, "Auto Generated Bundle", generated_discount, auto_data))
    expect("bundle", auto_data, AUTO_GENERATED_KEY, "skipped", "auto_generated_discount")
    data_key = f"auto_bundle_data:{auto_data}"
    if copied_auto_rule:
        copy_id = await copy_auto_bundle_data(conn, auto_data)
        expect("auto_rule", auto_data, copy_id, "migrated")
        expect("auto_rule", auto_data, data_key, "skipped", "duplicate_of_rule")
        exp.rule_discounts[copy_id] = generated_discount
        exp.copied_rules[data_key] = copy_id
    else:
        expect("auto_rule", auto_data, data_key, "migrated")
        exp.rule_discounts[data_key] = generated_discount

    await _insert_bdi(conn, bdi)
    return exp


async def seed_bulk_manual_bundles(
    conn: asyncpg.Connection,
    sim: Any,
    shops: list[str],
    per_shop: int,
    *,
    products_per_shop: int = 10,
    plan: str | None = None,
) -> None:
    """`per_shop` ordinary manual bundles in each shop (session row, simulator shop, products,
    metaobjects, bundle_discount_id rows). Both products formats and the usual discount spellings
    alternate; every 7th bundle is named "Gift Set" so slugs must be made unique."""
    discounts = ["10", "15%", "12.5", "", "20"]
    for shop in shops:
        await _register_shop(conn, sim, shop, plan=plan)
        prods = await _add_products(sim, shop, products_per_shop)
        items = []
        names = []
        for i in range(per_shop):
            a, b = prods[i % len(prods)], prods[(i + 1) % len(prods)]
            if i % 2:
                products: list[Any] = [a["id"], b["id"]]
            else:
                products = [
                    {"productId": a["id"], "variantId": a["variantId"], "quantity": 1 + i % 3},
                    {"productId": b["id"]},
                ]
            name = "Gift Set" if i % 7 == 0 else f"Bundle {i:05d}"
            names.append(name)
            items.append(
                {
                    "type": BUNDLE_TYPE,
                    "fields": {
                        "bundle_name": name,
                        "bundle_title": f"{name} (title)",
                        "description": f"Bulk bundle {i}",
                        "created_at": "2025-01-01T00:00:00Z",
                        "discount": discounts[i % len(discounts)],
                        "products": json.dumps(products),
                    },
                }
            )
        created: list[dict[str, Any]] = []
        for start in range(0, len(items), 500):
            created.extend(await sim.add_metaobjects(shop, items[start : start + 500]))
        records = [(mo["id"], name, _discount_gid(), shop) for mo, name in zip(created, names, strict=True)]
        await conn.copy_records_to_table(
            "bundle_discount_id", records=records, columns=["bundleId", "bundleName", "discountId", "shop"]
        )


# ---------------------------------------------------------------------------------- running items


@asynccontextmanager
async def shopify_client(pool: asyncpg.Pool, url_template: str, **overrides: Any) -> AsyncIterator[ShopifyClient]:
    """A Shopify client on the simulator whose tokens come from the legacy `session` table, with
    short backoffs so fault tests stay fast."""
    options: dict[str, Any] = {"max_attempts": 4, "base_backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0}
    options.update(overrides)

    async def token_provider(shop: str) -> str | None:
        return await get_offline_token(pool, shop)

    async with httpx.AsyncClient() as http:
        yield ShopifyClient(http, url_template, "2026-01", token_provider, **options)


async def migrate_items(
    ctx: MigrationContext,
    shops: list[str],
    kinds: tuple[ItemKind, ...] = ITEM_KINDS_BY_JOB_KIND["all"],
    batch_size: int = 100,
) -> dict[tuple[str, str], ItemOutcome]:
    """What a job of kind "all" does, minus the bookkeeping: plan each kind, run its batches (shops in
    parallel, one shop's batches in order), return every outcome by (item kind, legacy id)."""
    results: dict[tuple[str, str], ItemOutcome] = {}
    for kind in kinds:
        async with ctx.pool.acquire() as conn:
            planned = await plan_items(conn, kind, shops)
        by_shop: dict[str, list[str]] = {}
        for item in planned:
            by_shop.setdefault(item.shop, []).append(item.legacy_id)

        async def run_shop(shop: str, ids: list[str], kind: ItemKind = kind) -> list[ItemOutcome]:
            out: list[ItemOutcome] = []
            for start in range(0, len(ids), batch_size):
                out.extend(await migrate_batch(ctx, shop, kind, ids[start : start + batch_size]))
            return out

        for outcomes in await asyncio.gather(*(run_shop(s, ids) for s, ids in by_shop.items())):
            for outcome in outcomes:
                results[(kind, outcome.legacy_id)] = outcome
    return results


async def record_outcomes(
    conn: asyncpg.Connection,
    outcomes: dict[tuple[str, str], ItemOutcome],
    shops_of: dict[tuple[str, str], str],
    *,
    dry_run: bool = False,
) -> str:
    """Store outcomes as the job engine does (sb_migration_jobs + sb_migration_job_items); returns the job id."""
    job_id = new_id()
    now = utcnow()
    await conn.execute(
        """
        INSERT INTO sb_migration_jobs (id, kind, status, "dryRun", "createdAt", "updatedAt", "finishedAt")
        VALUES ($1, 'all', 'succeeded', $2, $3, $3, $3)
        """,
        job_id,
        dry_run,
        now,
    )
    await conn.executemany(
        """
        INSERT INTO sb_migration_job_items ("jobId", "itemKind", "legacyId", shop, status, reason, detail, "v2Id",
                                            attempts, "lastAttemptAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)
        """,
        [
            (job_id, kind, o.legacy_id, shops_of[(kind, legacy_id)], o.status, o.reason, o.detail, o.v2_id, now)
            for (kind, legacy_id), o in outcomes.items()
        ],
    )
    return job_id
