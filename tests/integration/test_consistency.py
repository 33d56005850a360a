"""The rollout's evidence: storefront shadow reads, confirmed vs transient mismatches, the noise
baseline, dual-write verification and `GET /admin/shops/{shop}/consistency`.

Real PostgreSQL and the Shopify simulator over HTTP. Each test uses its own shop, so the figures
it reads are its own; one service instance with a short re-check delay serves the module.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from app.core.security import sign_app_proxy_params
from app.core.time import utcnow
from app.repos import consistency as consistency_repo
from app.repos import storefront as storefront_repo
from app.rules.consistency import NOISE_OUTCOMES, SHADOW_OUTCOMES, wilson_upper
from app.services.bundles.reads import get_shadow_runner
from app.services.consistency import verify_shop
from tests.conftest import API_SECRET
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    container_of,
    drain_shadow,
    flag_override,
    forget_legacy_cache,
    metaobject_gid,
    metaobject_item,
    product_gid,
    register_shop,
    retitled_metaobject,
)

RECHECK_S = 1.5  # long enough for the racing PATCH to land first on a loaded machine
STOREFRONT = "GET /proxy/bundles-for-product"


@pytest.fixture(scope="module")
async def evidence(app_factory: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_factory(CONSISTENCY_RECHECK_DELAY_S=RECHECK_S, CONSISTENCY_NOISE_EVERY=10) as c:
        yield c


def signed(shop: str, product: str) -> list[tuple[str, Any]]:
    items = [
        ("shop", shop),
        ("logged_in_customer_id", ""),
        ("path_prefix", "/apps/proxy"),
        ("timestamp", str(int(time.time()))),
        ("product_id", product),
    ]
    return [*items, ("signature", sign_app_proxy_params(items, API_SECRET))]


async def seeded(client: httpx.AsyncClient, sim: Any, shop: str, *, title: str = "Summer set") -> dict[str, Any]:
    """A dual-written bundle whose metaobject exists in the simulator (both stores agree)."""
    metaobject, products = metaobject_gid(), [product_gid(), product_gid()]
    name = f"Bundle {metaobject[-6:]}"
    await sim.add_metaobjects(
        shop, [metaobject_item(metaobject, name=name, title=title, discount="15", products=products)]
    )
    body = bundle_body(name=name, metaobject=metaobject, products=products, percent="15")
    body["title"] = title
    body["status"] = "ACTIVE"  # the storefront shows active bundles only
    body["components"] = [{"shopifyProductId": p} for p in products]
    response = await client.post(bundles_url(shop), json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def rows(db: asyncpg.Connection, shop: str, endpoint: str | None = None) -> list[dict[str, Any]]:
    found = await db.fetch(
        "SELECT * FROM sb_consistency_comparisons WHERE shop = $1 AND ($2::text IS NULL OR endpoint = $2) ORDER BY id",
        shop,
        endpoint,
    )
    out = []
    for record in found:
        row = dict(record)
        for side in ("legacy", "v2"):
            row[side] = None if row[side] is None else json.loads(row[side])
        out.append(row)
    return out


def outcomes(found: list[dict[str, Any]]) -> list[str]:
    return [r["outcome"] for r in found]


async def report(client: httpx.AsyncClient, shop: str) -> dict[str, Any]:
    response = await client.get(f"/admin/shops/{shop}/consistency")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_storefront_reads_are_shadowed_off_the_response_path(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    client = evidence
    await register_shop(sim, db, shop)
    bundle = await seeded(client, sim, shop)
    product = bundle["components"][0]["shopifyProductId"]
    path = "/proxy/bundles-for-product"

    plain = await client.get(path, params=signed(shop, product))
    assert plain.status_code == 200 and len(plain.json()) == 1
    assert await rows(db, shop, STOREFRONT) == []  # not sampled: nothing compared

    async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
        shadowed = await client.get(path, params=signed(shop, product))
        assert shadowed.content == plain.content and shadowed.headers["x-bundle-read-source"] == "legacy"
        await drain_shadow(client)
        async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
            from_v2 = await client.get(path, params=signed(shop, product))
            assert from_v2.headers["x-bundle-read-source"] == "v2"
            assert from_v2.json() == plain.json()
            await client.get(path, params=signed(shop, product))  # a read-model cache hit: sampled too
            await drain_shadow(client)

        found = await rows(db, shop, STOREFRONT)
        shadow_rows = [r for r in found if r["outcome"] in ("match", "confirmed", "transient")]
        assert outcomes(shadow_rows) == ["match", "match", "match"]
        assert all(r["legacyMs"] is not None and r["v2Ms"] is not None for r in shadow_rows)
        assert all(r["bundleKey"] == product for r in found)
        assert outcomes(found).count("noise_match") == 1  # the first comparison of the shop, then every 10th

        # Content drift in Shopify: the legacy answer's title changes, V2 keeps its own; it persists.
        forget_legacy_cache(client, shop)
        item = retitled_metaobject(bundle, "Edited in Shopify")
        await sim.add_metaobjects(shop, [item])
        drifted = await client.get(path, params=signed(shop, product))
        assert drifted.json()[0]["title"] == "Edited in Shopify"
        await drain_shadow(client)

    confirmed = [r for r in await rows(db, shop, STOREFRONT) if r["outcome"] == "confirmed"]
    assert len(confirmed) == 1
    assert confirmed[0]["fields"] == [f"bundles.{bundle['shopifyMetaobjectId']}.title"]
    body = await report(client, shop)
    assert body["shadow"] == {"comparisons": 4, "confirmed": 1, "transient": 0}
    assert body["latestDiffs"][0]["fields"] == [f"bundles.{bundle['shopifyMetaobjectId']}.title"]
    assert body["reads"]["v2Reads"] == 4 and body["reads"]["v2Errors"] == 0
    assert body["reads"]["v2P99Ms"] is not None and body["reads"]["legacyP99Ms"] is not None


async def test_a_patch_racing_the_reads_is_transient_a_lasting_difference_confirmed(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    client = evidence
    await register_shop(sim, db, shop)
    raced = await seeded(client, sim, shop)
    lasting = await seeded(client, sim, shop)
    await drain_shadow(client)  # the verifications after commit see both stores alike
    for bundle, name in ((raced, "Renamed mid-write"), (lasting, "Renamed for good")):
        # The legacy row changes first, as if the write were half-way between the two stores.
        await db.execute(
            'UPDATE bundle_discount_id SET "bundleName" = $2 WHERE "bundleId" = $1', bundle["shopifyMetaobjectId"], name
        )

    async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
        for bundle in (raced, lasting):
            url = bundles_url(shop, quote(bundle["shopifyMetaobjectId"], safe=""))
            assert (await client.get(url)).status_code == 200
        # The write completes (both stores) before the re-check: the first difference was a race.
        patched = await client.patch(bundles_url(shop, raced["id"]), json={"name": "Renamed mid-write"})
        assert patched.status_code == 200, patched.text
        await drain_shadow(client)

    by_key = {r["bundleKey"]: r for r in await rows(db, shop) if r["outcome"] in ("match", "confirmed", "transient")}
    assert by_key[raced["shopifyMetaobjectId"]]["outcome"] == "transient"
    assert by_key[raced["shopifyMetaobjectId"]]["fields"] == ["name"]
    assert by_key[lasting["shopifyMetaobjectId"]]["outcome"] == "confirmed"
    assert by_key[lasting["shopifyMetaobjectId"]]["fields"] == ["name"]
    assert by_key[lasting["shopifyMetaobjectId"]]["legacy"]["name"] == "Renamed for good"

    body = await report(client, shop)
    assert body["shadow"] == {"comparisons": 2, "confirmed": 1, "transient": 1}
    # Only the confirmed one counts, and the dual writes were verified after commit (3 of them).
    assert body["dualWrite"] == {"verified": 3, "divergent": 0}
    assert body["mismatchRate"] == pytest.approx(1 / 5)
    assert body["mismatchUpperBound"] == pytest.approx(wilson_upper(1, 5))
    logged = await client.get("/admin/shadow-mismatches", params={"shop": shop})
    assert [m["bundleKey"] for m in logged.json()["items"]] == [lasting["shopifyMetaobjectId"]]


async def test_noise_baseline_is_at_least_five_percent_of_the_comparisons(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    client = evidence
    await register_shop(sim, db, shop)
    bundle = await seeded(client, sim, shop)
    url = bundles_url(shop, quote(bundle["shopifyMetaobjectId"], safe=""))
    async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
        for _ in range(25):
            assert (await client.get(url)).status_code == 200
            await drain_shadow(client)  # one at a time: the runner's bound drops a burst beyond it
    body = await report(client, shop)
    assert body["shadow"]["comparisons"] == 25
    assert body["noise"]["comparisons"] == 3  # comparisons 1, 11 and 21
    assert body["noise"]["comparisons"] * 20 >= body["shadow"]["comparisons"]
    assert body["noise"]["mismatches"] == 0 and body["noise"]["rate"] == 0.0
    assert body["noise"]["upperBound"] == pytest.approx(wilson_upper(0, 3))
    assert body["mismatchRate"] == 0.0


async def test_dual_write_verification_finds_a_divergence_planted_in_the_legacy_table(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    client = evidence
    await register_shop(sim, db, shop)
    clean = await seeded(client, sim, shop)
    planted = await seeded(client, sim, shop)
    not_representable = await client.post(bundles_url(shop), json=bundle_body(metaobject=None, discount=None))
    assert not_representable.json()["legacySync"] == "not_representable"
    await drain_shadow(client)
    after_commit = await rows(db, shop, "dual-write verification")
    assert sorted(outcomes(after_commit)) == ["verified", "verified"]  # the unrepresentable one is not compared

    await db.execute(
        'UPDATE bundle_discount_id SET "bundleName" = $2, "discountId" = $3 WHERE "bundleId" = $1',
        planted["shopifyMetaobjectId"],
        "Planted by SQL",
        "gid://shopify/DiscountAutomaticNode/1",
    )
    assert await verify_shop(container_of(client), shop) == 1

    found = await rows(db, shop, "dual-write verification")
    divergent = [r for r in found if r["outcome"] == "divergent"]
    assert len(divergent) == 1
    assert divergent[0]["bundleKey"] == planted["shopifyMetaobjectId"]
    assert divergent[0]["fields"] == ["discountId", "name"]
    assert [r["bundleKey"] for r in found[2:] if r["outcome"] == "verified"] == [clean["shopifyMetaobjectId"]]

    body = await report(client, shop)
    assert body["dualWrite"] == {"verified": 3, "divergent": 1}
    assert body["latestDiffs"][0]["outcome"] == "divergent"
    assert body["latestDiffs"][0]["fields"] == ["discountId", "name"]
    assert body["latestDiffs"][0]["legacy"]["name"] == "Planted by SQL"
    assert body["mismatchRate"] == pytest.approx(1 / 4)

    # A PATCH re-synchronises the legacy row: the next verification is clean again.
    assert (await client.patch(bundles_url(shop, planted["id"]), json={"name": planted["name"]})).status_code == 200
    assert await verify_shop(container_of(client), shop) == 0


async def test_consistency_endpoint_contract(evidence: httpx.AsyncClient, shop: str) -> None:
    client = evidence
    empty = await report(client, shop)
    assert empty["shadow"] == {"comparisons": 0, "confirmed": 0, "transient": 0}
    assert empty["mismatchRate"] is None and empty["mismatchUpperBound"] == 1.0
    assert empty["sinceSource"] == "window" and empty["latestDiffs"] == []
    since = await client.get(f"/admin/shops/{shop}/consistency", params={"since": "2026-01-01T00:00:00Z"})
    assert since.status_code == 200 and since.json()["sinceSource"] == "query"
    assert (await client.get(f"/admin/shops/{shop}/consistency", headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/admin/shops/not-a-shop/consistency")).status_code == 422
    for bad in ("yesterday", "0.5", "1700000000", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+05:00"):
        response = await client.get(f"/admin/shops/{shop}/consistency", params={"since": bad})
        assert response.status_code == 422, (bad, response.text)
    naive = await client.get(f"/admin/shops/{shop}/consistency", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 200 and naive.json()["since"] == "2026-01-01T00:00:00Z"


async def test_a_rollback_lists_what_only_v2_holds_and_needs_confirmation(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Immediate rollback: 409 with the list while a shop reading from V2 holds V2-only data written
    since it left legacy reads; `confirm: true` proceeds; nothing is deleted."""
    client = evidence
    await register_shop(sim, db, shop)
    before_v2 = await client.post(bundles_url(shop), json=bundle_body(metaobject=None, discount=None))
    assert before_v2.status_code == 201  # written while the shop read from legacy: not listed
    async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
        lone = await client.post(bundles_url(shop), json=bundle_body(metaobject=None, discount=None, status="ACTIVE"))
        assert lone.json()["legacySync"] == "not_representable"
        products = [product_gid()]
        approximated = bundle_body(status="ACTIVE", products=products, percent="12.5")
        approximated["components"] = [{"shopifyProductId": products[0], "quantity": 2}]
        approx = await client.post(bundles_url(shop), json=approximated)
        assert approx.status_code == 201, approx.text
        faithful = await seeded(client, sim, shop)  # ACTIVE, integer percent, one of each: nothing lost

        preview = await client.get("/admin/rollback/preview")
        assert preview.status_code == 200, preview.text
        mine = {s["shop"]: s for s in preview.json()["shops"]}[shop]
        reasons = {b["id"]: b["reasons"] for b in mine["bundles"]}
        assert reasons == {
            lone.json()["id"]: ["not_representable"],
            approx.json()["id"]: ["quantity", "fractional_percentage"],
        }
        assert faithful["id"] not in reasons and before_v2.json()["id"] not in reasons
        assert mine["count"] == 2 and mine["readsFromV2Since"] is not None

        refused = await client.post("/admin/rollback", json={"reason": "incident"})
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"].endswith("v2-only-data")
        assert {s["shop"]: s["count"] for s in problem["v2Only"]["shops"]}[shop] == 2
        engine = (await client.get("/admin/flags/V2_BUNDLE_ENGINE")).json()
        assert engine["shopOverrides"].get(shop) is True, "refused: nothing changed"

        done = await client.post("/admin/rollback", json={"reason": "incident", "confirm": True})
        assert done.status_code == 200, done.text
        assert {s["shop"]: s["count"] for s in done.json()["v2Only"]["shops"]}[shop] == 2
        assert done.json()["stage"] == "dualwrite"
        for bundle_id in (lone.json()["id"], approx.json()["id"]):
            assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE id = $1', bundle_id) == 1
        # Reads are on legacy for the shop now: nothing left to list, no confirmation needed.
        assert shop not in {s["shop"] for s in (await client.get("/admin/rollback/preview")).json()["shops"]}


