"""What the rollout guards read about one shop, and the confidence bound they compare.

A shop's evidence is counted since a moment (the start of its current stage):

* **shadow comparisons**: a sampled read answered by one store and re-run on the other, compared
  on the normalised projection. A mismatch is re-read after a short delay; it is **confirmed**
  when the two stores still differ, **transient** when they agree by then (a write raced the two
  reads). Only confirmed mismatches count against the shop.
* **noise baseline**: control-vs-control comparisons (legacy against legacy, the same read twice)
  measure how often the comparison itself reports a difference where there is none (cache
  refreshes, ordering, clock-dependent fields). The real rate is read beside it.
* **dual-write verification**: a dual-written bundle re-read from both stores after commit (and
  every such bundle before the shop goes live); a divergence is a confirmed mismatch with its diff.
* **read origin figures**: V2 reads and errors, and p99 latency per origin.

The guard compares the **Wilson score upper bound** (95%) of the confirmed-mismatch rate with its
threshold, not the raw rate: 0 mismatches out of 20 comparisons is not evidence of a rate below
1% (the bound is 16%), 0 out of 400 is (0.95%). docs/feature-flags.md explains the choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from app.rules.flags import FlagState, evaluate_state
from app.rules.legacy_metaobject import legacy_metaobject_fields

# z for a two-sided 95% interval (the one-sided upper bound of that interval is what the guard uses).
Z_95: Final = 1.959964

#: Outcomes of one recorded comparison (the `outcome` column of `sb_consistency_comparisons`).
OUTCOME_MATCH: Final = "match"
OUTCOME_CONFIRMED: Final = "confirmed"
OUTCOME_TRANSIENT: Final = "transient"
OUTCOME_NOISE_MATCH: Final = "noise_match"
OUTCOME_NOISE_MISMATCH: Final = "noise_mismatch"
OUTCOME_VERIFIED: Final = "verified"
OUTCOME_DIVERGENT: Final = "divergent"
#: A sampled read that failed on one origin (no comparison; counts in the V2 error rate).
OUTCOME_ERROR: Final = "error"
OUTCOMES: Final = (
    OUTCOME_MATCH,
    OUTCOME_CONFIRMED,
    OUTCOME_TRANSIENT,
    OUTCOME_NOISE_MATCH,
    OUTCOME_NOISE_MISMATCH,
    OUTCOME_VERIFIED,
    OUTCOME_DIVERGENT,
    OUTCOME_ERROR,
)
#: Outcomes that count as a shadow comparison (the denominator of the mismatch rate).
SHADOW_OUTCOMES: Final = (OUTCOME_MATCH, OUTCOME_CONFIRMED, OUTCOME_TRANSIENT)
NOISE_OUTCOMES: Final = (OUTCOME_NOISE_MATCH, OUTCOME_NOISE_MISMATCH)
VERIFY_OUTCOMES: Final = (OUTCOME_VERIFIED, OUTCOME_DIVERGENT)


def wilson_upper(successes: int, trials: int, z: float = Z_95) -> float:
    """Upper end of the Wilson score interval for `successes` out of `trials` (0..1).

    No trials → 1.0 (nothing is known, so the worst rate is possible). Unlike the normal
    approximation it stays inside [0, 1] and is meaningful at 0 successes, the common case of
    a clean shop: 0/n gives z²/(n + z²).
    """
    if trials <= 0:
        return 1.0
    s = min(max(successes, 0), trials)
    n = float(trials)
    p = s / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    upper = (centre + margin) / (1 + z2 / n)
    return min(1.0, max(0.0, upper))


def rate(part: int, whole: int) -> float | None:
    """part/whole, or None without samples (a rate of nothing is unknown, not 0)."""
    return part / whole if whole > 0 else None


def p99(values: list[float]) -> float | None:
    """Nearest-rank 99th percentile (None for no samples); the same rule on every origin."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(0.99 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class ConsistencyFigures:
    """One shop's evidence since a moment (all counts are of recorded samples). Every field defaults
    to "nothing recorded", so a shop without samples is `ConsistencyFigures()`."""

    comparisons: int = 0
    confirmed: int = 0
    transient: int = 0
    noise_comparisons: int = 0
    noise_mismatches: int = 0
    verified: int = 0
    divergent: int = 0
    v2_reads: int = 0
    v2_errors: int = 0
    v2_p99_ms: float | None = None
    legacy_p99_ms: float | None = None

    @property
    def mismatch_rate(self) -> float | None:
        """Confirmed mismatches (shadow and dual-write divergences) per comparison."""
        return rate(self.confirmed + self.divergent, self.comparisons + self.verified + self.divergent)

    @property
    def mismatch_upper(self) -> float:
        """Wilson 95% upper bound of `mismatch_rate` (1.0 without samples)."""
        return wilson_upper(self.confirmed + self.divergent, self.comparisons + self.verified + self.divergent)

    @property
    def noise_rate(self) -> float | None:
        return rate(self.noise_mismatches, self.noise_comparisons)

    @property
    def noise_upper(self) -> float:
        return wilson_upper(self.noise_mismatches, self.noise_comparisons)

    @property
    def error_rate(self) -> float | None:
        return rate(self.v2_errors, self.v2_reads)

    @property
    def p99_ratio(self) -> float | None:
        """V2 p99 over legacy p99; None when either origin has no samples (or legacy is 0)."""
        if self.v2_p99_ms is None or not self.legacy_p99_ms:
            return None
        return self.v2_p99_ms / self.legacy_p99_ms


