"""Write-through writes exactly what Shopify's `product-bundles` definition allows.

The definition (shopify.md): `products` is a `list.product_reference` (a JSON array of Product GIDs),
`discount` a required `number_integer`, `description` required, and with the publishable capability a
metaobject without `capabilities.publishable.status: ACTIVE` is a DRAFT the storefront never shows.
A V2 bundle with variants, quantities, a repeated product, a fractional percentage, fixed-amount
pricing or no description is written as the documented approximation (docs/write-through.md),
named in the response's `legacyApproximations` and counted in
`sb_write_through_approximations_total{op, reason}`. The publishable status follows the V2 status on
create, through the outbox, and on a reconciliation re-create.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import asyncpg
import httpx
import pytest

from app.services.shopify_sync import shopify_objects
from tests.integration.bundle_helpers import bundles_url, container_of, flag_override, product_gid, register_shop
from tests.integration.test_write_through import (
    fields_of,
    reconcile,
    sim_metaobjects,
    wait_drained,
    wt_body,
    wt_client,
)

Sent = list[tuple[str, dict[str, Any]]]


def spy_mutations(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Record every mutation the service sends (the dispatcher shares the container's client)."""
    shopify = container_of(client).shopify
    original = shopify.mutate
    sent: Sent = []

    async def spy(shop: str, query: str, variables: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        sent.append((query, copy.deepcopy(variables)))
        return await original(shop, query, variables, *args, **kwargs)

    monkeypatch.setattr(shopify, "mutate", spy)
    return sent


def sent_statuses(sent: Sent, metaobject_id: str | None = None) -> list[str | None]:
    """The publishable status of every metaobject write sent (for one metaobject when given)."""
    out: list[str | None] = []
    for _query, variables in sent:
        if "metaobject" not in variables or (metaobject_id and variables.get("id") not in (None, metaobject_id)):
            continue
        caps = variables["metaobject"].get("capabilities") or {}
        out.append((caps.get("publishable") or {}).get("status"))
    return out


def stored_status(metaobject: dict[str, Any]) -> str:
    """The publishable status the simulator stored (as Shopify's `capabilities.publishable.status`)."""
    caps = metaobject.get("capabilities") or {}
    status = (caps.get("publishable") or {}).get("status") or metaobject.get("status")
    assert status in ("ACTIVE", "DRAFT"), f"the simulator does not report the publishable status: {metaobject}"
    return str(status)


async def approximation_counts(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    text = (await client.get("/metrics")).text
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("sb_write_through_approximations_total{"):
            op = line.split('op="', 1)[1].split('"', 1)[0]
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[(op, reason)] = counts.get((op, reason), 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def delta(after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


async def stored(sim: Any, shop: str, gid: str) -> dict[str, Any]:
    found: dict[str, Any] | None = await sim.get_metaobject(shop, gid)
    assert found is not None
    return found


async def test_lifecycle_writes_only_what_the_definition_allows(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register_shop(sim, db, shop)
    tent, lantern, stove = product_gid(), product_gid(), product_gid()
    variant = "gid://shopify/ProductVariant/" + tent.rsplit("/", 1)[1]
    body = wt_body(percent="12.5", status="ACTIVE")
    body.pop("description")
    body["components"] = [
        {"shopifyProductId": tent, "shopifyVariantId": variant},
        {"shopifyProductId": lantern, "quantity": 3, "maxQuantity": 3},
        {"shopifyProductId": tent},
    ]
    async with wt_client(app_factory) as client:
        sent = spy_mutations(client, monkeypatch)
        metrics_before = await approximation_counts(client)
        response = await client.post(bundles_url(shop), json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        bundle_id, gid = created["id"], created["shopifyMetaobjectId"]
        assert created["legacySync"] == "synced"
        assert created["legacyApproximations"] == [
            "variant",
            "quantity",
            "duplicate_product",
            "fractional_percentage",
            "description_fallback",
        ]
        assert delta(await approximation_counts(client), metrics_before) == {
            ("create", r): 1.0 for r in created["legacyApproximations"]
        }

        mo = await stored(sim, shop, gid)
        fields = fields_of(mo)
        assert fields == {
            "bundle_name": body["name"],
            "bundle_title": body["title"],
            "description": body["title"],  # required: the title stands in for the missing description
            "created_at": fields["created_at"],
            "discount": "12",  # display only, rounded down: never promises more than the shopper gets
            "products": json.dumps([tent, lantern]),  # distinct Product GIDs, in display order
        }
        assert fields["created_at"].endswith("Z") and "T" in fields["created_at"]
        assert sent_statuses(sent) == ["ACTIVE"]
        assert stored_status(mo) == "ACTIVE"
        # The automatic discount carries the exact percentage (a Float in Shopify's schema).
        [discount] = await sim.list_discounts(shop)
        assert discount["percentage"] == pytest.approx(0.125)
        assert sorted(discount["productIds"]) == sorted([tent, lantern])

        # Rename: the outbox row carries the fields and the status.
        renamed = await client.patch(bundles_url(shop, bundle_id), json={"name": "Camp set", "title": "Camp"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["legacyApproximations"] == created["legacyApproximations"]
        await wait_drained(client, shop)
        mo = await stored(sim, shop, gid)
        assert (fields_of(mo)["bundle_name"], fields_of(mo)["bundle_title"], fields_of(mo)["description"]) == (
            "Camp set",
            "Camp",
            "Camp",
        )
        assert fields_of(mo)["created_at"] == fields["created_at"]  # an update never moves it
        assert stored_status(mo) == "ACTIVE"

        # A status change alone moves the publishable status (ACTIVE -> DRAFT for anything but ACTIVE).
        sent.clear()
        paused = await client.patch(bundles_url(shop, bundle_id), json={"status": "PAUSED"})
        assert paused.status_code == 200, paused.text
        await wait_drained(client, shop)
        assert sent_statuses(sent, gid) == ["DRAFT"]
        assert stored_status(await stored(sim, shop, gid)) == "DRAFT"
        assert (await client.patch(bundles_url(shop, bundle_id), json={"status": "ACTIVE"})).status_code == 200
        await wait_drained(client, shop)
        assert stored_status(await stored(sim, shop, gid)) == "ACTIVE"

        # Components and discount: plain products, an integer percentage, a description.
        metrics_before = await approximation_counts(client)
        changed = await client.patch(
            bundles_url(shop, bundle_id),
            json={
                "description": "Sleep warm",
                "components": [{"shopifyProductId": stove}, {"shopifyProductId": lantern}],
                "pricingRules": [{"name": "Bundle Discount", "discountType": "PERCENTAGE", "discountValue": "20"}],
            },
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["legacyApproximations"] == []
        assert delta(await approximation_counts(client), metrics_before) == {}
        await wait_drained(client, shop)
        mo = await stored(sim, shop, gid)
        assert fields_of(mo) == {
            "bundle_name": "Camp set",
            "bundle_title": "Camp",
            "description": "Sleep warm",
            "created_at": fields["created_at"],
            "discount": "20",
            "products": json.dumps([stove, lantern]),
        }
        [discount] = await sim.list_discounts(shop)
        assert discount["percentage"] == pytest.approx(0.20)
        assert sorted(discount["productIds"]) == sorted([stove, lantern])

        # Fixed-amount pricing cannot be held: "0", and said so.
        fixed = await client.patch(
            bundles_url(shop, bundle_id),
            json={"pricingRules": [{"name": "Bundle Discount", "discountType": "FIXED_AMOUNT", "discountValue": "5"}]},
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["legacyApproximations"] == ["pricing_not_representable"]
        await wait_drained(client, shop)
        assert fields_of(await stored(sim, shop, gid))["discount"] == "0"

        # Every metaobject write carried a status; delete removes the objects.
        assert all(status in ("ACTIVE", "DRAFT") for status in sent_statuses(sent))
        assert (await client.delete(bundles_url(shop, bundle_id))).status_code == 204
        await wait_drained(client, shop)
    assert await sim_metaobjects(sim, shop) == []
    assert await sim.list_discounts(shop) == []


async def test_draft_bundle_is_created_draft_and_published_on_activation(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register_shop(sim, db, shop)
    product = product_gid()
    body = wt_body([product], status="DRAFT")
    body["components"] = [{"shopifyProductId": product}]
    async with wt_client(app_factory) as client:
        sent = spy_mutations(client, monkeypatch)
        created = (await client.post(bundles_url(shop), json=body)).json()
        assert created["legacyApproximations"] == []
        gid = created["shopifyMetaobjectId"]
        assert sent_statuses(sent) == ["DRAFT"]
        assert stored_status(await stored(sim, shop, gid)) == "DRAFT"
        assert json.loads(fields_of(await stored(sim, shop, gid))["products"]) == [product]
        activated = await client.patch(bundles_url(shop, created["id"]), json={"status": "ACTIVE"})
        assert activated.status_code == 200, activated.text
        await wait_drained(client, shop)
        assert sent_statuses(sent, gid)[-1] == "ACTIVE"
        assert stored_status(await stored(sim, shop, gid)) == "ACTIVE"


async def test_reconciliation_recreates_with_status_and_never_pulls_approximations_back(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-created metaobject uses the same mapping and status; a legacy-wins pull after an edit in
    Shopify takes the edit but keeps the variants, quantities and exact percentage the metaobject
    could not hold."""
    await register_shop(sim, db, shop)
    tent, lantern = product_gid(), product_gid()
    variant = "gid://shopify/ProductVariant/" + tent.rsplit("/", 1)[1]
    body = wt_body(percent="12.5", status="ACTIVE")
    body["components"] = [
        {"shopifyProductId": tent, "shopifyVariantId": variant},
        {"shopifyProductId": lantern, "quantity": 2, "maxQuantity": 2},
    ]
    async with wt_client(app_factory) as client:
        sent = spy_mutations(client, monkeypatch)
        created = (await client.post(bundles_url(shop), json=body)).json()
        container = container_of(client)

        # Only the title was edited in Shopify: everything else is the bundle's own projection.
        await shopify_objects.update_metaobject(
            container.shopify, shop, created["shopifyMetaobjectId"], {"bundle_title": "Edited"}
        )
        report = await reconcile(client, shop)
        assert [(c["kind"], set(c["fields"])) for c in report["changes"]] == [("metaobject_drift", {"bundle_title"})]
        await wait_drained(client, shop)
        async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
            pulled = (await client.get(bundles_url(shop, created["id"]))).json()
        assert pulled["title"] == "Edited"
        assert [(c["shopifyProductId"], c["shopifyVariantId"], c["quantity"]) for c in pulled["components"]] == [
            (tent, variant, 1),
            (lantern, None, 2),
        ]
        assert pulled["pricingRules"][0]["discountValue"] == "12.50"
        assert (await reconcile(client, shop))["changes"] == []

        # A missing metaobject comes back exactly as a create would write it, ACTIVE.
        assert await sim.delete_metaobject(shop, created["shopifyMetaobjectId"])
        sent.clear()
        metrics_before = await approximation_counts(client)
        report = await reconcile(client, shop)
        assert [(c["kind"], c["applied"]) for c in report["changes"]] == [("metaobject_missing", True)]
        await wait_drained(client, shop)
        async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
            repaired = (await client.get(bundles_url(shop, created["id"]))).json()
        [mo] = await sim_metaobjects(sim, shop)
        assert mo["id"] == repaired["shopifyMetaobjectId"] != created["shopifyMetaobjectId"]
        fields = fields_of(mo)
        assert fields == {
            "bundle_name": body["name"],
            "bundle_title": "Edited",
            "description": body["description"],
            "created_at": fields["created_at"],
            "discount": "12",
            "products": json.dumps([tent, lantern]),
        }
        assert sent_statuses(sent)[0] == "ACTIVE"
        assert stored_status(mo) == "ACTIVE"
        counted = {
            k: v for k, v in delta(await approximation_counts(client), metrics_before).items() if k[0] == "reconcile"
        }
        assert counted == {("reconcile", r): 1.0 for r in ("variant", "quantity", "fractional_percentage")}
