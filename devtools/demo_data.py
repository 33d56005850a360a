"""Demo data: a realistic legacy data set, in the database and in the Shopify simulator.

It shows a newcomer the whole migration end to end, messy records included: both `products`
formats, odd discounts, duplicate and non-ASCII names, unparsable JSON, the four odd row kinds of
`bundle_discount_id`, a metaobject that is gone and a shop that uninstalled the app.
Deterministic (seeded RNG, fixed ids) and idempotent: running it twice changes nothing.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.core.time import utcnow
from devtools.shopify_simulator import SimulatorControl

DEMO_SHOPS = (
    "demo-outdoor.myshopify.com",
    "demo-cafe.myshopify.com",
    "demo-kids.myshopify.com",
)
UNINSTALLED_SHOP = "demo-uninstalled.myshopify.com"
BUNDLES_PER_SHOP = 24
_NAMES = [
    "Summer Set",
    "Camp Kitchen",
    "Trail Starter",
    "Café Crème Duo",
    "Winter Warmers",
    "Été Essentials",
    "夏のセット",
    "Gift Box 🎁",
    "Morning Ritual",
    "Summer Set",  # a duplicate name on purpose
]


@dataclass
class DemoSummary:
    shops: list[str] = field(default_factory=list)
    manual_rows: int = 0
    metaobjects: int = 0
    ai_bundles: int = 0
    auto_rules: int = 0


def _shop_index(shop: str) -> int:
    return DEMO_SHOPS.index(shop) + 1 if shop in DEMO_SHOPS else 9


def _metaobject_gid(shop: str, n: int) -> str:
    return f"gid://shopify/Metaobject/{_shop_index(shop) * 100000 + n}"


def _product_gid(shop: str, n: int) -> str:
    return f"gid://shopify/Product/{_shop_index(shop) * 100000 + n}"


def _discount_gid(shop: str, n: int) -> str:
    return f"gid://shopify/DiscountAutomaticNode/{_shop_index(shop) * 100000 + n}"


async def seed_demo(conn: asyncpg.Connection, sim: SimulatorControl) -> DemoSummary:
    """Load the demo legacy data set (idempotent: ON CONFLICT DO NOTHING, fixed ids)."""
    rng = random.Random(42)
    summary = DemoSummary()
    now = utcnow()
    for shop in (*DEMO_SHOPS, UNINSTALLED_SHOP):
        token = f"shpat_demo_{shop.split('.')[0]}"
        installed = shop != UNINSTALLED_SHOP
        await sim.put_shop(shop, token=token if installed else None, plan="standard")
        if installed:
            await conn.execute(
                'INSERT INTO "session" (id, content, shop) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING',
                f"offline_{shop}",
                json.dumps({"accessToken": token, "shop": shop, "scope": "read_products,write_products"}),
                shop,
            )
        await conn.execute(
            'INSERT INTO active_stores (shop, "isActive") VALUES ($1, $2) ON CONFLICT (shop) DO NOTHING',
            shop,
            installed,
        )
        products = [
            {
                "id": _product_gid(shop, n),
                "title": f"Product {n}",
                "price": f"{rng.randint(5, 120)}.{rng.choice(['00', '50', '99'])}",
                "sku": f"SKU-{_shop_index(shop)}-{n}",
                "imageUrl": f"https://cdn.example.com/{_shop_index(shop)}/{n}.jpg",
                "inventoryQuantity": rng.randint(0, 40),
            }
            for n in range(1, 41)
        ]
        await sim.add_products(shop, products)
        metaobjects: list[dict[str, Any]] = []
        rows: list[tuple[str, str, str, str]] = []
        count = BUNDLES_PER_SHOP if installed else 3
        for n in range(1, count + 1):
            name = _NAMES[n % len(_NAMES)]
            picked = rng.sample(range(1, 41), k=rng.randint(2, 4))
            if n % 5 == 0:  # the object form some legacy records hold
                products_json = json.dumps(
                    [{"productId": _product_gid(shop, p), "quantity": rng.randint(1, 2)} for p in picked]
                )
            else:
                products_json = json.dumps([_product_gid(shop, p) for p in picked])
            discount = ["15", "10%", "12.5", "", "20", " 5 % "][n % 6]
            if n == 7:
                products_json = "[not json"  # unparsable: fails as invalid_legacy_data
            fields = {
                "bundle_name": name,
                "bundle_title": f"{name} — save now",
                "description": "" if n % 4 == 0 else f"A hand-picked set: {name}.",
                "created_at": "2025-06-01T10:00:00Z",
                "discount": discount,
                "products": products_json,
            }
            gid = _metaobject_gid(shop, n)
            if n != 11:  # n == 11: the metaobject is gone from Shopify
                metaobjects.append({"id": gid, "handle": f"bundle-{n}", "type": "product-bundles", "fields": fields})
            rows.append((gid, name, _discount_gid(shop, n), shop))
        if installed:
            # Handle written where the id belongs (resolvable with metaobjectByHandle).
            handle = f"imported-{_shop_index(shop)}"
            metaobjects.append(
                {
                    "id": _metaobject_gid(shop, 900),
                    "handle": handle,
                    "type": "product-bundles",
                    "fields": {
                        "bundle_name": "Imported bundle",
                        "bundle_title": "Imported bundle",
                        "discount": "10",
                        "products": json.dumps([_product_gid(shop, 1), _product_gid(shop, 2)]),
                    },
                }
            )
            rows.append((f"gid://shopify/Metaobject/{handle}", "Imported bundle", _discount_gid(shop, 900), shop))
            # The AI generator's metaobject, recorded in bundle_discount_id too.
            ai_gid = _metaobject_gid(shop, 950)
            metaobjects.append(
                {
                    "id": ai_gid,
                    "handle": "ai-fbt-1",
                    "type": "product-bundles",
                    "fields": {
                        "bundle_name": "AI FBT",
                        "bundle_title": "Frequently Bought Together",
                        "discount": "10",
                        "products": json.dumps([_product_gid(shop, 3), _product_gid(shop, 4)]),
                    },
                }
            )
            rows.append((ai_gid, "AI FBT", _discount_gid(shop, 950), shop))
            rule_id = f"cdemorule{_shop_index(shop):016d}"
            rows.append((f"auto-rule-{rule_id}", "Auto rule", _discount_gid(shop, 960), shop))
            await _seed_ai_and_rules(conn, shop, rule_id, ai_gid, now, rng)
            summary.ai_bundles += 6
            summary.auto_rules += 2
        if shop == DEMO_SHOPS[0]:
            # Both are primary keys of bundle_discount_id: at most one such row in the whole table.
            rows.append(("Auto Generated Bundle", "Auto Generated Bundle", _discount_gid(shop, 980), shop))
            rows.append(("gid://shopify/Metaobject/[object Object]", "Broken import", _discount_gid(shop, 970), shop))
            await conn.execute(
                "INSERT INTO auto_bundle_data VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (shop) DO NOTHING",
                shop,
                ["summer"],
                None,
                "10",
                "",
                "2",
                "15",
            )
        await sim.add_metaobjects(shop, metaobjects)
        await conn.executemany(
            'INSERT INTO bundle_discount_id VALUES ($1, $2, $3, $4) ON CONFLICT ("bundleId") DO NOTHING', rows
        )
        summary.shops.append(shop)
        summary.manual_rows += len(rows)
        summary.metaobjects += len(metaobjects)
    return summary


async def _seed_ai_and_rules(
    conn: asyncpg.Connection, shop: str, rule_id: str, ai_gid: str, now: Any, rng: random.Random
) -> None:
    idx = _shop_index(shop)
    ai_rows = []
    for n in range(1, 7):
        ai_rows.append(
            (
                f"cdemoai{idx:02d}{n:015d}",
                shop,
                _product_gid(shop, n),
                [_product_gid(shop, n + 10), _product_gid(shop, n + 11)],
                round(rng.uniform(0.3, 0.9), 3),
                round(rng.uniform(0.01, 0.1), 3),
                round(rng.uniform(1.0, 3.0), 3),
                n != 6,  # one inactive: migrated as PAUSED
                ai_gid if n == 1 else None,
                _discount_gid(shop, 950) if n == 1 else None,
            )
        )
    await conn.executemany(
        """INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support,
               lift, "isActive", "bundleMetaobjectId", "discountId")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING""",
        ai_rows,
    )
    await conn.execute(
        'INSERT INTO ai_fbt_config (shop, "isEnabled") VALUES ($1, true) ON CONFLICT (shop) DO NOTHING', shop
    )
    await conn.executemany(
        """INSERT INTO auto_bundle_rules (id, shop, name, collections, tags, "minPrice", "maxPrice", "minProducts",
               discount, "isActive", "updatedAt")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING""",
        [
            (rule_id, shop, "Summer collection", ["summer"], [], "10", "200", "2", "15", True, now),
            (f"cdemorulb{idx:016d}", shop, "Gifts under $50", [], ["gift"], "", "$50", "3", "10%", False, now),
        ],
    )
