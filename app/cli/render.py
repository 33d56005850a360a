"""What `shopibundle` prints for people: job progress, the stage and flag table, the validation summary.

Rendering only: the commands (`app.cli.commands`) call the services and hand their results here.
`--json` prints the same results as JSON (`print_json`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson


def print_json(value: Any, out: TextIO | None = None) -> None:
    data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(), file=out or sys.stdout)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def progress_line(job: Any, width: int = 30) -> str:
    """`[#####.....]  50.0%  500/1000  m=480 f=10 s=10  12.5/s  ETA 40s  running`."""
    filled = round(job.progress * width)
    bar = "#" * filled + "." * (width - filled)
    st = job.stats
    return (
        f"[{bar}] {job.progress * 100:5.1f}%  {st.processed}/{st.total}  "
        f"migrated={st.migrated} failed={st.failed} skipped={st.skipped}  "
        f"{job.ratePerSecond:.1f}/s  ETA {fmt_seconds(job.etaSeconds)}  {job.status}"
    )


def print_job(job: Any) -> None:
    print(f"job {job.id}  kind={job.kind}  status={job.status}  dryRun={str(job.dryRun).lower()}")
    if job.parentJobId:
        print(f"  retry of {job.parentJobId}")
    print("  " + progress_line(job))
    for s in job.perShop:
        print(f"  {s.shop:<45} total={s.total} migrated={s.migrated} failed={s.failed} skipped={s.skipped}")
    if job.lastError:
        print(f"  lastError: {job.lastError}")


def render_flags(view: Mapping[str, Any]) -> list[str]:
    """Stage and flag table lines (`shopibundle stage get|set`, rollbacks, cleanup)."""
    lines = [f"stage: {view['stage']}"]
    lines.append(
        f"  {'flag':<18} {'enabled':<8} {'rollout':<8} {'overrides':<10} {'sampleRate':<11} {'env':<6} updated"
    )
    for f in view["flags"]:
        env = "-" if f["envOverride"] is None else str(f["envOverride"]).lower()
        updated = f["updatedAt"].strftime("%Y-%m-%d %H:%M:%S") if isinstance(f["updatedAt"], datetime) else "-"
        lines.append(
            f"  {f['name']:<18} {str(f['enabled']).lower():<8} {f['rolloutPercent']:<8} {len(f['shopOverrides']):<10} "
            f"{f['sampleRate']:<11} {env:<6} {updated} by {f['updatedBy'] or '-'}"
        )
    return lines


def render_validation(report: Mapping[str, Any], limit: int = 10) -> list[str]:
    """A readable summary of `build_validation_report` (the JSON has everything)."""
    ok = "OK" if report["ok"] else "NOT OK"
    lines = [f"validation: {ok}  (shop: {report['shop'] or 'all'}, generated {report['generatedAt']})"]
    counts = report["bundleCounts"]
    old = sum(c["old"] for c in counts)
    new = sum(c["new"] for c in counts)
    migrated = sum(c["migrated"] for c in counts)
    lines.append(
        f"  manual bundles: {old} legacy rows (bundle_discount_id), {new} V2 bundles; {migrated} migrated, "
        f"{report['unmigratedCount']} unmigrated"
    )
    lines.append(f"  {'shop':<45} {'old':>6} {'new':>6} {'migr':>6} {'unmigr':>6} {'explained':>9}  ok")
    for c in counts:
        explained = sum(c["explained"].values())
        lines.append(
            f"  {c['shop']:<45} {c['old']:>6} {c['new']:>6} {c['migrated']:>6} {c['unmigrated']:>6} {explained:>9}  "
            f"{'yes' if c['ok'] else 'NO'}"
        )
    for entry in report["unmigrated"][:limit]:
        lines.append(f"  unmigrated: {entry['shop']} {entry['legacyId']} ({entry['bundleName']!r}, {entry['rowKind']})")
    lines.append(f"  discount mismatches: {len(report['discountMismatches'])}")
    for m in report["discountMismatches"][:limit]:
        lines.append(
            f"    {m['shop']} {m['legacyId']}: {m['kind']} V2={m['shopifyDiscountId']} legacy={m['oldDiscountId']}"
        )
    ai = report["aiBundles"]
    lines.append(
        f"  AI bundles: {ai['total']} total, {ai['migrated']} migrated, {ai['failedWithReason']} failed with reason, "
        f"{ai['unmigratedCount']} unmigrated, {len(ai['statusMismatches'])} status mismatches"
    )
    rules = report["autoBundleRules"]
    lines.append(
        f"  auto bundle rules: {rules['total']} total ({rules['fromAutoBundleRules']} rules, "
        f"{rules['fromAutoBundleData']} auto_bundle_data), {rules['migrated']} migrated, "
        f"{rules['failedWithReason']} failed with reason, {rules['unmigratedCount']} unmigrated"
    )
    by_reason = ", ".join(f"{k}={v}" for k, v in report["failedByReason"].items()) or "none"
    lines.append(f"  known failures (do not fail validation): {report['failedCount']} ({by_reason})")
    if report.get("truncated"):
        lines.append("  (lists truncated: use --json, or --shop)")
    return lines


def print_rollout(result: dict[str, Any], as_json: bool, headline: str) -> None:
    """A rollout result: JSON, or a headline, the stage and flag table, and the warnings."""

    if as_json:
        print_json(result)
        return
    print(headline)
    print("\n".join(render_flags(result)))
    for warning in result.get("warnings", []):
        print(f"warning: {warning}")


def render_v2_only(holdings: Mapping[str, Any], limit: int = 10) -> list[str]:
    """What only V2 holds, per shop and bundle (the rollback's confirmation list)."""
    lines: list[str] = []
    for shop in holdings.get("shops") or ():
        since = shop.get("readsFromV2Since") or "before the audit began"
        more = " (more changed than examined)" if shop.get("truncated") else ""
        lines.append(f"  {shop['shop']}: {shop['count']} bundle(s), reads from V2 since {since}{more}")
        for bundle in (shop.get("bundles") or [])[:limit]:
            name = bundle.get("name") or bundle["id"]
            lines.append(f"    {bundle['id']}  {name}: {', '.join(bundle['reasons'])}")
        if shop["count"] > limit:
            lines.append(f"    ... {shop['count'] - limit} more")
    return lines


def _guard_text(guard: Mapping[str, Any]) -> str:
    value = guard.get("value")
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{guard.get('name')} {shown} (limit {guard.get('threshold')}, n={guard.get('samples')})"


def render_rollout(rollout: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """One rollout: its header, then a line per shop (stage, state, time in stage, failing guards,
    last transition). The live view of `shopibundle rollout watch` redraws exactly this."""
    now = now or datetime.now(UTC)
    shops = list(rollout.get("shops") or ())
    counts: dict[str, int] = {}
    for shop in shops:
        counts[shop["state"]] = counts.get(shop["state"], 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no shops"
    lines = [
        f"rollout {rollout['id']}  {rollout['status']}  → {rollout['targetStage']}  ({summary})",
        f"  {'shop':<40} {'stage':<10} {'state':<12} {'in stage':>9}  guards / last transition",
    ]
    for shop in shops:
        since = shop.get("since")
        elapsed = (now - since).total_seconds() if isinstance(since, datetime) else None
        failing = [g for g in shop.get("guards") or () if not g.get("ok")]
        note = "; ".join(_guard_text(g) for g in failing) if failing else "guards hold"
        last = shop.get("lastTransition") or {}
        if last:
            note += f" | {last.get('from')} → {last.get('to')}: {last.get('reason')}"
        lines.append(f"  {shop['shop']:<40} {shop['stage']:<10} {shop['state']:<12} {fmt_seconds(elapsed):>9}  {note}")
    return lines
