"""Shopify write-through: create-then-commit with compensation, outbox-driven updates and
deletes, and reconciliation; against the real database and the Shopify simulator over HTTP.

Acceptance covered here: create / rename / change products / change discount / delete through the
API, after which shadow reads at sample rate 1 find zero mismatches and both stores answer alike;
a database failure after the Shopify create leaves no orphan metaobject or discount; a retried
request with the same Idempotency-Key never creates a second metaobject.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from app.api import shopify_sync as write_through_api
from app.schemas.bundles import BundleCreate, BundleOut
from app.services.bundles import writes as bundles_service
from app.services.bundles.reads import MANUAL_FIELDS, projection
from app.services.shopify_sync import shopify_objects
from app.services.shopify_sync import write_through as wt
from app.shopify.errors import ShopifyUserErrors
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    container_of,
    drain_shadow,
    eventually,
    flag_override,
    forget_legacy_cache,
    legacy_row,
    product_gid,
    register_shop,
)

PROBLEM = "application/problem+json"

#: Fast retries, so outage and recovery fit in a test.
WT_SETTINGS: dict[str, Any] = {
    "SHOPIFY_WRITE_THROUGH": True,
    "OUTBOX_POLL_INTERVAL_S": 0.05,
    "OUTBOX_BACKOFF_BASE_S": 0.05,
    "OUTBOX_BACKOFF_MAX_S": 0.5,
    "OUTBOX_MAX_ATTEMPTS": 3,
    "RECONCILE_ORPHAN_GRACE_S": 0,
    "RUN_WORKER": False,
}


@asynccontextmanager
async def wt_client(app_factory: Any, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A service instance with write-through on; the admin router mounted if app.main does not yet."""
    async with app_factory(**{**WT_SETTINGS, **overrides}) as client:
        app = client.app
        paths = {getattr(route, "path", None) for route in app.routes}
        if "/admin/outbox" not in paths:
            app.include_router(write_through_api.router)
        yield client


async def outbox_stats(client: httpx.AsyncClient, shop: str) -> dict[str, Any]:
    response = await client.get("/admin/outbox", params={"shop": shop})
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def wait_drained(client: httpx.AsyncClient, shop: str, timeout_s: float = 20.0) -> None:
    async def drained() -> bool:
        return (await outbox_stats(client, shop))["pending"] == 0

    assert await eventually(drained, timeout_s), await outbox_stats(client, shop)


