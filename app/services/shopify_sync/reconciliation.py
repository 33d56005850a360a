"""Reconciliation of V2 manual bundles with their Shopify objects (`POST /admin/reconciliation`,
`shopibundle reconcile`).

Write-through keeps Shopify in step as long as every change goes through the V2 API and the outbox
delivers. Drift still happens: the legacy app or a merchant edits a metaobject, someone deletes a
discount in the Shopify admin, an outbox row went dead, a compensation could not run. This job
compares every V2 manual bundle that has a metaobject with that metaobject and its automatic
discount, and repairs each difference by one rule:

* **Who wins.** While `V2_BUNDLE_ENGINE` is on for the shop, V2 is the source of truth: Shopify is
  overwritten (`push`, through the outbox, so the repair is ordered after anything already queued
  for the bundle). Before that, the legacy store is what the merchant and the storefront see, so
  the metaobject wins: the V2 bundle is updated from it (`pull`: name, title, description,
  products/quantities, percentage) through the ordinary update path (dual write, If-Match against
  concurrent edits, and an outbox row of its own).
* **The discount follows V2 in both modes** (title, percentage, products): the legacy store keeps
  no discount content of its own (its percentage lives in the metaobject, pulled above).
* **Absence is never propagated as a deletion.** A missing metaobject or discount is recreated from
  V2 and the bundle re-pointed to it; deleting merchant data stays an explicit act.
* **Bundles with undelivered outbox rows are skipped** (`outbox_pending`): Shopify is behind by
  design and will converge; comparing now would pull stale content into V2.
* **Orphans.** Metaobjects with this service's handle prefix (`sb-`) that no bundle names and that
  are older than `RECONCILE_ORPHAN_GRACE_S` (an in-flight create is younger) are deleted: the net
  under a create whose compensation could not run at all.
* A bundle found in sync or repaired gets its dead outbox rows marked `resolved`.

`dryRun` reports the same changes without making them. Every change is reported: shop, bundle,
metaobject, the drifted fields with both values, the action and whether it was applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from app.core.container import Container
from app.core.errors import DomainError
from app.core.time import utcnow
from app.repos import bundles as bundle_repo
from app.repos import outbox as outbox_repo
from app.repos import runner
from app.rules.legacy_metaobject import publishable_status
from app.rules.legacy_parsing import (
    InvalidLegacyData,
    LegacyProductRef,
    parse_iso_datetime,
    parse_percent_string,
    parse_products,
)
from app.schemas.bundles import BundleUpdate
from app.services.bundles.representation import etag_of, to_out
from app.services.bundles.writes import update_bundle
from app.services.flags import snapshot as flags
from app.services.shopify_sync import shopify_objects
from app.services.shopify_sync import write_through as wt
from app.services.shopify_sync.outbox import enqueue_push
from app.shopify.documents import METAOBJECTS_QUERY
from app.shopify.errors import ShopifyError
from app.shopify.objects import Metaobject

log = logging.getLogger(__name__)

Winner = Literal["v2", "legacy"]


PAGE = 50


@dataclass(slots=True)
class Change:
    """One drift found (and, unless dry-run, repaired)."""

    shop: str
    kind: str  # metaobject_drift | metaobject_missing | discount_drift | discount_missing | orphan_metaobject
    action: str  # push_to_shopify | pull_from_shopify | recreate_metaobject | recreate_discount | delete_orphan
    winner: str
    bundleId: str | None = None
    metaobjectId: str | None = None
    discountId: str | None = None
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: bool = False
    detail: str | None = None


@dataclass(slots=True)
class Report:
    dryRun: bool
    startedAt: datetime
    finishedAt: datetime | None = None
    shops: list[str] = field(default_factory=list)
    checked: int = 0
    inSync: int = 0
    changed: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Comparison (pure)
# --------------------------------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    return (value or "").strip() or None


def _percent(value: str | None) -> Decimal:
    try:
        return parse_percent_string(value) or Decimal(0)
    except InvalidLegacyData:
        return Decimal(-1)  # unparsable never equals a V2 value


def _products(value: str | None) -> list[tuple[str, int]] | None:
    try:
        return sorted((p.product_id, p.quantity) for p in parse_products(value))
    except InvalidLegacyData:
        return None


def metaobject_drift(expected: Mapping[str, str], actual: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Fields whose *meaning* differs (the shadow-read projection's normalisation: trimmed text, a blank
    title reads as the name, percentages as numbers, products as sorted (id, quantity))."""
    drift: dict[str, dict[str, Any]] = {}

    def differ(key: str, same: bool) -> None:
        if not same:
            drift[key] = {"v2": expected.get(key), "shopify": actual.get(key)}

    differ("bundle_name", _text(expected.get("bundle_name")) == _text(actual.get("bundle_name")))
    actual_title = _text(actual.get("bundle_title")) or _text(actual.get("bundle_name"))
    differ("bundle_title", _text(expected.get("bundle_title")) == actual_title)
    differ("description", _text(expected.get("description")) == _text(actual.get("description")))
    differ("discount", _percent(expected.get("discount")) == _percent(actual.get("discount")))
    actual_products = _products(actual.get("products"))
    differ("products", actual_products is not None and _products(expected.get("products")) == actual_products)
    return drift


