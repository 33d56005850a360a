"""The guarded rollout's pure rules: the stage path, the guards, and the decision for one shop."""

from __future__ import annotations

import pytest

from app.rules.consistency import ConsistencyFigures, wilson_upper
from app.rules.flags import DEFAULT_STATES, FlagState
from app.rules.rollouts import (
    Evidence,
    Guards,
    decide,
    flags_guard,
    guard_values,
    next_stage,
    stored_stage_of,
    tripped,
    wilson_lower,
)
from app.rules.stages import STAGE_TABLE

FAST = Guards(min_comparisons=20, max_mismatch_rate=0.2, min_dwell_seconds=1)


def evidence(dwell: float = 10.0, validation: bool | None = True, **kw: int | float | None) -> Evidence:
    return Evidence(figures=ConsistencyFigures(**kw), validation_ok=validation, dwell_seconds=dwell)


def test_next_stage_walks_one_stage_at_a_time() -> None:
    assert next_stage("off", "live") == "dualwrite"
    assert next_stage("custom", "live") == "dualwrite"
    assert next_stage("dualwrite", "live") == "shadow"
    assert next_stage("shadow", "live") == "live"
    assert next_stage("live", "live") is None
    assert next_stage("rampdown", "live") is None  # never backwards
    assert next_stage("live", "complete") == "rampdown"


def test_wilson_lower_mirrors_upper() -> None:
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(0, 400) == 0.0
    assert wilson_lower(10, 10) == pytest.approx(1 - wilson_upper(0, 10))
    low, high = wilson_lower(5, 100), wilson_upper(5, 100)
    assert 0 < low < 0.05 < high < 1