# ---- the normalised projection's diff -------------------------------------------------------


def diff_fields(left: Any, right: Any, path: str = "") -> list[str]:
    """Paths of the fields that differ between two normalised projections (sorted, deduplicated).

    Dicts are compared key by key (a missing key differs), lists item by item (a length
    difference names the list itself), anything else by equality. `bundles[gid].name` style
    paths make a diff readable without the two documents. One side None (that origin has no
    answer): `presence`.
    """
    if (left is None) != (right is None):
        return [path or "presence"]  # one side has no answer at all
    out: set[str] = set()
    _diff(left, right, path, out)
    return sorted(out)


def field_label(path: str) -> str:
    """A diff path reduced to its field name, for metric labels (no ids, no indexes)."""
    last = path.rsplit(".", 1)[-1] if "." in path and not path.endswith("/") else path
    last = last.split("[", 1)[0]
    return "presence" if last.startswith("gid:") or last.startswith("ai:") or last in ("", "$") else last


def _diff(left: Any, right: Any, path: str, out: set[str]) -> None:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in set(left) | set(right):
            sub = f"{path}.{key}" if path else str(key)
            if key not in left or key not in right:
                out.add(sub)
            else:
                _diff(left[key], right[key], sub, out)
        return
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            out.add(path or "$")
            return
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _diff(a, b, f"{path}[{index}]", out)
        return
    if left != right:
        out.add(path or "$")


# ---- since when a shop reads from V2 ----------------------------------------------------------


def reads_v2_since(
    shop: str, current: FlagState, audit_newest_first: Sequence[Mapping[str, Any]]
) -> tuple[bool, datetime | None]:
    """(reads from V2 now, since when) for `shop`, from the stored `V2_BUNDLE_ENGINE` state and its
    audit entries (`oldValue`/`newValue` as stored, newest first). The moment is that of the latest
    entry that switched the shop from legacy reads to V2 reads; None when the shop reads legacy, or
    when no entry says (it has read from V2 since before the audit began: everything counts)."""
    if not evaluate_state(current, shop, None).value:
        return False, None
    for entry in audit_newest_first:
        new = _state_of(current.name, entry.get("newValue"))
        old = _state_of(current.name, entry.get("oldValue"))
        if evaluate_state(new, shop, None).value and not evaluate_state(old, shop, None).value:
            moment = entry.get("changedAt")
            return True, moment if isinstance(moment, datetime) else None
    return True, None


def _state_of(name: str, values: Any) -> FlagState:
    """A flag state from an audit value (None: the row did not exist, i.e. the default, off)."""
    if not isinstance(values, Mapping):
        return FlagState(name)
    return FlagState.from_row({"name": name, "sampleRate": 0, **values})


# ---- what only V2 holds -------------------------------------------------------------------------

#: Reasons a V2 bundle holds something the legacy tables cannot, in the order they are listed.
V2_ONLY_REASONS: Final = (
    "not_representable",  # no metaobject or no active discount: no bundle_discount_id row at all
    "ai_only",  # an AI bundle without a legacy AI id: no ai_fbt_bundles row
    "ai_fields",  # an AI bundle's name, title, description or pricing: ai_fbt_bundles has no column for them
    "draft",  # the legacy app has no drafts: the legacy store shows the bundle as active
    "variant",
    "quantity",
    "duplicate_product",
    "fractional_percentage",
    "pricing_not_representable",
    "tags_or_images",  # V2-only fields
)


def v2_only_reasons(bundle: Mapping[str, Any]) -> list[str]:
    """What the legacy tables would lose of this V2 bundle (a `repos.bundles.fetch_full` row), in
    `V2_ONLY_REASONS` order; empty when the legacy store holds it whole. The metaobject's
    approximations are `legacy_metaobject_fields`' (the description fallback loses nothing)."""
    found: set[str] = set()
    metadata = bundle.get("metadata") if isinstance(bundle.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    if metadata.get("source") == "AI":
        found.add("ai_fields" if metadata.get("ai_bundle_id") else "ai_only")
    elif not bundle.get("shopifyMetaobjectId") or not any(d.get("isActive") for d in bundle.get("discounts") or ()):
        found.add("not_representable")
    else:
        _fields, approximations = legacy_metaobject_fields(bundle)
        found.update(a for a in approximations if a != "description_fallback")
        if bundle.get("status") != "ACTIVE":
            found.add("draft")
    if bundle.get("tags") or bundle.get("images"):
        found.add("tags_or_images")
    return [reason for reason in V2_ONLY_REASONS if reason in found]
