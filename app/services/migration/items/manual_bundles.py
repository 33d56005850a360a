"""The writers of ordinary manual bundles (a bundle_discount_id row + its metaobject → Bundle).

Two ways, same lock, name check and ON CONFLICT per row: `write_manual_batch` writes all the
batch's ordinary rows in ONE statement (the bulk of the data, so one round trip per batch), and
`write_manual_row` writes one row, handling slug and rename races and reporting per item. What the
batched statement does not settle (a renamed row, or every row when it fails) goes one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from app.core.ids import new_id
from app.core.time import utcnow
from app.repos import migration as repo
from app.rules.legacy_parsing import LegacyRowKind, ParsedLegacyBundle
from app.rules.slugs import slugify
from app.services.migration.items.bundle_items import BundleBatchState, BundleItem
from app.services.migration.items.common import (
    MAX_SLUG_ATTEMPTS,
    REASON_CONFLICT,
    SKIP_ALREADY_MIGRATED,
    SKIP_DELETED_MEANWHILE,
    SLUG_CONSTRAINT,
    ItemOutcome,
    MigrationContext,
    clean_text,
    dumps_json,
    failed_outcome,
    migrated_outcome,
    skipped_outcome,
    yield_now_and_then,
)
from app.services.migration.items.product_cache import build_components, product_failure
from app.services.migration.items.slugs import SlugAllocator
from app.shopify.errors import ShopifyError
from app.shopify.objects import Product

log = logging.getLogger(__name__)

FALLBACK_BUNDLE_NAME = "Untitled bundle"


def v2_bundle_name(legacy_name: str | None, parsed: ParsedLegacyBundle) -> str:
    """The plan's `name: oldBundle.bundleName`, falling back to the metaobject when it is blank."""
    return clean_text(legacy_name) or parsed.name or parsed.title or FALLBACK_BUNDLE_NAME


def _build_manual_bundle(
    shop: str,
    item: BundleItem,
    legacy_name: str,
    slug: str,
    products: dict[str, Product | None] | None,
    now: datetime,
) -> repo.NewBundle:
    """The plan's manual mapping, with fallbacks for missing fields (docs/migration.md). The
    BundleDiscount is not built here: the statement takes it from the locked legacy row."""
    parsed, metaobject = item.parsed, item.metaobject
    assert parsed is not None and metaobject is not None
    name = v2_bundle_name(legacy_name, parsed)
    metadata: dict[str, Any] = {"source": "MANUAL", "legacyBundleId": item.legacy_id}
    if item.handle is not None:
        metadata["legacyHandle"] = item.handle
    return repo.NewBundle(
        id=new_id(),
        shop=shop,
        name=name,
        title=parsed.title or name,
        description=parsed.description,
        slug=slug,
        status="ACTIVE",
        shopify_metaobject_id=metaobject.id,
        metadata_json=dumps_json(metadata),
        created_at=parsed.created_at or now,
        now=now,
        inventory_id=new_id(),
        components=build_components(parsed.products, products),
        pricing_rule_id=new_id(),
        discount_percent=parsed.discount_percent if parsed.discount_percent is not None else Decimal(0),
    )


def _migrated_detail(item: BundleItem, note: str | None) -> str | None:
    """A migrated row's detail: how its handle resolved (handle rows only), then the cache note."""
    if item.handle is None:
        return note
    assert item.metaobject is not None
    resolved = f"handle {item.handle!r} resolved to {item.metaobject.id}"
    return "; ".join(filter(None, [resolved, note]))


# ==================================================================================== batched


async def write_manual_batch(
    conn: repo.Conn,
    shop: str,
    state: BundleBatchState,
    slugs: SlugAllocator,
    products: dict[str, Product | None] | None,
    failed: dict[str, str],
    batch_error: ShopifyError | None,
    note: str | None,
) -> None:
    """Write every ordinary manual bundle of the batch in ONE statement (`insert_manual_bundles`:
    the same lock, name check and ON CONFLICT per row as the one-item statement). What it settles
    is done; everything else (a renamed row, and the whole batch when the statement fails, e.g. a
    slug taken meanwhile or one item's bad value) stays for the item-by-item path, which handles
    races and reports per item. The statement is atomic, so a failure wrote nothing."""
    candidates = _batch_candidates(state, failed, batch_error)
    if len(candidates) < 2:
        return  # the item path costs the same round trip
    taken_before = set(slugs.taken)
    now = utcnow()
    try:
        entries = await _batch_entries(shop, candidates, slugs, products, now)
        results = await repo.insert_manual_bundles(conn, shop, entries)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Nothing was written: hand every candidate to the item path with the slugs it had.
        slugs.taken = taken_before
        log.info("batched manual insert fell back to items", extra={"shop": shop, "error": repr(exc)[:300]})
        return
    _settle_batch(state, slugs, candidates, entries, results, note)


