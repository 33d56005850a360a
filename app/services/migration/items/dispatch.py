"""The two entry points the job engine calls, by item kind: `plan_items` and `migrate_batch`.

The engine (app/services/migration/jobs.py, worker.py) knows only these and the types in `common`;
which batch class migrates a kind, and how, stays inside this package. `migrate_batch` is also
where every outcome is counted (`sb_migration_job_items_total`), once, whatever the kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from app.core.metrics import JOB_ITEMS
from app.repos import migration as repo
from app.services.migration.items.ai_bundles import AiBatch
from app.services.migration.items.auto_rules import AutoRuleBatch
from app.services.migration.items.bundle_batch import BundleBatch
from app.services.migration.items.common import (
    REASON_INTERNAL_ERROR,
    ItemKind,
    ItemOutcome,
    MigrationContext,
    PlannedItem,
    classify_unexpected,
    failed_outcome,
)

log = logging.getLogger(__name__)


async def plan_items(conn: repo.Conn, item_kind: ItemKind, shops: list[str] | None) -> list[PlannedItem]:
    """Every legacy item of that kind (optionally restricted to shops), ordered by (shop, legacy_id).

    bundle: every `bundle_discount_id` row, including the four odd kinds (each gets an outcome that
    explains it); ai_bundle: every `ai_fbt_bundles` row, inactive ones too; auto_rule: every
    `auto_bundle_rules` row and every `auto_bundle_data` row (key `auto_bundle_data:<shop>`).
    """
    if item_kind == "bundle":
        keys = await repo.list_bundle_keys(conn, shops)
    elif item_kind == "ai_bundle":
        keys = await repo.list_ai_bundle_keys(conn, shops)
    elif item_kind == "auto_rule":
        keys = await repo.list_auto_rule_keys(conn, shops)
    else:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown item kind {item_kind!r}")
    return [PlannedItem(item_kind, legacy_id, shop) for shop, legacy_id in keys]


async def migrate_batch(
    ctx: MigrationContext, shop: str, item_kind: ItemKind, legacy_ids: list[str]
) -> list[ItemOutcome]:
    """Migrate one batch of one shop's items. Never raises for a bad item or a Shopify failure:
    every legacy id gets exactly one outcome (a shop-level Shopify error fails each item with its
    reason). Idempotent: a re-run of a migrated item is `skipped` with reason `already_migrated`
    and writes nothing. With ctx.dry_run nothing is written, outcomes are what would happen.

    Duplicate ids in `legacy_ids` are migrated once; the result has one outcome per distinct id, in
    input order. Only cancellation propagates (the job engine pauses/cancels that way).
    """
    ids = list(dict.fromkeys(legacy_ids))
    if not ids:
        return []
    outcomes: dict[str, ItemOutcome] = {}
    try:
        if item_kind == "bundle":
            await BundleBatch(ctx, shop, ids, outcomes).run()
        elif item_kind == "ai_bundle":
            await AiBatch(ctx, shop, ids, outcomes).run()
        elif item_kind == "auto_rule":
            await AutoRuleBatch(ctx, shop, ids, outcomes).run()
        else:
            for legacy_id in ids:
                outcomes[legacy_id] = failed_outcome(
                    legacy_id, REASON_INTERNAL_ERROR, f"unknown item kind {item_kind!r}"
                )
    except Exception as exc:  # the batch phase itself broke (e.g. database down): fail what is left
        reason, transient = classify_unexpected(exc)
        log.warning("migration batch failed", extra={"shop": shop, "kind": item_kind, "error": repr(exc)})
        for legacy_id in ids:
            outcomes.setdefault(legacy_id, failed_outcome(legacy_id, reason, repr(exc)[:500], transient=transient))
    result = [outcomes[legacy_id] for legacy_id in ids]
    _record_metrics(item_kind, result, ctx.dry_run)
    return result


def _record_metrics(item_kind: str, outcomes: Iterable[ItemOutcome], dry_run: bool) -> None:
    for outcome in outcomes:
        JOB_ITEMS.add(
            1,
            {
                "kind": item_kind,
                "outcome": outcome.status,
                "reason": outcome.reason or "",
                "dry_run": "true" if dry_run else "false",
            },
        )
