"""The migration stages as flag positions (docs/feature-flags.md), pure: the stage table, the stage
the stored flags are in, the values a flag gets in a stage."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from app.core.config import FLAG_NAMES
from app.rules.flags import DEFAULT_SHADOW_SAMPLE_RATE, DEFAULT_STATES, Flag, FlagState

Stage = Literal["off", "dualwrite", "shadow", "live", "rampdown", "complete"]
STAGES: tuple[Stage, ...] = ("off", "dualwrite", "shadow", "live", "rampdown", "complete")

#: The six stages of the read/write migration as global flag values (True = on for every shop).
#:
#: | stage     | DUAL_WRITE | V2_BUNDLE_ENGINE | V2_PRICING_ENGINE | SHADOW_READS | reads from / compared with |
#: |-----------|------------|------------------|-------------------|--------------|----------------------------|
#: | off       | off        | off              | off               | off          | legacy, no V2 writes       |
#: | dualwrite | on         | off              | off               | off          | legacy (plan Phase 2)      |
#: | shadow    | on         | off              | off               | on           | legacy, sampled V2 compare |
#: | live      | on         | on               | on                | on           | V2, sampled legacy compare |
#: | rampdown  | on         | on               | on                | off          | V2, legacy still written   |
#: | complete  | off        | on               | on                | off          | V2 only (plan Phase 5)     |
#:
#: Setting a stage writes, for each flag: on → enabled=true, rolloutPercent=100; off →
#: enabled=false, rolloutPercent=0; shopOverrides cleared in both cases (a stage is a whole-fleet
#: position; a leftover per-shop exception could pair V2 reads with stopped dual writes).
#: SHADOW_READS turned on takes `sampleRate` from the request, else keeps a non-zero stored rate,
#: else 0.1; otherwise `sampleRate` is left as stored. Only flags whose values change are written,
#: each with its own audit entry.
#: Reading derives the stage from the stored flags: a stage matches when every flag has no shop
#: overrides and is globally on (enabled or rolloutPercent=100) or off (disabled, rolloutPercent=0)
#: as the table says; anything else is "custom". Environment overrides do not change the stage
#: (the response lists them per flag).
STAGE_TABLE: Mapping[Stage, Mapping[str, bool]] = MappingProxyType(
    {
        "off": {
            Flag.DUAL_WRITE: False,
            Flag.V2_BUNDLE_ENGINE: False,
            Flag.V2_PRICING_ENGINE: False,
            Flag.SHADOW_READS: False,
        },
        "dualwrite": {
            Flag.DUAL_WRITE: True,
            Flag.V2_BUNDLE_ENGINE: False,
            Flag.V2_PRICING_ENGINE: False,
            Flag.SHADOW_READS: False,
        },
        "shadow": {
            Flag.DUAL_WRITE: True,
            Flag.V2_BUNDLE_ENGINE: False,
            Flag.V2_PRICING_ENGINE: False,
            Flag.SHADOW_READS: True,
        },
        "live": {
            Flag.DUAL_WRITE: True,
            Flag.V2_BUNDLE_ENGINE: True,
            Flag.V2_PRICING_ENGINE: True,
            Flag.SHADOW_READS: True,
        },
        "rampdown": {
            Flag.DUAL_WRITE: True,
            Flag.V2_BUNDLE_ENGINE: True,
            Flag.V2_PRICING_ENGINE: True,
            Flag.SHADOW_READS: False,
        },
        "complete": {
            Flag.DUAL_WRITE: False,
            Flag.V2_BUNDLE_ENGINE: True,
            Flag.V2_PRICING_ENGINE: True,
            Flag.SHADOW_READS: False,
        },
    }
)


def _global_position(state: FlagState) -> bool | None:
    """True/False when the flag is uniformly on/off for every shop; None for anything partial."""
    if state.shop_overrides:
        return None
    if state.enabled or state.rollout_percent >= 100:
        return True
    if state.rollout_percent == 0:
        return False
    return None


def stage_of(states: Mapping[str, FlagState]) -> Stage | Literal["custom"]:
    positions = {name: _global_position(states.get(name) or DEFAULT_STATES[name]) for name in FLAG_NAMES}
    for stage, table in STAGE_TABLE.items():
        if all(positions[name] is on for name, on in table.items()):
            return stage
    return "custom"


def stage_values(stage: Stage, old: FlagState, sample_rate: float | None) -> dict[str, Any]:
    """The stored values flag `old.name` gets in `stage` (pure; see `STAGE_TABLE`)."""
    on = STAGE_TABLE[stage][old.name]
    values = old.values()
    values.update(enabled=on, rolloutPercent=100 if on else 0, shopOverrides={})
    if on and old.name == Flag.SHADOW_READS:
        values["sampleRate"] = (
            sample_rate
            if sample_rate is not None
            else (old.sample_rate if old.sample_rate > 0 else DEFAULT_SHADOW_SAMPLE_RATE)
        )
    return values