async def test_a_failed_sampled_v2_read_counts_in_the_error_rate(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = evidence
    await register_shop(sim, db, shop)
    bundle = await seeded(client, sim, shop)
    product = bundle["components"][0]["shopifyProductId"]

    async def lost(*_: Any) -> Any:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    async with (
        flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0),
        flag_override(client, "V2_BUNDLE_ENGINE", shop, True),
    ):
        ok = await client.get("/proxy/bundles-for-product", params=signed(shop, product))
        assert ok.status_code == 200
        await drain_shadow(client)
        monkeypatch.setattr(storefront_repo, "fetch_legacy_shape_for_product", lost)
        container_of(client).storefront_cache.invalidate(shop)
        failed = await client.get("/proxy/bundles-for-product", params=signed(shop, product))
        assert failed.status_code == 503, failed.text
        await drain_shadow(client)
    reads = (await report(client, shop))["reads"]
    assert (reads["v2Reads"], reads["v2Errors"]) == (2, 1)
    assert reads["v2ErrorRate"] == pytest.approx(0.5)


async def test_the_comparison_does_not_delay_the_answer(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """V2 answers; the legacy read of the comparison takes 800 ms at Shopify: the answer does not wait."""
    client = evidence
    await register_shop(sim, db, shop)
    bundle = await seeded(client, sim, shop)
    product = bundle["components"][0]["shopifyProductId"]
    runner = get_shadow_runner(container_of(client))
    await drain_shadow(client)  # the verification after commit reads the legacy store too
    async with (
        flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0),
        flag_override(client, "V2_BUNDLE_ENGINE", shop, True),
    ):
        forget_legacy_cache(client, shop)
        await sim.set_faults(shop, latency_ms=800)
        try:
            started = time.perf_counter()
            answer = await client.get("/proxy/bundles-for-product", params=signed(shop, product))
            took = time.perf_counter() - started
            assert answer.status_code == 200 and answer.headers["x-bundle-read-source"] == "v2"
            assert took < 0.4, took
            assert runner.in_flight >= 1  # the comparison is still reading the legacy store
            await drain_shadow(client)
        finally:
            await sim.set_faults(shop, latency_ms=0)
    found = [r for r in await rows(db, shop, STOREFRONT) if r["outcome"] == "match"]
    assert len(found) == 1 and found[0]["legacyMs"] >= 800 and found[0]["v2Ms"] < 400