def discount_drift(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    drift: dict[str, dict[str, Any]] = {}
    if _text(actual.get("title")) != _text(expected.get("title")):
        drift["title"] = {"v2": expected.get("title"), "shopify": actual.get("title")}
    pct = actual.get("percentage")
    if pct is not None and abs(float(pct) - float(expected["percentage"])) > 1e-9:  # None: Shopify did not say
        drift["percentage"] = {"v2": expected["percentage"], "shopify": pct}
    return drift


def pull_patch(full: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The V2 PATCH that makes the bundle say what its metaobject says (legacy wins).

    Only fields whose meaning differs from the bundle's own legacy projection are pulled, so what the
    definition cannot hold is never "repaired" away: a metaobject that lists a product once does not
    drop the bundle's variants or quantities for that product, `"12"` does not overwrite 12.5 %, the
    title written as the missing description does not become the description.

    Raises `InvalidLegacyData` when the metaobject's products or percentage cannot be read: such a
    bundle is reported, never half-pulled.
    """
    drift = metaobject_drift(wt.metaobject_fields(full), fields)
    patch: dict[str, Any] = {}
    name = _text(fields.get("bundle_name"))
    if "bundle_name" in drift and name:
        patch["name"] = name
    if "bundle_title" in drift:
        patch["title"] = _text(fields.get("bundle_title")) or name or full["name"]
    if "description" in drift:
        patch["description"] = _text(fields.get("description"))
    if "products" in drift:
        patch["components"] = _pulled_components(full.get("components") or [], parse_products(fields.get("products")))
    if "discount" in drift:
        percent = parse_percent_string(fields.get("discount")) or Decimal(0)
        patch["pricingRules"] = _rules_with_percent(full.get("pricingRules") or [], percent)
    return patch


_COMPONENT_KEYS = (
    "shopifyProductId",
    "shopifyVariantId",
    "quantity",
    "isRequired",
    "minQuantity",
    "maxQuantity",
    "priceAdjustmentType",
    "priceAdjustment",
)


def _pulled_components(
    current: Sequence[Mapping[str, Any]], products: Sequence[LegacyProductRef]
) -> list[dict[str, Any]]:
    """The metaobject's products in its order; a product the bundle already has keeps its components
    (variants, quantities, adjustments), a new one comes as the metaobject says it."""
    by_product: dict[str, list[Mapping[str, Any]]] = {}
    for component in current:
        by_product.setdefault(str(component["shopifyProductId"]), []).append(component)
    out: list[dict[str, Any]] = []
    for ref in products:
        kept = by_product.pop(ref.product_id, None)
        if kept is not None:
            out += [{k: c.get(k) for k in _COMPONENT_KEYS if c.get(k) is not None} for c in kept]
        elif all(item["shopifyProductId"] != ref.product_id for item in out):
            out.append(
                {"shopifyProductId": ref.product_id, "shopifyVariantId": ref.variant_id, "quantity": ref.quantity}
            )
    return out


_RULE_KEYS = (
    "name",
    "priority",
    "isActive",
    "ruleType",
    "conditions",
    "discountType",
    "discountValue",
    "usageLimit",
    "startsAt",
    "endsAt",
)


def _rules_with_percent(rules: Sequence[Mapping[str, Any]], percent: Decimal) -> list[dict[str, Any]]:
    """The rules with the legacy percentage in the rule the legacy store maps to (added when absent)."""
    out = [{k: r.get(k) for k in _RULE_KEYS} for r in rules]
    for rule in out:
        if rule["isActive"] and rule["ruleType"] == "BUNDLE_DISCOUNT" and rule["discountType"] == "PERCENTAGE":
            rule["discountValue"] = percent
            return out
    out.append({"name": "Bundle Discount", "discountType": "PERCENTAGE", "discountValue": percent})
    return out


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def _winner(container: Container, shop: str) -> Winner:
    return "v2" if flags.is_on(container, "V2_BUNDLE_ENGINE", shop) else "legacy"


async def reconcile(
    container: Container, *, shops: Sequence[str] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Compare and repair (see module docstring); the report as JSON-ready data."""

    report = Report(dryRun=dry_run, startedAt=datetime.now(UTC))
    targets = (
        list(dict.fromkeys(shops))
        if shops
        else await runner.run_read(container.pool, outbox_repo.shops_with_manual_bundles)
    )
    report.shops = targets
    for shop in targets:
        try:
            await _reconcile_shop(container, shop, report)
        except (ShopifyError, DomainError) as exc:
            report.errors.append({"shop": shop, "reason": getattr(exc, "reason", "error"), "detail": str(exc)})
            log.warning("reconciliation of %s failed: %s", shop, exc)
    report.changed = sum(1 for c in report.changes if c.applied)
    report.finishedAt = datetime.now(UTC)
    return report.as_dict()


async def _reconcile_shop(container: Container, shop: str, report: Report) -> None:

    async def load(conn: Any) -> tuple[list[dict[str, Any]], set[str]]:
        ids = await outbox_repo.manual_bundle_ids(conn, shop)
        full: list[dict[str, Any]] = []
        for start in range(0, len(ids), 200):
            full += await bundle_repo.fetch_full(conn, shop, ids[start : start + 200])
        return full, await outbox_repo.bundles_with_pending(conn, ids)

    bundles, pending = await runner.run_read(container.pool, load)
    winner = _winner(container, shop)
    todo = []
    for full in bundles:
        if full["id"] in pending:
            report.skipped.append({"shop": shop, "bundleId": full["id"], "reason": "outbox_pending"})
        else:
            todo.append(full)
    gids = [str(b["shopifyMetaobjectId"]) for b in todo]
    metaobjects = await container.shopify.fetch_metaobjects(shop, gids) if gids else {}
    discount_ids = [d for d in (wt.automatic_discount_id(b) for b in todo) if d]
    discounts = await shopify_objects.fetch_discounts(container.shopify, shop, discount_ids) if discount_ids else {}
    settled: list[str] = []  # in sync or repaired: their dead outbox rows are resolved
    for full in todo:
        report.checked += 1
        try:
            repaired = await _reconcile_bundle(container, shop, winner, full, metaobjects, discounts, report)
        except (ShopifyError, DomainError, InvalidLegacyData) as exc:
            report.errors.append(
                {"shop": shop, "bundleId": full["id"], "reason": getattr(exc, "reason", "error"), "detail": str(exc)}
            )
            continue
        if repaired is None:
            report.inSync += 1
        settled.append(full["id"])
    if settled and not report.dryRun:
        await runner.run_read(container.pool, lambda conn: outbox_repo.resolve_dead(conn, settled))
    await _sweep_orphans(container, shop, report)


async def _reconcile_bundle(
    container: Container,
    shop: str,
    winner: Winner,
    full: dict[str, Any],
    metaobjects: Mapping[str, Metaobject | None],
    discounts: Mapping[str, dict[str, Any] | None],
    report: Report,
) -> bool | None:
    """Repair one bundle; None when it was in sync."""

    bundle_id, gid = full["id"], str(full["shopifyMetaobjectId"])
    dry = report.dryRun
    found: list[Change] = []
    patch: dict[str, Any] = {}
    push = False
    created_mo: str | None = None
    created_discount: str | None = None
    expected = wt.metaobject_fields(full)
    metaobject = metaobjects.get(gid)
    if metaobject is None:
        found.append(Change(shop, "metaobject_missing", "recreate_metaobject", winner, bundle_id, gid))
        if not dry:
            fields = wt.metaobject_fields(full, created_at=full.get("createdAt") or utcnow())
            handle = wt.handle_for(shop, "id", bundle_id)
            status = publishable_status(full.get("status"))
            created_mo = await wt.create_metaobject(container, shop, handle, fields, status=status)
            wt.count_approximations("reconcile", wt.approximations_of(full))
            patch["shopifyMetaobjectId"] = created_mo
    else:
        drift = metaobject_drift(expected, metaobject.fields)
        if drift:
            action = "push_to_shopify" if winner == "v2" else "pull_from_shopify"
            found.append(Change(shop, "metaobject_drift", action, winner, bundle_id, gid, fields=drift))
            if winner == "v2":
                push = True
            else:
                patch.update(pull_patch(full, metaobject.fields))
    discount_id = wt.automatic_discount_id(full)
    if discount_id is not None:
        state = wt.discount_state(full)
        actual = discounts.get(discount_id)
        if actual is None:
            found.append(Change(shop, "discount_missing", "recreate_discount", winner, bundle_id, gid, discount_id))
            if not dry:
                created_discount = await shopify_objects.create_discount(container.shopify, shop, state, wt.iso(None))
                patch["discounts"] = [
                    {
                        **{k: d[k] for k in ("discountCode", "discountType", "isActive")},
                        "shopifyDiscountId": created_discount,
                    }
                    if d["shopifyDiscountId"] == discount_id
                    else {k: d[k] for k in ("shopifyDiscountId", "discountCode", "discountType", "isActive")}
                    for d in full.get("discounts") or []
                ]
        else:
            drift = discount_drift(state, actual)
            if drift:
                found.append(
                    Change(shop, "discount_drift", "push_to_shopify", winner, bundle_id, gid, discount_id, drift)
                )
                push = True
    if not found:
        return None
    report.changes.extend(found)
    if dry:
        return True
    try:
        if patch:
            etag = etag_of(to_out(full).model_dump(mode="json"))
            await update_bundle(container, shop, bundle_id, BundleUpdate.model_validate(patch), if_match=etag)
        if push:
            await enqueue_push(container, shop, bundle_id)
            wt.count_approximations("reconcile", wt.approximations_of(full))
    except BaseException:
        if created_mo or created_discount:
            await wt.compensate(container, shop, bundle_id, created_mo, created_discount)
        raise
    for change in found:
        change.applied = True
    return True


def _metaobject(node: Any) -> Metaobject | None:
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        return None
    raw = node.get("fields")
    entries = raw if isinstance(raw, list) else []
    fields = {f["key"]: str(f["value"]) for f in entries if isinstance(f, Mapping) and f.get("value") is not None}
    return Metaobject(
        id=node["id"], handle=str(node.get("handle") or ""), type=str(node.get("type") or ""), fields=fields
    )


async def _list_metaobjects(container: Container, shop: str) -> list[Metaobject]:
    out: list[Metaobject] = []
    after: str | None = None
    while True:
        variables = {"type": wt.BUNDLE_METAOBJECT_TYPE, "first": PAGE, "after": after}
        data = await container.shopify.graphql(shop, METAOBJECTS_QUERY, variables, estimated_cost=2 + PAGE * 2)
        page = data.get("metaobjects") or {}
        for node in page.get("nodes") or []:
            parsed = _metaobject(node)
            if parsed is not None:
                out.append(parsed)
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage") or not info.get("endCursor"):
            return out
        after = str(info["endCursor"])


async def _sweep_orphans(container: Container, shop: str, report: Report) -> None:
    """Delete `sb-*` metaobjects nobody names, older than the grace period (module docstring)."""
    grace = float(getattr(container.settings, "reconcile_orphan_grace_s", 600.0))
    now = utcnow()
    for metaobject in await _list_metaobjects(container, shop):
        if not metaobject.handle.startswith(wt.HANDLE_PREFIX):
            continue
        created = parse_iso_datetime(metaobject.fields.get("created_at"))
        if created is not None and (now - created).total_seconds() < grace:
            continue
        async with container.pool.acquire() as conn:
            if await outbox_repo.shopify_refs(conn, shop, metaobject.id, None):
                continue
        change = Change(shop, "orphan_metaobject", "delete_orphan", "v2", metaobjectId=metaobject.id)
        change.detail = f"handle {metaobject.handle}"
        report.changes.append(change)
        if not report.dryRun:
            await shopify_objects.delete_metaobject(container.shopify, shop, metaobject.id)
            change.applied = True
