"""Response model of `GET /admin/shops/{shop}/consistency` (app/api/consistency.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ShadowFigures(BaseModel):
    comparisons: int = Field(description="Shadow comparisons settled since `since` (match, confirmed, transient).")
    confirmed: int = Field(description="Mismatches still present when re-read after the re-check delay.")
    transient: int = Field(description="Mismatches gone when re-read (a write raced the two reads).")


class NoiseFigures(BaseModel):
    comparisons: int = Field(description="Control-vs-control comparisons (legacy read twice).")
    mismatches: int
    rate: float | None = Field(description="The comparison's own false-mismatch rate; null without samples.")
    upperBound: float = Field(description="Wilson 95% upper bound of `rate` (1 without samples).")


class DualWriteFigures(BaseModel):
    verified: int = Field(description="Dual-written bundles re-read from both stores and found equal.")
    divergent: int = Field(description="Dual-written bundles whose stores still differed after the re-check.")


class ReadFigures(BaseModel):
    v2Reads: int = Field(description="Sampled reads of the V2 origin (timed or failed).")
    v2Errors: int
    v2ErrorRate: float | None
    v2P99Ms: float | None = Field(description="p99 latency of sampled V2 reads (nearest rank).")
    legacyP99Ms: float | None = Field(description="p99 latency of sampled legacy reads (nearest rank).")
    p99Ratio: float | None = Field(description="v2P99Ms / legacyP99Ms.")


class ConsistencyDiff(BaseModel):
    id: int
    endpoint: str
    outcome: Literal["confirmed", "divergent", "noise_mismatch"]
    bundleKey: str | None
    fields: list[str] = Field(description="The fields that differ (paths in the normalised projection).")
    legacy: Any = Field(description="The legacy side's normalised projection.")
    v2: Any = Field(description="The V2 side's (for `noise_mismatch`: the second legacy read).")
    createdAt: datetime


class ConsistencyReport(BaseModel):
    shop: str
    since: datetime = Field(description="Samples counted from here.")
    sinceSource: Literal["query", "stage", "window"] = Field(
        description="`query`: the `since` parameter; `stage`: when the shop entered its stage under an "
        "unfinished rollout; `window`: the last 24 hours."
    )
    confidence: float = Field(description="Confidence level of the upper bounds (0.95).")
    z: float
    shadow: ShadowFigures
    mismatchRate: float | None = Field(
        description="(confirmed + divergent) / (shadow comparisons + verified + divergent); null without samples."
    )
    mismatchUpperBound: float = Field(description="Wilson score upper bound of `mismatchRate` (what the guard reads).")
    noise: NoiseFigures
    dualWrite: DualWriteFigures
    reads: ReadFigures
    latestDiffs: list[ConsistencyDiff] = Field(description="Newest first: confirmed mismatches, divergences, noise.")


CONSISTENCY_REPORT_EXAMPLE: dict[str, Any] = {
    "shop": "acme.myshopify.com",
    "since": "2026-12-06T03:10:00Z",
    "sinceSource": "stage",
    "confidence": 0.95,
    "z": 1.959964,
    "shadow": {"comparisons": 412, "confirmed": 1, "transient": 3},
    "mismatchRate": 0.0023,
    "mismatchUpperBound": 0.0128,
    "noise": {"comparisons": 42, "mismatches": 0, "rate": 0.0, "upperBound": 0.0841},
    "dualWrite": {"verified": 21, "divergent": 0},
    "reads": {
        "v2Reads": 433,
        "v2Errors": 0,
        "v2ErrorRate": 0.0,
        "v2P99Ms": 1.9,
        "legacyP99Ms": 48.2,
        "p99Ratio": 0.039,
    },
    "latestDiffs": [
        {
            "id": 9012,
            "endpoint": "GET /proxy/bundles-for-product",
            "outcome": "confirmed",
            "bundleKey": "gid://shopify/Product/7001",
            "fields": ["bundles.gid://shopify/Metaobject/101.title"],
            "legacy": {"bundles": {"gid://shopify/Metaobject/101": {"title": "Summer set"}}},
            "v2": {"bundles": {"gid://shopify/Metaobject/101": {"title": "Summer Set"}}},
            "createdAt": "2026-12-06T03:31:12.004Z",
        }
    ],
}
