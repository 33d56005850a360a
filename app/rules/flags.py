"""Feature-flag evaluation as pure functions (docs/feature-flags.md): the four flags, a flag's stored
state, the evaluation order (env, shop override, rollout bucket, default), the stored defaults.

The replica's snapshot is `app.services.flags.snapshot`, the writes `app.services.flags.admin`; this module does no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

from app.core.config import FLAG_NAMES


class Flag(StrEnum):
    """The four flags (a `str`, so `store.is_enabled(Flag.DUAL_WRITE, shop)` reads well)."""

    V2_BUNDLE_ENGINE = "V2_BUNDLE_ENGINE"
    V2_PRICING_ENGINE = "V2_PRICING_ENGINE"
    DUAL_WRITE = "DUAL_WRITE"
    SHADOW_READS = "SHADOW_READS"


assert tuple(Flag) == FLAG_NAMES, "Flag must list app.core.config.FLAG_NAMES in order"

Reason = Literal["env", "shop_override", "rollout", "default"]

#: `sampleRate` a stage that turns shadow reads on uses when neither the request nor the flag gives one.
DEFAULT_SHADOW_SAMPLE_RATE = 0.1


@dataclass(frozen=True, slots=True)
class FlagState:
    """One flag as stored (immutable: a snapshot is shared by every concurrent request)."""

    name: str
    enabled: bool = False
    rollout_percent: int = 0
    shop_overrides: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    sample_rate: float = 0.0
    updated_at: datetime | None = None
    updated_by: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FlagState:
        """From a database row; tolerant of hand-written junk in `shopOverrides` (non-bool values are dropped)."""
        raw = row.get("shopOverrides") or {}
        overrides = {str(k): v for k, v in raw.items() if isinstance(v, bool)} if isinstance(raw, dict) else {}
        return cls(
            name=row["name"],
            enabled=bool(row["enabled"]),
            rollout_percent=max(0, min(100, int(row["rolloutPercent"]))),
            shop_overrides=MappingProxyType(overrides),
            sample_rate=max(0.0, min(1.0, float(row["sampleRate"]))),
            updated_at=row.get("updatedAt"),
            updated_by=row.get("updatedBy"),
        )

    def values(self) -> dict[str, Any]:
        """The settable part, camelCase: what the audit log records as old/new and what a write stores."""
        return {
            "enabled": self.enabled,
            "rolloutPercent": self.rollout_percent,
            "shopOverrides": dict(sorted(self.shop_overrides.items())),
            "sampleRate": self.sample_rate,
        }


@dataclass(frozen=True, slots=True)
class FlagEvaluation:
    value: bool
    reason: Reason


# Every possible evaluation, allocated once: the hot path returns shared instances.
_EVALUATIONS: dict[tuple[bool, str], FlagEvaluation] = {
    (value, reason): FlagEvaluation(value, reason)
    for value in (True, False)
    for reason in ("env", "shop_override", "rollout", "default")
}

#: Defaults when no row exists (and the rows seeded at start-up): the plan's Phase 2 starts
#: with dual writes on and reads on the legacy tables; everything else off.
DEFAULT_STATES: Mapping[str, FlagState] = MappingProxyType(
    {name: FlagState(name, enabled=(name == Flag.DUAL_WRITE)) for name in FLAG_NAMES}
)


@lru_cache(maxsize=65536)
def rollout_bucket(name: str, shop: str) -> int:
    """0-99, stable across processes, releases and replicas (unlike `hash()`), independent per flag."""
    return int(hashlib.sha256(f"{name}:{shop}".encode()).hexdigest()[:8], 16) % 100


def evaluate_state(state: FlagState, shop: str | None, env: bool | None) -> FlagEvaluation:
    """The evaluation order (docs/feature-flags.md) as a pure function of one flag's state."""
    if env is not None:
        return _EVALUATIONS[(env, "env")]
    if shop is not None:
        override = state.shop_overrides.get(shop)
        if override is not None:
            return _EVALUATIONS[(override, "shop_override")]
    if not state.enabled and state.rollout_percent > 0:
        if state.rollout_percent >= 100 or (
            shop is not None and rollout_bucket(state.name, shop) < state.rollout_percent
        ):
            return _EVALUATIONS[(True, "rollout")]
    return _EVALUATIONS[(state.enabled, "default")]


def legacy_tables_need(state: FlagState) -> str | None:
    """Why this flag state makes some shop read or write the archivable legacy tables (None: it does not)."""
    if state.name == Flag.DUAL_WRITE and (
        state.enabled or state.rollout_percent > 0 or any(state.shop_overrides.values())
    ):
        return "DUAL_WRITE on (dual writes go to the legacy tables)"
    if state.name == Flag.V2_BUNDLE_ENGINE and not (
        (state.enabled or state.rollout_percent >= 100) and all(state.shop_overrides.values())
    ):
        return "V2_BUNDLE_ENGINE off (reads come from the legacy tables)"
    return None
