"""The migration validation report (plan "Data Validation Queries", api.md `GET /admin/migrations/validation`).

The plan's three checks compare whole tables: bundle counts per shop (`bundle_discount_id` vs
`Bundle`), legacy rows without a V2 bundle, and discount ids that differ. Taken literally they can
never pass on real data, because `bundle_discount_id` holds four kinds of rows that are not manual
bundles (shopify.md) and `Bundle` also holds AI bundles. So this report runs the same comparisons per
legacy row and *explains* every row that has no V2 bundle of its own:

* `auto-rule-<id>` rows and the `Auto Generated Bundle` row: discounts of auto rules (migrated with
  the rule, see `autoBundleRules`);
* rows that are an AI bundle's metaobject: that AI bundle (see `aiBundles`);
* rows whose latest job outcome is a failure with a reason code (listed in `failedWithReason`);

and only what remains is `unmigrated`. The same is done for `ai_fbt_bundles` (by
metadata.ai_bundle_id) and for `auto_bundle_rules` + `auto_bundle_data` (by conditions.legacyRuleId).
`ok` is true when nothing is unexplained: no unmigrated row of any kind, no discount mismatch, no AI
bundle whose V2 status contradicts its legacy `isActive`. Recorded failures do not make `ok` false
(they are known and have a reason); `failedCount` says how many there are.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.repos import validation as repo
from app.rules.legacy_parsing import LegacyRowKind, classify_bundle_discount_row
from app.services.cutover.guard import require_legacy_tables

#: Lists in the report are cut to this many entries (counts stay exact; `truncated` says so).
DEFAULT_LIST_LIMIT = 1000

ROW_MIGRATED = "migrated"
ROW_AUTO_RULE = "auto_rule"
ROW_AUTO_GENERATED = "auto_generated"
ROW_AI_METAOBJECT = "ai_metaobject"
ROW_FAILED = "failed"
ROW_UNMIGRATED = "unmigrated"


def classify_bundle_row(row: asyncpg.Record | dict[str, Any]) -> str:
    """What a `bundle_discount_id` row is, for the report (precedence top to bottom).

    Odd kinds first: an auto-rule row is never "unmigrated", whatever happened to its rule. Then the
    AI bundle's metaobject, then "has its V2 bundle", then a recorded failure.
    """
    kind = classify_bundle_discount_row(row["legacy_id"]).kind
    if kind == LegacyRowKind.AUTO_GENERATED:
        return ROW_AUTO_GENERATED
    if kind == LegacyRowKind.AUTO_RULE:
        return ROW_AUTO_RULE
    if row["ai_id"] is not None:
        return ROW_AI_METAOBJECT
    if row["v2_id"] is not None:
        return ROW_MIGRATED
    if row["failed_reason"] is not None:
        return ROW_FAILED
    return ROW_UNMIGRATED


def _explanation(kind: str, row: asyncpg.Record) -> tuple[str, str | None]:
    if kind == ROW_AUTO_RULE:
        rule_id = row["legacy_id"][len("auto-rule-") :]
        if row["rule_v2_id"] is not None:
            return f"discount of auto bundle rule {rule_id}, migrated as AutoBundleRule", row["rule_v2_id"]
        return f"discount of auto bundle rule {rule_id} (rule not migrated or gone: see autoBundleRules)", None
    if kind == ROW_AUTO_GENERATED:
        if row["rule_v2_id"] is not None:
            return "discount of the shop's deprecated auto_bundle_data rule, migrated as AutoBundleRule", row[
                "rule_v2_id"
            ]
        return "discount of the shop's deprecated auto_bundle_data rule (not migrated: see autoBundleRules)", None
    assert kind == ROW_AI_METAOBJECT
    if row["ai_v2_id"] is not None:
        return f"metaobject of AI bundle {row['ai_id']}, migrated as one V2 bundle", row["ai_v2_id"]
    return f"metaobject of AI bundle {row['ai_id']} (AI bundle not migrated: see aiBundles)", None


class _Lists:
    """Collects report lists up to a limit, remembering whether anything was cut."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.truncated = False

    def add(self, target: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        if len(target) < self.limit:
            target.append(entry)
        else:
            self.truncated = True


def _failure_entry(item_kind: str, row: asyncpg.Record) -> dict[str, Any]:
    return {
        "itemKind": item_kind,
        "legacyId": row["legacy_id"],
        "shop": row["shop"],
        "reason": row["failed_reason"],
        "detail": row["failed_detail"],
    }


class _Failures:
    """Items a job gave up on, from every section: counted by reason, listed up to the limit."""

    def __init__(self, lists: _Lists) -> None:
        self.lists = lists
        self.listed: list[dict[str, Any]] = []
        self.by_reason: Counter[str] = Counter()

    def add(self, item_kind: str, row: asyncpg.Record) -> None:
        self.by_reason[row["failed_reason"]] += 1
        self.lists.add(self.listed, _failure_entry(item_kind, row))


@dataclass
class _BundleSection:
    """The plan's checks of manual bundles: per-shop counts, what is unmigrated, what is explained."""

    counts: list[dict[str, Any]]
    unmigrated: list[dict[str, Any]]
    unmigrated_count: int
    explained: list[dict[str, Any]]


async def build_validation_report(
    pool: asyncpg.Pool, shop: str | None, *, list_limit: int = DEFAULT_LIST_LIMIT
) -> dict[str, Any]:
    """The validation report for one shop (or all shops with None); also used by the CLI.

    Read-only, a handful of statements in one REPEATABLE READ transaction so the checks see one
    consistent snapshot while jobs and the API keep writing.
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # After the Phase 5 cleanup the legacy tables live in `archive`: a 409 saying so, not a 500.
        await require_legacy_tables(conn, "The validation report")
        bundle_rows = await repo.bundle_rows(conn, shop)
        v2_counts = await repo.v2_bundle_counts(conn, shop)
        mismatch_rows = await repo.discount_mismatches(conn, shop)
        ai_rows = await repo.ai_bundle_rows(conn, shop)
        rule_rows = await repo.auto_rule_rows(conn, shop)

    lists = _Lists(list_limit)
    failures = _Failures(lists)
    bundles = _bundle_section(bundle_rows, v2_counts, lists, failures)
    discount_mismatches = _discount_mismatches(mismatch_rows, lists)
    ai_report = _ai_section(ai_rows, lists, failures)
    rule_report = _rule_section(rule_rows, lists, failures)
    return {
        "shop": shop,
        "generatedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "bundleCounts": bundles.counts,
        "unmigratedCount": bundles.unmigrated_count,
        "unmigrated": bundles.unmigrated,
        "explainedRows": bundles.explained,
        "discountMismatches": discount_mismatches,
        "aiBundles": ai_report,
        "autoBundleRules": rule_report,
        "failedCount": sum(failures.by_reason.values()),
        "failedByReason": dict(sorted(failures.by_reason.items())),
        "failedWithReason": failures.listed,
        "truncated": lists.truncated,
        "ok": bundles.unmigrated_count == 0 and not mismatch_rows and bool(ai_report["ok"]) and bool(rule_report["ok"]),
    }


def _bundle_section(
    bundle_rows: list[asyncpg.Record], v2_counts: list[asyncpg.Record], lists: _Lists, failures: _Failures
) -> _BundleSection:
    per_shop: dict[str, Counter[str]] = defaultdict(Counter)
    unmigrated: list[dict[str, Any]] = []
    explained_rows: list[dict[str, Any]] = []
    for row in bundle_rows:
        kind = classify_bundle_row(row)
        per_shop[row["shop"]][kind] += 1
        if kind == ROW_UNMIGRATED:
            lists.add(
                unmigrated,
                {
                    "shop": row["shop"],
                    "legacyId": row["legacy_id"],
                    "bundleName": row["bundle_name"],
                    "discountId": row["discount_id"],
                    "rowKind": classify_bundle_discount_row(row["legacy_id"]).kind.value,
                },
            )
        elif kind == ROW_FAILED:
            failures.add("bundle", row)
        elif kind != ROW_MIGRATED:
            explanation, target = _explanation(kind, row)
            lists.add(
                explained_rows,
                {
                    "shop": row["shop"],
                    "legacyId": row["legacy_id"],
                    "kind": kind,
                    "explanation": explanation,
                    "v2Id": target,
                },
            )
    counts_by_shop = {r["shop"]: r for r in v2_counts}
    bundle_counts = [
        _shop_counts(name, per_shop.get(name, Counter()), counts_by_shop.get(name))
        for name in sorted(set(per_shop) | set(counts_by_shop))
    ]
    unmigrated_count = sum(kinds[ROW_UNMIGRATED] for kinds in per_shop.values())
    return _BundleSection(bundle_counts, unmigrated, unmigrated_count, explained_rows)


def _shop_counts(name: str, kinds: Counter[str], v2: asyncpg.Record | None) -> dict[str, Any]:
    """One shop's line of the plan's "old count vs new count" check, with every difference named."""
    new = int(v2["new"]) if v2 else 0
    ai_bundles = int(v2["ai_bundles"]) if v2 else 0
    from_rows = int(v2["from_bundle_rows"]) if v2 else 0
    return {
        "shop": name,
        "old": sum(kinds.values()),
        "new": new,
        "migrated": kinds[ROW_MIGRATED],
        "unmigrated": kinds[ROW_UNMIGRATED],
        "explained": {
            "autoRuleRows": kinds[ROW_AUTO_RULE],
            "autoGeneratedRows": kinds[ROW_AUTO_GENERATED],
            "aiMetaobjectRows": kinds[ROW_AI_METAOBJECT],
            "failedWithReason": kinds[ROW_FAILED],
        },
        "newBreakdown": {
            "fromBundleRows": from_rows,
            "aiBundles": ai_bundles,
            "other": new - from_rows - ai_bundles,
        },
        "ok": kinds[ROW_UNMIGRATED] == 0,
    }


def _discount_mismatches(mismatch_rows: list[asyncpg.Record], lists: _Lists) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = []
    for row in mismatch_rows:
        lists.add(
            listed,
            {
                "shop": row["shop"],
                "bundleId": row["bundle_id"],
                "name": row["name"],
                "legacyId": row["legacy_id"],
                "shopifyDiscountId": row["shopify_discount_id"],
                "oldDiscountId": row["old_discount_id"],
                "kind": row["kind"],
            },
        )
    return listed


def _ai_section(ai_rows: list[asyncpg.Record], lists: _Lists, failures: _Failures) -> dict[str, Any]:
    unmigrated: list[dict[str, Any]] = []
    status_mismatches: list[dict[str, Any]] = []
    migrated = failed = 0
    for row in ai_rows:
        if row["v2_id"] is not None:
            migrated += 1
            if bool(row["is_active"]) != (row["v2_status"] == "ACTIVE"):
                lists.add(
                    status_mismatches,
                    {
                        "shop": row["shop"],
                        "legacyId": row["legacy_id"],
                        "v2Id": row["v2_id"],
                        "isActive": row["is_active"],
                        "status": row["v2_status"],
                    },
                )
        elif row["failed_reason"] is not None:
            failed += 1
            failures.add("ai_bundle", row)
        else:
            lists.add(unmigrated, {"shop": row["shop"], "legacyId": row["legacy_id"], "isActive": row["is_active"]})
    unmigrated_count = len(ai_rows) - migrated - failed
    return {
        "total": len(ai_rows),
        "migrated": migrated,
        "failedWithReason": failed,
        "unmigratedCount": unmigrated_count,
        "unmigrated": unmigrated,
        "statusMismatches": status_mismatches,
        "ok": unmigrated_count == 0 and not status_mismatches,
    }


def _rule_section(rule_rows: list[asyncpg.Record], lists: _Lists, failures: _Failures) -> dict[str, Any]:
    unmigrated: list[dict[str, Any]] = []
    migrated = failed = 0
    by_source: Counter[str] = Counter()
    for row in rule_rows:
        by_source[row["source"]] += 1
        if row["v2_id"] is not None:
            migrated += 1
        elif row["failed_reason"] is not None:
            failed += 1
            failures.add("auto_rule", row)
        else:
            lists.add(unmigrated, {"shop": row["shop"], "legacyId": row["legacy_id"], "source": row["source"]})
    unmigrated_count = len(rule_rows) - migrated - failed
    return {
        "total": len(rule_rows),
        "fromAutoBundleRules": by_source["auto_bundle_rules"],
        "fromAutoBundleData": by_source["auto_bundle_data"],
        "migrated": migrated,
        "failedWithReason": failed,
        "unmigratedCount": unmigrated_count,
        "unmigrated": unmigrated,
        "ok": unmigrated_count == 0,
    }


__all__ = ["DEFAULT_LIST_LIMIT", "build_validation_report", "classify_bundle_row"]
