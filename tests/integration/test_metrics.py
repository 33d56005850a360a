"""`GET /metrics`: Prometheus text with every metric the issue names, fed by real requests.

Prometheus shows a series only once it has a sample, so the test does what production traffic
does: a flag evaluation, a dual-written bundle create, a shadow-compared read that finds a
difference, a storefront read that goes to Shopify, a migration job run by the service's worker,
and a scrape (which samples the outbox lag).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.core.security import sign_app_proxy_params
from tests.conftest import API_SECRET
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    drain_shadow,
    flag_override,
    metaobject_gid,
    metaobject_item,
    product_gid,
    register_shop,
)

JOBS = "/admin/migrations/jobs"

#: Metric family → the sample name Prometheus shows for it.
EXPECTED = {
    "sb_http_requests": "sb_http_requests_total",
    "sb_http_request_duration_seconds": "sb_http_request_duration_seconds_bucket",
    "sb_dual_writes": "sb_dual_writes_total",
    "sb_shadow_comparisons": "sb_shadow_comparisons_total",
    "sb_shadow_mismatches": "sb_shadow_mismatches_total",
    "sb_migration_job_items": "sb_migration_job_items_total",
    "sb_shopify_calls": "sb_shopify_calls_total",
    "sb_shopify_throttle_wait_seconds": "sb_shopify_throttle_wait_seconds_bucket",
    "sb_outbox_lag_seconds": "sb_outbox_lag_seconds",
    "sb_flag_evaluations": "sb_flag_evaluations_total",
}

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


async def scrape(client: httpx.AsyncClient) -> tuple[str, Samples]:
    response = await client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


async def _bundle_in_both_stores(client: httpx.AsyncClient, sim: Any, shop: str) -> dict[str, Any]:
    """Created through the API while DUAL_WRITE is on: a V2 row and a legacy row (a dual write)."""
    metaobject, products = metaobject_gid(), [product_gid(), product_gid()]
    name = f"Bundle {metaobject[-6:]}"
    await sim.add_metaobjects(
        shop, [metaobject_item(metaobject, name=name, title="Set", discount="15", products=products)]
    )
    body = bundle_body(name=name, metaobject=metaobject, products=products)
    body["title"] = "Set"
    body["components"] = [{"shopifyProductId": p} for p in products]
    response = await client.post(bundles_url(shop), json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    created["_products"] = products
    return created


async def _wait_job(client: httpx.AsyncClient, url: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = (await client.get(url)).json()
        if body["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_metrics_exposes_every_named_metric(
    app_factory: Any, db: asyncpg.Connection, sim: Any, shop: str
) -> None:
    await register_shop(sim, db, shop)
    async with app_factory() as client:
        # Flag evaluation, by route template.
        assert (await client.get(f"/admin/flags/DUAL_WRITE/evaluate?shop={shop}")).status_code == 200
        # A dual write.
        created = await _bundle_in_both_stores(client, sim, shop)
        metaobject = created["shopifyMetaobjectId"]
        # A shadow-compared read that finds a difference (the legacy row was renamed behind our back).
        await db.execute('UPDATE bundle_discount_id SET "bundleName" = $2 WHERE "bundleId" = $1', metaobject, "Drift")
        async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
            assert (await client.get(bundles_url(shop, quote(metaobject, safe="")))).status_code == 200
            await drain_shadow(client)
        # A storefront read from the legacy store: database, then Shopify (calls, throttle wait).
        params = {"shop": shop, "timestamp": str(int(time.time())), "product_id": created["_products"][0]}
        params["signature"] = sign_app_proxy_params(params, API_SECRET)
        assert (await client.get("/proxy/bundles-for-product", params=params)).status_code == 200
        # A migration job over this shop, run by the service's own worker (items by outcome and reason).
        job = await client.post(JOBS, json={"kind": "bundles", "shops": [shop]})
        assert job.status_code == 202, job.text
        finished = await _wait_job(client, job.json()["statusUrl"])
        assert finished["status"] == "succeeded", finished

        # Flag evaluations are tallied in memory and flushed every refresh tick (≤ 0.5 s).
        deadline = time.monotonic() + 5
        while True:
            text, found = await scrape(client)
            if "sb_flag_evaluations_total" in found or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)

    missing = [family for family, sample in EXPECTED.items() if sample not in found]
    assert not missing, f"/metrics lacks {missing}"
    for family in EXPECTED:
        assert f"# TYPE {family}" in text or f"# TYPE {family}_total" in text

    routes = {labels.get("route") for labels, _ in found["sb_http_requests_total"]}
    assert "/admin/flags/{name}/evaluate" in routes, routes
    assert "/api/v2/shops/{shop}/bundles" in routes, routes
    assert "/proxy/bundles-for-product" in routes, routes
    assert not any(route and shop in route for route in routes), "raw paths must not become labels"
    statuses = {labels.get("status") for labels, _ in found["sb_http_requests_total"]}
    assert {"200", "201", "202"} <= statuses, statuses

    flags = {labels["flag"] for labels, _ in found["sb_flag_evaluations_total"]}
    assert "DUAL_WRITE" in flags, flags
    assert any(labels.get("outcome") == "ok" and value > 0 for labels, value in found["sb_dual_writes_total"])
    assert any(value > 0 for _, value in found["sb_shadow_comparisons_total"])
    assert any(value > 0 for _, value in found["sb_shadow_mismatches_total"])
    assert any(value > 0 for _, value in found["sb_migration_job_items_total"])
    assert any(value > 0 for _, value in found["sb_shopify_calls_total"])
    assert all(value >= 0 for _, value in found["sb_outbox_lag_seconds"])


async def test_metrics_needs_no_credentials(client: httpx.AsyncClient) -> None:
    """Scrapers carry no token: /metrics answers without one (and ignores a wrong one)."""
    response = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 200
    assert "# TYPE sb_outbox_lag_seconds gauge" in response.text


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    path = "/no/such/route/abc123"
    assert (await client.get(path)).status_code == 404
    _, found = await scrape(client)
    routes = {labels.get("route") for labels, _ in found["sb_http_requests_total"]}
    assert "unmatched" in routes
    assert path not in routes
