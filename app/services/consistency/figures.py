"""A shop's figures since a moment (what the guards read) and the consistency report (the API's)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.core.container import Container
from app.core.time import as_utc, naive_utc, utcnow
from app.repos import consistency as repo
from app.repos import runner
from app.repos.base import Executor
from app.rules.consistency import Z_95, ConsistencyFigures

#: Without a rollout watching the shop, the report covers this much recent time.
DEFAULT_WINDOW = timedelta(hours=24)
LATEST_DIFFS = 20


async def shop_figures(conn: Executor, shop: str, since: datetime) -> ConsistencyFigures:
    """Counts of the comparisons recorded for `shop` at or after `since` (every replica's)."""
    row = await repo.figures(conn, shop, naive_utc(since))
    return ConsistencyFigures(
        comparisons=int(row["comparisons"]),
        confirmed=int(row["confirmed"]),
        transient=int(row["transient"]),
        noise_comparisons=int(row["noise_comparisons"]),
        noise_mismatches=int(row["noise_mismatches"]),
        verified=int(row["verified"]),
        divergent=int(row["divergent"]),
        v2_reads=int(row["v2_reads"]),
        v2_errors=int(row["v2_errors"]),
        v2_p99_ms=None if row["v2_p99_ms"] is None else float(row["v2_p99_ms"]),
        legacy_p99_ms=None if row["legacy_p99_ms"] is None else float(row["legacy_p99_ms"]),
    )


async def consistency_report(container: Container, shop: str, since: datetime | None = None) -> dict[str, Any]:
    """`GET /admin/shops/{shop}/consistency`: the figures since `since` (default: since the shop
    entered its stage under an unfinished rollout, else the last 24 hours) and the latest diffs."""

    async def q(conn: Executor) -> tuple[datetime, str, ConsistencyFigures, list[dict[str, Any]]]:
        start, source = since, "query"
        if start is None:
            stage_since = await repo.rollout_stage_since(conn, shop)
            start, source = (
                (stage_since, "stage")
                if stage_since is not None
                else (
                    naive_utc(utcnow() - DEFAULT_WINDOW),
                    "window",
                )
            )
        figures = await shop_figures(conn, shop, start)
        diffs = await repo.latest_diffs(conn, shop, None, LATEST_DIFFS)
        return start, source, figures, diffs

    start, source, f, diffs = await runner.run_read(container.pool, q)
    return {
        "shop": shop,
        "since": as_utc(start),
        "sinceSource": source,
        "confidence": 0.95,
        "z": Z_95,
        "shadow": {"comparisons": f.comparisons, "confirmed": f.confirmed, "transient": f.transient},
        "mismatchRate": f.mismatch_rate,
        "mismatchUpperBound": f.mismatch_upper,
        "noise": {
            "comparisons": f.noise_comparisons,
            "mismatches": f.noise_mismatches,
            "rate": f.noise_rate,
            "upperBound": f.noise_upper,
        },
        "dualWrite": {"verified": f.verified, "divergent": f.divergent},
        "reads": {
            "v2Reads": f.v2_reads,
            "v2Errors": f.v2_errors,
            "v2ErrorRate": f.error_rate,
            "v2P99Ms": f.v2_p99_ms,
            "legacyP99Ms": f.legacy_p99_ms,
            "p99Ratio": f.p99_ratio,
        },
        "latestDiffs": [
            {
                "id": d["id"],
                "endpoint": d["endpoint"],
                "outcome": d["outcome"],
                "bundleKey": d["bundleKey"],
                "fields": d["fields"],
                "legacy": d["legacy"],
                "v2": d["v2"],
                "createdAt": as_utc(d["createdAt"]),
            }
            for d in diffs
        ],
    }