def _batch_candidates(
    state: BundleBatchState, failed: dict[str, str], batch_error: ShopifyError | None
) -> list[BundleItem]:
    """The ordinary rows still to write, in batch order: parsed, not an AI bundle's metaobject, and
    with their products read (an item whose products failed is reported by the item path)."""
    candidates: list[BundleItem] = []
    for legacy_id in state.ids:
        item = state.items.get(legacy_id)
        if item is None or item.parsed is None or item.ai_id is not None:
            continue
        if item.kind not in (LegacyRowKind.METAOBJECT_ID, LegacyRowKind.METAOBJECT_HANDLE):
            continue
        if product_failure(legacy_id, item.parsed.products, failed, batch_error) is not None:
            continue  # reported by the item path
        candidates.append(item)
    return candidates


async def _batch_entries(
    shop: str,
    candidates: list[BundleItem],
    slugs: SlugAllocator,
    products: dict[str, Product | None] | None,
    now: datetime,
) -> list[repo.ManualInsert]:
    """One insert per candidate, built from the batch read's name, each with a freshly allocated slug."""
    entries: list[repo.ManualInsert] = []
    for position, item in enumerate(candidates):
        await yield_now_and_then(position)
        assert item.parsed is not None
        base = slugify(v2_bundle_name(item.row.bundle_name, item.parsed))
        bundle = _build_manual_bundle(shop, item, item.row.bundle_name, slugs.allocate(base), products, now)
        entries.append(repo.ManualInsert(bundle, item.legacy_id, item.row.bundle_name, new_id()))
    return entries


def _settle_batch(
    state: BundleBatchState,
    slugs: SlugAllocator,
    candidates: list[BundleItem],
    entries: list[repo.ManualInsert],
    results: list[repo.ManualInsertResult],
    note: str | None,
) -> None:
    """Each candidate's outcome from its row of the statement; a row renamed meanwhile stays for the
    item path, which rebuilds it from the locked name (its slug is released)."""
    for item, entry, result in zip(candidates, entries, results, strict=True):
        legacy_id = item.legacy_id
        if not result.found:
            state.done(skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone"))
        elif result.bundle_id is not None:
            state.done(migrated_outcome(legacy_id, result.bundle_id, _migrated_detail(item, note)))
        elif result.locked_name is not None and result.locked_name != item.row.bundle_name:
            slugs.taken.discard(entry.bundle.slug)  # renamed meanwhile: the item path rebuilds it
        else:
            assert item.metaobject is not None
            state.done(
                skipped_outcome(legacy_id, SKIP_ALREADY_MIGRATED, f"metaobject {item.metaobject.id} is already in V2")
            )


# ==================================================================================== one at a time


async def write_manual_row(
    ctx: MigrationContext,
    conn: repo.Conn,
    shop: str,
    item: BundleItem,
    slugs: SlugAllocator,
    products: dict[str, Product | None] | None,
    note: str | None,
) -> ItemOutcome:
    """Lock the legacy row and insert ON CONFLICT on the metaobject, in one statement; retry on a
    slug race (next candidate) or a rename race (rebuild from the locked name)."""
    legacy_id = item.legacy_id
    assert item.parsed is not None and item.metaobject is not None
    if ctx.dry_run:
        return await _dry_run_manual_row(conn, shop, item)
    # One statement per attempt, i.e. one short implicit transaction: lock + insert + children.
    # Built from the batch read's name; if the locked row was renamed meanwhile nothing is written
    # and the bundle is rebuilt from the current name (the API's rename wins).
    expected_name = item.row.bundle_name
    for _ in range(MAX_SLUG_ATTEMPTS):
        base = slugify(v2_bundle_name(expected_name, item.parsed))
        bundle = _build_manual_bundle(shop, item, expected_name, slugs.allocate(base), products, utcnow())
        try:
            result = await repo.insert_manual_bundle(conn, bundle, legacy_id, expected_name, new_id())
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == SLUG_CONSTRAINT:
                await slugs.refresh(conn, base)
                continue
            raise
        if not result.found:
            return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
        if result.bundle_id is None:
            if result.locked_name is not None and result.locked_name != expected_name:
                expected_name = result.locked_name
                continue
            return skipped_outcome(
                legacy_id, SKIP_ALREADY_MIGRATED, f"metaobject {item.metaobject.id} is already in V2"
            )
        return migrated_outcome(legacy_id, result.bundle_id, _migrated_detail(item, note))
    return failed_outcome(
        legacy_id, REASON_CONFLICT, f"gave up after {MAX_SLUG_ATTEMPTS} slug/rename races", transient=True
    )


async def _dry_run_manual_row(conn: repo.Conn, shop: str, item: BundleItem) -> ItemOutcome:
    """What `write_manual_row` would do, read without locks, nothing written."""
    legacy_id = item.legacy_id
    assert item.metaobject is not None
    row = await repo.read_bundle_row(conn, shop, legacy_id)
    if row is None:
        return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
    existing = await repo.find_bundle_id(conn, shop, item.metaobject.id)
    if existing is not None:
        return skipped_outcome(legacy_id, SKIP_ALREADY_MIGRATED, v2_id=existing)
    return migrated_outcome(legacy_id, None, "dry run")