async def test_a_stale_metaobject_cache_is_transient_not_confirmed(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Shopify and V2 agree, but this replica's metaobject cache still holds the copy from before a
    write-through another replica delivered: the re-check reads past the cache and finds no difference."""
    client = evidence
    await register_shop(sim, db, shop)
    bundle = await seeded(client, sim, shop)
    url = bundles_url(shop, quote(bundle["shopifyMetaobjectId"], safe=""))
    await drain_shadow(client)
    assert (await client.get(url)).json()["title"] == "Summer set"  # cached now
    item = retitled_metaobject(bundle, "New title")
    await sim.add_metaobjects(shop, [item])
    await db.execute('UPDATE "Bundle" SET title = $2 WHERE id = $1', bundle["id"], "New title")
    async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
        assert (await client.get(url)).json()["title"] == "Summer set"  # the stale copy answers
        await drain_shadow(client)
    found = [r for r in await rows(db, shop) if r["outcome"] in ("match", "confirmed", "transient")]
    assert [(r["outcome"], r["fields"]) for r in found] == [("transient", ["title"])]


async def test_a_bundle_the_legacy_tables_cannot_hold_is_no_storefront_mismatch(
    evidence: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """A V2 bundle with a metaobject but no discount has no legacy row: the V2 storefront shows it, the
    legacy one never did. That is V2-only data (the rollback lists it), not a difference to confirm."""
    client = evidence
    await register_shop(sim, db, shop)
    bundle = await seeded(client, sim, shop)
    product = bundle["components"][0]["shopifyProductId"]
    body = bundle_body(discount=None, products=[product], status="ACTIVE")
    lone = await client.post(bundles_url(shop), json=body)
    assert lone.json()["legacySync"] == "not_representable"
    async with (
        flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0),
        flag_override(client, "V2_BUNDLE_ENGINE", shop, True),
    ):
        answer = await client.get("/proxy/bundles-for-product", params=signed(shop, product))
        assert {item["id"] for item in answer.json()} == {bundle["shopifyMetaobjectId"], body["shopifyMetaobjectId"]}
        await drain_shadow(client)
    found = [r for r in await rows(db, shop, STOREFRONT) if r["outcome"] in ("match", "confirmed", "transient")]
    assert [r["outcome"] for r in found] == ["match"]


async def test_a_shops_figures_are_read_from_the_index_alone(db: asyncpg.Connection) -> None:
    """The rollout driver runs the figures query for every observed shop on every tick, over all of
    its comparisons since its stage began: it must not fetch each of those rows from the heap
    (alembic 0009). Also checks that the covering index answers what the plain one did."""
    shop = f"figures-{time.time_ns()}.myshopify.com"
    await db.execute(
        """
        INSERT INTO sb_consistency_comparisons (shop, endpoint, outcome, "legacyMs", "v2Ms", "v2Error", "createdAt")
        SELECT CASE WHEN g % 4 = 0 THEN $1 ELSE $1 || '-other' || (g % 7) END, 'storefront',
               (ARRAY['match', 'confirmed', 'transient', 'noise_match', 'verified'])[1 + g % 5],
               g % 97, g % 89, g % 50 = 0, CURRENT_TIMESTAMP - (g || ' seconds')::interval
        FROM generate_series(1, 4000) AS g
        """,
        shop,
    )
    await db.execute("VACUUM ANALYZE sb_consistency_comparisons")
    since = utcnow() - timedelta(hours=1)
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = json.loads(
            await db.fetchval(
                f"EXPLAIN (FORMAT JSON) {consistency_repo.FIGURES_SQL}",
                shop,
                since,
                list(SHADOW_OUTCOMES),
                list(NOISE_OUTCOMES),
            )
        )[0]["Plan"]
    scans = [(n["Node Type"], n.get("Index Name")) for n in _plan_nodes(plan) if "Scan" in n["Node Type"]]
    assert scans == [("Index Only Scan", "sb_consistency_comparisons_shop_createdAt_figures_idx")], scans
    figures = await consistency_repo.figures(db, shop, since)
    expected = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE outcome = 'confirmed') AS confirmed,
                  count(*) FILTER (WHERE "v2Error") AS errors
           FROM sb_consistency_comparisons WHERE shop = $1 AND "createdAt" >= $2""",
        shop,
        since,
    )
    assert (figures["confirmed"], figures["v2_errors"]) == (expected["confirmed"], expected["errors"])
    assert figures["confirmed"] > 0 and figures["v2_errors"] > 0


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", ()) for n in _plan_nodes(child))]