async def shadow_outcomes(client: httpx.AsyncClient) -> dict[str, float]:
    """Totals of `sb_shadow_comparisons` by outcome, from /metrics."""
    text = (await client.get("/metrics")).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("sb_shadow_comparisons_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            totals[outcome] = totals.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def same_view(legacy: BundleOut, v2: BundleOut) -> bool:
    """Equal on what shadow reads compare for a manual bundle (status: the legacy app has no drafts)."""
    left, right = projection(legacy), projection(v2)
    return all(left[f] == right[f] for f in MANUAL_FIELDS)


def fields_of(metaobject: dict[str, Any]) -> dict[str, Any]:
    raw = metaobject["fields"]
    return {f["key"]: f["value"] for f in raw} if isinstance(raw, list) else dict(raw)


async def sim_metaobjects(sim: Any, shop: str) -> list[dict[str, Any]]:
    return await sim.list_metaobjects(shop, "product-bundles")


def valid_fields(name: str, created_at: str = "2026-01-01T00:00:00.000Z") -> dict[str, str]:
    """A complete, valid field set of the `product-bundles` definition (what Shopify accepts)."""
    return {
        "bundle_name": name,
        "bundle_title": name,
        "description": name,
        "created_at": created_at,
        "discount": "0",
        "products": json.dumps([product_gid()]),
    }


def wt_body(products: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A create body with neither metaobject nor discount: write-through makes both."""
    return bundle_body(metaobject=None, discount=None, products=products, **extra)


async def test_create_makes_metaobject_and_discount_then_commits_both_stores(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    products = [product_gid(), product_gid()]
    async with wt_client(app_factory) as client:
        response = await client.post(bundles_url(shop), json=wt_body(products, percent="15"))
        assert response.status_code == 201, response.text
        created = response.json()
    metaobject = created["shopifyMetaobjectId"]
    discount = created["discounts"][0]["shopifyDiscountId"]
    assert metaobject.startswith("gid://shopify/Metaobject/")
    assert discount.startswith("gid://shopify/DiscountAutomaticNode/")
    assert created["legacySync"] == "synced"
    row = await legacy_row(db, metaobject)
    assert row is not None and (row["bundleName"], row["discountId"], row["shop"]) == (created["name"], discount, shop)

    [stored] = await sim_metaobjects(sim, shop)
    assert stored["id"] == metaobject and stored["handle"].startswith("sb-")
    fields = fields_of(stored)
    # Exactly the definition's fields: products a JSON array of Product GIDs (bundle_body's quantity 2
    # cannot be held, and the response says so), discount an integer.
    assert fields == {
        "bundle_name": created["name"],
        "bundle_title": created["title"],
        "description": created["description"],
        "created_at": fields["created_at"],
        "discount": "15",
        "products": json.dumps(products),
    }
    assert created["legacyApproximations"] == ["quantity"]
    assert fields["created_at"].endswith("Z")
    [stored_discount] = await sim.list_discounts(shop)
    assert stored_discount["id"] == discount
    assert stored_discount["percentage"] == pytest.approx(0.15)
    assert sorted(stored_discount["productIds"]) == sorted(products)


async def test_plain_gid_layout_and_given_metaobject_untouched(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Quantity 1 everywhere: the legacy app's own layout (a list of GIDs). A body that names its
    metaobject is not written through at create (the metaobject is someone else's content)."""
    await register_shop(sim, db, shop)
    product = product_gid()
    body = wt_body([product])
    body["components"] = [{"shopifyProductId": product}]
    async with wt_client(app_factory) as client:
        created = (await client.post(bundles_url(shop), json=body)).json()
        given = await client.post(bundles_url(shop), json=bundle_body())
        assert given.status_code == 201
    [stored] = await sim_metaobjects(sim, shop)
    assert stored["id"] == created["shopifyMetaobjectId"]
    assert json.loads(fields_of(stored)["products"]) == [product]
    assert len(await sim.list_discounts(shop)) == 1


async def read_both(client: httpx.AsyncClient, shop: str, bundle_id: str) -> tuple[BundleOut, BundleOut]:
    """The bundle as the legacy store and as the V2 store answer it."""
    forget_legacy_cache(client, shop)
    legacy = await client.get(bundles_url(shop, quote(bundle_id, safe="")))
    assert legacy.status_code == 200, legacy.text
    assert legacy.headers["x-bundle-read-source"] == "legacy"
    async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
        v2 = await client.get(bundles_url(shop, bundle_id))
        assert v2.headers["x-bundle-read-source"] == "v2"
    return BundleOut.model_validate(legacy.json()), BundleOut.model_validate(v2.json())


async def test_api_lifecycle_keeps_legacy_and_v2_reads_equal(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Acceptance: create, rename, change products, change discount, delete through the API; then
    shadow reads at sample rate 1 (both directions) record zero mismatches."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        ids = []
        for _ in range(3):
            response = await client.post(bundles_url(shop), json=wt_body([product_gid(), product_gid()]))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        renamed, reproduct, rediscount = ids
        doomed = (await client.post(bundles_url(shop), json=wt_body())).json()

        steps = [
            (renamed, {"name": "Renamed bundle", "title": "New title", "description": "  "}),
            (reproduct, {"components": [{"shopifyProductId": product_gid(), "quantity": 3}]}),
            (
                rediscount,
                {"pricingRules": [{"name": "Bundle Discount", "discountType": "PERCENTAGE", "discountValue": "12.5"}]},
            ),
            (renamed, {"components": [{"shopifyProductId": product_gid()}, {"shopifyProductId": product_gid()}]}),
        ]
        for bundle_id, patch in steps:
            response = await client.patch(bundles_url(shop, bundle_id), json=patch)
            assert response.status_code == 200, response.text
        assert (await client.delete(bundles_url(shop, doomed["id"]))).status_code == 204
        await wait_drained(client, shop)

        # The deleted bundle's Shopify objects went with it.
        assert {m["id"] for m in await sim_metaobjects(sim, shop)} == {
            (await db.fetchval('SELECT "shopifyMetaobjectId" FROM "Bundle" WHERE id = $1', i)) for i in ids
        }
        assert doomed["discounts"][0]["shopifyDiscountId"] not in {d["id"] for d in await sim.list_discounts(shop)}
        assert await legacy_row(db, doomed["shopifyMetaobjectId"]) is None
        discount = next(d for d in await sim.list_discounts(shop) if d["title"])
        assert discount is not None
        rediscounted = (await client.get(bundles_url(shop, rediscount))).json()
        [sim_discount] = [
            d for d in await sim.list_discounts(shop) if d["id"] == rediscounted["discounts"][0]["shopifyDiscountId"]
        ]
        assert sim_discount["percentage"] == pytest.approx(0.125)

        # Both stores answer alike, field by field of the shadow projection ...
        for bundle_id in ids:
            legacy, v2 = await read_both(client, shop, bundle_id)
            assert same_view(legacy, v2), (bundle_id, projection(legacy), projection(v2))

        # ... and shadow reads at sample rate 1, in both directions, record no mismatch.
        before = await db.fetchval("SELECT count(*) FROM sb_shadow_mismatches WHERE shop = $1", shop)
        outcomes_before = await shadow_outcomes(client)
        async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
            forget_legacy_cache(client, shop)
            for engine in (False, True):
                async with flag_override(client, "V2_BUNDLE_ENGINE", shop, engine):
                    listed = await client.get(bundles_url(shop))
                    assert listed.status_code == 200, listed.text
                    assert len(listed.json()["items"]) == 3
                    for bundle_id in ids:
                        assert (await client.get(bundles_url(shop, bundle_id))).status_code == 200
                    await drain_shadow(client)
        after = await db.fetchval("SELECT count(*) FROM sb_shadow_mismatches WHERE shop = $1", shop)
        rows = await db.fetch("SELECT fields, legacy, v2 FROM sb_shadow_mismatches WHERE shop = $1", shop)
        assert after == before == 0, [dict(r) for r in rows]
        outcomes = await shadow_outcomes(client)
        compared = {k: outcomes.get(k, 0.0) - outcomes_before.get(k, 0.0) for k in ("match", "mismatch", "error")}
        assert compared == {"match": 2 * (3 + 3), "mismatch": 0, "error": 0}, compared  # per store: 3 listed + 3 gets


async def test_database_failure_after_shopify_create_leaves_no_orphans_and_retry_makes_one(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Acceptance: the transaction dies after the metaobject and discount exist in Shopify (the
    connection is killed mid-transaction): both are deleted again, nothing is in the database, and
    the client's retry with the same Idempotency-Key creates exactly one of each."""
    await register_shop(sim, db, shop)
    killed: list[int] = []

    async def kill(target_shop: str, backend_pid: int) -> None:
        if target_shop == shop and not killed:
            assert len(await sim_metaobjects(sim, shop)) == 1  # Shopify side done before the commit
            await db.execute("SELECT pg_terminate_backend($1)", backend_pid)
            killed.append(backend_pid)

    body = wt_body()
    async with wt_client(app_factory) as client:
        container_of(client).fault_hooks.after_v2_write = kill
        try:
            failed = await client.post(bundles_url(shop), json=body, headers={"Idempotency-Key": "wt-kill-1"})
        finally:
            container_of(client).fault_hooks.after_v2_write = None
        assert failed.status_code == 503, failed.text
        assert failed.headers["content-type"].startswith(PROBLEM)
        assert killed
        assert await sim_metaobjects(sim, shop) == []
        assert await sim.list_discounts(shop) == []
        assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 0

        first = await client.post(bundles_url(shop), json=body, headers={"Idempotency-Key": "wt-kill-1"})
        assert first.status_code == 201, first.text
        again = await client.post(bundles_url(shop), json=body, headers={"Idempotency-Key": "wt-kill-1"})
        assert again.status_code == 201 and again.json() == first.json()
        other = await client.post(bundles_url(shop), json=body, headers={"Idempotency-Key": "wt-kill-1-other"})
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    metaobjects = await sim_metaobjects(sim, shop)
    assert sorted(m["id"] for m in metaobjects) == sorted(
        [first.json()["shopifyMetaobjectId"], other.json()["shopifyMetaobjectId"]]
    )
    assert len(await sim.list_discounts(shop)) == 2


async def test_compensation_during_a_shopify_outage_is_finished_by_the_outbox(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """The transaction fails and Shopify is down when compensation runs: a durable outbox row deletes
    the objects once Shopify is back, so still no orphan."""
    await register_shop(sim, db, shop)

    async def kill(target_shop: str, backend_pid: int) -> None:
        if target_shop == shop:
            await sim.set_faults(shop, error5xx=1.0)
            await db.execute("SELECT pg_terminate_backend($1)", backend_pid)

    async with wt_client(app_factory) as client:
        container_of(client).fault_hooks.after_v2_write = kill
        try:
            failed = await client.post(bundles_url(shop), json=wt_body())
        finally:
            container_of(client).fault_hooks.after_v2_write = None
            await sim.set_faults(shop, error5xx=0.0)
        assert failed.status_code == 503, failed.text
        [row] = await db.fetch("SELECT op, payload::text AS payload FROM sb_outbox WHERE shop = $1", shop)
        assert row["op"] == "delete" and json.loads(row["payload"])["compensation"] is True
        await wait_drained(client, shop)
    assert await sim_metaobjects(sim, shop) == []
    assert await sim.list_discounts(shop) == []


async def test_retry_after_lost_compensation_reuses_the_metaobject(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """The first attempt's metaobject survived (its compensation never ran, e.g. the process died):
    the retry with the same key finds its handle taken by an unbundled metaobject and overwrites it."""
    await register_shop(sim, db, shop)
    body = wt_body()
    async with wt_client(app_factory) as client:
        container = container_of(client)
        request_hash = bundles_service._request_hash(BundleCreate.model_validate(body))
        handle = wt.handle_for(shop, "key", "wt-leftover", request_hash)
        leftover = await wt.upsert_metaobject(container.shopify, shop, handle, valid_fields("stale"), "DRAFT")
        created = await client.post(bundles_url(shop), json=body, headers={"Idempotency-Key": "wt-leftover"})
        assert created.status_code == 201, created.text
    assert created.json()["shopifyMetaobjectId"] == leftover
    [stored] = await sim_metaobjects(sim, shop)
    assert fields_of(stored)["bundle_name"] == body["name"]


async def test_discount_user_error_compensates_the_metaobject(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """userErrors are failures: a refused discount (percentage outside 0..1) deletes the metaobject
    that was created for it, and the error carries Shopify's userErrors."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        container = container_of(client)
        state = {"title": "Bad", "percentage": 1.5, "products": [product_gid()]}
        with pytest.raises(ShopifyUserErrors) as raised:
            await wt.create_objects(container, shop, "sb-userror-test", valid_fields("x"), state, status="DRAFT")
        assert raised.value.user_errors[0]["code"] == "VALUE_OUTSIDE_RANGE"
    assert await sim_metaobjects(sim, shop) == []
    assert await sim.list_discounts(shop) == []


async def test_shopify_down_at_create_is_a_503_and_keeps_nothing(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        await sim.set_faults(shop, error5xx=1.0)
        try:
            response = await client.post(bundles_url(shop), json=wt_body())
        finally:
            await sim.set_faults(shop, error5xx=0.0)
        assert response.status_code == 503, response.text
        assert response.json()["type"].endswith("shopify-unavailable")
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 0
    assert await sim_metaobjects(sim, shop) == []


async def test_write_through_off_or_dual_write_off_touches_no_shopify(
    app_factory: Any, client: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    plain = await client.post(bundles_url(shop), json=wt_body())  # session client: write-through off
    assert plain.status_code == 201 and plain.json()["shopifyMetaobjectId"] is None
    async with wt_client(app_factory) as wt_service:
        async with flag_override(wt_service, "DUAL_WRITE", shop, False):
            off = await wt_service.post(bundles_url(shop), json=wt_body())
        assert off.status_code == 201 and off.json()["shopifyMetaobjectId"] is None
        assert (await wt_service.patch(bundles_url(shop, off.json()["id"]), json={"name": "x"})).status_code == 200
        assert (await outbox_stats(wt_service, shop))["pending"] == 0
    assert await sim_metaobjects(sim, shop) == []


# --------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------


async def reconcile(client: httpx.AsyncClient, shop: str, *, dry_run: bool = False) -> dict[str, Any]:
    response = await client.post("/admin/reconciliation", json={"shops": [shop], "dryRun": dry_run})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    assert report["errors"] == [], report
    return report


async def test_reconciliation_repairs_drift_by_the_documented_rule(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        container = container_of(client)
        edited = (await client.post(bundles_url(shop), json=wt_body())).json()
        lost_discount = (await client.post(bundles_url(shop), json=wt_body())).json()
        untouched = (await client.post(bundles_url(shop), json=wt_body())).json()
        # Drift made behind the service's back: the legacy app edits a metaobject, a merchant deletes
        # a discount, and an orphan metaobject of ours is left over from a lost compensation.
        await shopify_objects.update_metaobject(
            container.shopify,
            shop,
            edited["shopifyMetaobjectId"],
            {"bundle_title": "Edited in the legacy app", "discount": "30"},
        )
        await wt.delete_discount(container.shopify, shop, lost_discount["discounts"][0]["shopifyDiscountId"])
        orphan = await wt.upsert_metaobject(
            container.shopify, shop, "sb-0rphan0000000000", valid_fields("o", "2020-01-01T00:00:00Z"), "DRAFT"
        )

        dry = await reconcile(client, shop, dry_run=True)
        kinds = sorted((c["kind"], c["action"], c["applied"]) for c in dry["changes"])
        assert kinds == [
            ("discount_missing", "recreate_discount", False),
            ("metaobject_drift", "pull_from_shopify", False),
            ("orphan_metaobject", "delete_orphan", False),
        ]
        drift = next(c for c in dry["changes"] if c["kind"] == "metaobject_drift")
        assert drift["bundleId"] == edited["id"] and set(drift["fields"]) == {"bundle_title", "discount"}
        assert drift["fields"]["bundle_title"] == {"v2": edited["title"], "shopify": "Edited in the legacy app"}
        assert (dry["checked"], dry["inSync"], dry["changed"]) == (3, 1, 0)
        assert orphan in {m["id"] for m in await sim_metaobjects(sim, shop)}  # dry run changed nothing

        # Legacy wins (V2_BUNDLE_ENGINE off): V2 takes the metaobject's content; the discount is recreated.
        applied = await reconcile(client, shop)
        assert all(c["applied"] for c in applied["changes"]) and applied["changed"] == 3
        pulled = (await client.get(bundles_url(shop, edited["id"]))).json()
        async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
            pulled = (await client.get(bundles_url(shop, edited["id"]))).json()
            repaired = (await client.get(bundles_url(shop, lost_discount["id"]))).json()
        assert pulled["title"] == "Edited in the legacy app"
        assert pulled["pricingRules"][0]["discountValue"] == "30.00"
        new_discount = repaired["discounts"][0]["shopifyDiscountId"]
        assert new_discount != lost_discount["discounts"][0]["shopifyDiscountId"]
        assert new_discount in {d["id"] for d in await sim.list_discounts(shop)}
        assert (await legacy_row(db, lost_discount["shopifyMetaobjectId"]) or {}).get("discountId") == new_discount
        assert orphan not in {m["id"] for m in await sim_metaobjects(sim, shop)}
        await wait_drained(client, shop)

        # V2 wins (V2_BUNDLE_ENGINE on): Shopify is overwritten through the outbox.
        async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
            await shopify_objects.update_metaobject(
                container.shopify, shop, untouched["shopifyMetaobjectId"], {"bundle_title": "Vandalised"}
            )
            pushed = await reconcile(client, shop)
            assert [(c["kind"], c["action"], c["bundleId"]) for c in pushed["changes"]] == [
                ("metaobject_drift", "push_to_shopify", untouched["id"])
            ]
            await wait_drained(client, shop)
            stored = await sim.get_metaobject(shop, untouched["shopifyMetaobjectId"])
            assert fields_of(stored)["bundle_title"] == untouched["title"]
            final = await reconcile(client, shop)
        assert final["changes"] == [] and final["inSync"] == final["checked"] == 3


async def test_reconciliation_recreates_a_missing_metaobject(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        created = (await client.post(bundles_url(shop), json=wt_body())).json()
        assert await sim.delete_metaobject(shop, created["shopifyMetaobjectId"])
        report = await reconcile(client, shop)
        assert [(c["kind"], c["applied"]) for c in report["changes"]] == [("metaobject_missing", True)]
        await wait_drained(client, shop)
        legacy, v2 = await read_both(client, shop, created["id"])
    assert v2.shopifyMetaobjectId not in (None, created["shopifyMetaobjectId"])
    assert same_view(legacy, v2)
    assert [m["id"] for m in await sim_metaobjects(sim, shop)] == [v2.shopifyMetaobjectId]