def test_default_thresholds_are_consistent() -> None:
    """With the defaults a clean shop can pass: 0 of minComparisons has an upper bound under the ceiling."""
    g = Guards()
    assert wilson_upper(0, g.min_comparisons) <= g.max_mismatch_rate
    assert wilson_upper(0, g.min_comparisons // 2) > g.max_mismatch_rate  # and fewer are not enough


def test_guards_from_api_keeps_defaults_for_missing_keys() -> None:
    g = Guards.from_api({"minComparisons": 5, "sampleRate": None})
    assert g.min_comparisons == 5 and g.max_mismatch_rate == Guards().max_mismatch_rate
    assert Guards.from_api(g.to_api()) == g


def test_waiting_shop_starts_only_when_its_wave_opens_and_running() -> None:
    kw = dict(stage="off", state="waiting", target="live", guards=FAST, evidence=None)
    assert decide(status="running", wave_open=False, **kw).action == "none"  # type: ignore[arg-type]
    assert decide(status="paused", wave_open=True, **kw).action == "none"  # type: ignore[arg-type]
    d = decide(status="running", wave_open=True, **kw)  # type: ignore[arg-type]
    assert (d.action, d.to_stage, d.to_state) == ("start", "dualwrite", "observing")  # off: dual writes first
    d = decide(status="running", wave_open=True, **{**kw, "stage": "dualwrite"})  # type: ignore[arg-type]
    assert (d.action, d.to_stage, d.to_state) == ("start", "dualwrite", "observing")  # observed where it is
    d = decide(status="running", wave_open=True, **{**kw, "stage": "live"})  # type: ignore[arg-type]
    assert (d.action, d.to_state) == ("done", "done")


def test_clean_shadow_shop_advances_to_live_and_is_done_at_target() -> None:
    d = decide(
        stage="shadow",
        state="observing",
        target="live",
        status="running",
        wave_open=True,
        guards=FAST,
        evidence=evidence(comparisons=50),
    )
    assert (d.action, d.to_stage, d.to_state) == ("advance", "live", "done")
    assert all(v.ok for v in d.values)


@pytest.mark.parametrize(
    ("ev", "failing"),
    [
        (evidence(comparisons=5), "minComparisons"),
        (evidence(dwell=0.2, comparisons=50), "minDwellSeconds"),
        (evidence(validation=False, comparisons=50), "validation"),
        (evidence(validation=None, comparisons=50), "validation"),
        (evidence(comparisons=50, confirmed=20), "maxMismatchRate"),
        (evidence(comparisons=50, divergent=1, verified=3), "divergent"),
        (evidence(comparisons=50, v2_reads=100, v2_errors=30), "maxErrorRate"),
        (evidence(comparisons=50, v2_reads=100, v2_p99_ms=30.0, legacy_p99_ms=10.0), "maxP99Ratio"),
    ],
)
def test_each_guard_blocks_an_advance(ev: Evidence, failing: str) -> None:
    d = decide(
        stage="shadow", state="observing", target="live", status="running", wave_open=True, guards=FAST, evidence=ev
    )
    assert d.action in ("observe", "hold")
    assert d.to_stage == "shadow"
    assert failing in [v.name for v in d.values if not v.ok]


def test_too_few_samples_observe_while_harm_holds() -> None:
    few = decide(
        stage="shadow",
        state="observing",
        target="live",
        status="running",
        wave_open=True,
        guards=FAST,
        evidence=evidence(comparisons=5),
    )
    assert few.to_state == "observing"
    bad = decide(
        stage="shadow",
        state="observing",
        target="live",
        status="running",
        wave_open=True,
        guards=FAST,
        evidence=evidence(comparisons=50, confirmed=20),
    )
    assert bad.to_state == "held"


def test_paused_rollout_does_not_advance() -> None:
    d = decide(
        stage="shadow",
        state="observing",
        target="live",
        status="paused",
        wave_open=True,
        guards=FAST,
        evidence=evidence(comparisons=50),
    )
    assert d.action == "none" and d.to_stage == "shadow"


def test_guard_trips_while_live_even_when_paused_or_done() -> None:
    harm = evidence(comparisons=30, confirmed=15)
    for status, state in (("running", "done"), ("paused", "done"), ("running", "observing")):
        d = decide(stage="live", state=state, target="live", status=status, wave_open=True, guards=FAST, evidence=harm)  # type: ignore[arg-type]
        assert (d.action, d.to_stage, d.to_state) == ("step_back", "shadow", "rolled_back")
        assert "maxMismatchRate" in d.reason


def test_no_samples_trip_nothing() -> None:
    """A shop that just went live has no samples: absence of evidence is not harm."""
    assert tripped("live", FAST, evidence(dwell=0)) == []
    assert tripped("live", FAST, evidence(comparisons=100, confirmed=1)) == []  # one unlucky mismatch
    assert tripped("shadow", FAST, evidence(comparisons=30, confirmed=30)) == []  # reads are legacy already


def test_divergence_and_validation_trip_live() -> None:
    assert any("divergent" in r for r in tripped("live", FAST, evidence(divergent=1, verified=10)))
    assert any("validation" in r for r in tripped("rampdown", FAST, evidence(validation=False)))
    assert tripped("live", FAST, evidence(validation=None)) == []  # unknown is not harm


def test_rolled_back_stays_until_resume() -> None:
    d = decide(
        stage="shadow",
        state="rolled_back",
        target="live",
        status="running",
        wave_open=True,
        guards=FAST,
        evidence=evidence(comparisons=500),
    )
    assert d.action == "none" and d.to_state == "rolled_back"


def test_dualwrite_has_no_comparison_guards() -> None:
    names = [v.name for v in guard_values("dualwrite", FAST, evidence())]
    assert "minComparisons" not in names and "validation" in names and "minDwellSeconds" in names
    d = decide(
        stage="dualwrite",
        state="observing",
        target="live",
        status="running",
        wave_open=True,
        guards=FAST,
        evidence=evidence(),
    )
    assert (d.action, d.to_stage, d.to_state) == ("advance", "shadow", "observing")


def test_stored_stage_of_a_shop() -> None:
    shop = "a.myshopify.com"
    assert stored_stage_of(DEFAULT_STATES, shop) == "dualwrite"  # the stored defaults
    pinned = {name: FlagState(name, shop_overrides={shop: on}) for name, on in STAGE_TABLE["live"].items()}
    assert stored_stage_of(pinned, shop) == "live"
    assert stored_stage_of(pinned, "b.myshopify.com") == "off"  # other shops: the (all off) defaults
    mixed = {**pinned, "DUAL_WRITE": FlagState("DUAL_WRITE", shop_overrides={shop: False})}
    assert stored_stage_of(mixed, shop) == "custom"
    assert flags_guard("live", "live").ok and not flags_guard("custom", "live").ok


def test_complete_is_never_stepped_back_automatically() -> None:
    """In `complete` the legacy tables no longer receive writes: reading them again is a person's call."""
    harm = evidence(comparisons=30, confirmed=30, divergent=1, validation=False)
    assert tripped("rampdown", FAST, harm)
    assert tripped("complete", FAST, harm) == []
