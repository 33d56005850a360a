"""Flag evaluation rules and migration-stage mapping, pure: a FlagStore built from a snapshot, no database."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from app.core.config import FLAG_NAMES, Settings
from app.rules.flags import DEFAULT_STATES, Flag, FlagState, evaluate_state, rollout_bucket
from app.rules.stages import STAGE_TABLE, STAGES, stage_of, stage_values
from app.services.flags.snapshot import FlagStore, UnknownFlag

SHOPS = [f"shop-{i}.myshopify.com" for i in range(1000)]


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell (or CI) exporting FEATURE_FLAG_* must not change these rules' outcome."""
    for name in FLAG_NAMES:
        monkeypatch.delenv(f"FEATURE_FLAG_{name}", raising=False)


def state(
    name: str = Flag.V2_BUNDLE_ENGINE,
    *,
    enabled: bool = False,
    rollout_percent: int = 0,
    shop_overrides: dict[str, bool] | None = None,
    sample_rate: float = 0.0,
) -> FlagState:
    return FlagState(
        name,
        enabled=enabled,
        rollout_percent=rollout_percent,
        shop_overrides=MappingProxyType(dict(shop_overrides or {})),
        sample_rate=sample_rate,
    )


def store(*states: FlagState) -> FlagStore:
    return FlagStore(Settings(), states)


def test_defaults_without_rows() -> None:
    s = store()
    assert s.is_enabled(Flag.DUAL_WRITE, "a.myshopify.com") is True
    for name in (Flag.V2_BUNDLE_ENGINE, Flag.V2_PRICING_ENGINE, Flag.SHADOW_READS):
        result = s.evaluate(name, "a.myshopify.com")
        assert (result.value, result.reason) == (False, "default")
    assert s.sample_rate(Flag.SHADOW_READS, "a.myshopify.com") == 0.0
    assert [st.name for st in s.states()] == list(FLAG_NAMES)


def test_order_shop_override_beats_rollout_and_default() -> None:
    shop = "pinned.myshopify.com"
    on_everywhere = state(enabled=True, rollout_percent=100, shop_overrides={shop: False})
    result = evaluate_state(on_everywhere, shop, env=None)
    assert (result.value, result.reason) == (False, "shop_override")
    other = evaluate_state(on_everywhere, "other.myshopify.com", env=None)
    assert (other.value, other.reason) == (True, "default")

    off_everywhere = state(enabled=False, rollout_percent=0, shop_overrides={shop: True})
    assert evaluate_state(off_everywhere, shop, env=None).reason == "shop_override"
    assert evaluate_state(off_everywhere, shop, env=None).value is True


def test_order_env_beats_everything() -> None:
    shop = "pinned.myshopify.com"
    st = state(enabled=True, rollout_percent=100, shop_overrides={shop: True})
    result = evaluate_state(st, shop, env=False)
    assert (result.value, result.reason) == (False, "env")
    result = evaluate_state(state(), None, env=True)
    assert (result.value, result.reason) == (True, "env")


def test_env_variable_beats_shop_override(monkeypatch: pytest.MonkeyPatch) -> None:
    shop = "pinned.myshopify.com"
    s = store(state(Flag.V2_BUNDLE_ENGINE, enabled=True, shop_overrides={shop: True}))
    assert s.evaluate(Flag.V2_BUNDLE_ENGINE, shop).reason == "shop_override"

    monkeypatch.setenv("FEATURE_FLAG_V2_BUNDLE_ENGINE", "false")
    result = s.evaluate(Flag.V2_BUNDLE_ENGINE, shop)
    assert (result.value, result.reason) == (False, "env")
    assert s.env_override(Flag.V2_BUNDLE_ENGINE) is False
    # Only the named flag is overridden.
    assert s.env_override(Flag.V2_PRICING_ENGINE) is None

    monkeypatch.setenv("FEATURE_FLAG_V2_BUNDLE_ENGINE", "not-a-boolean")
    assert s.evaluate(Flag.V2_BUNDLE_ENGINE, shop).reason == "shop_override", "junk is ignored, not 'false'"


def test_rollout_only_adds_shops_while_disabled() -> None:
    in_bucket = next(s for s in SHOPS if rollout_bucket(Flag.V2_BUNDLE_ENGINE, s) < 30)
    out_bucket = next(s for s in SHOPS if rollout_bucket(Flag.V2_BUNDLE_ENGINE, s) >= 30)
    st = state(enabled=False, rollout_percent=30)
    inside = evaluate_state(st, in_bucket, None)
    assert (inside.value, inside.reason) == (True, "rollout")
    out = evaluate_state(st, out_bucket, None)
    assert (out.value, out.reason) == (False, "default")
    # Global question (no shop): a partial rollout does not switch the global answer.
    assert evaluate_state(st, None, None).value is False
    # enabled=true: everyone on, the percentage is moot.
    assert evaluate_state(state(enabled=True, rollout_percent=30), out_bucket, None).value is True
    # 100 % while disabled: everyone on (also the global answer), reason rollout.
    full = state(enabled=False, rollout_percent=100)
    assert all(evaluate_state(full, s, None).value for s in SHOPS[:50])
    assert evaluate_state(full, None, None).reason == "rollout"
    # 0 %: nobody.
    assert not any(evaluate_state(state(rollout_percent=0), s, None).value for s in SHOPS)


def test_rollout_is_stable_and_roughly_proportional() -> None:
    for percent in (1, 10, 25, 50, 90):
        st = state(enabled=False, rollout_percent=percent)
        on = [s for s in SHOPS if evaluate_state(st, s, None).value]
        # Binomial(1000, p): 5 standard deviations either side never fails by chance.
        sd = (1000 * percent / 100 * (1 - percent / 100)) ** 0.5
        assert abs(len(on) - 10 * percent) <= 5 * sd + 1, (percent, len(on))
        # Same answer every time (and the hash is not Python's per-process salted hash()).
        assert on == [s for s in SHOPS if evaluate_state(st, s, None).value]
    # Monotone: raising the percentage keeps every shop that was already in.
    at_20 = {s for s in SHOPS if evaluate_state(state(rollout_percent=20), s, None).value}
    at_40 = {s for s in SHOPS if evaluate_state(state(rollout_percent=40), s, None).value}
    assert at_20 < at_40


def test_rollout_bucket_is_the_documented_hash() -> None:
    import hashlib

    shop = "stable.myshopify.com"
    expected = int(hashlib.sha256(f"V2_BUNDLE_ENGINE:{shop}".encode()).hexdigest()[:8], 16) % 100
    assert rollout_bucket("V2_BUNDLE_ENGINE", shop) == expected
    # Independent per flag: the two engines do not select the very same slice.
    engine = {s for s in SHOPS if rollout_bucket(Flag.V2_BUNDLE_ENGINE, s) < 50}
    pricing = {s for s in SHOPS if rollout_bucket(Flag.V2_PRICING_ENGINE, s) < 50}
    assert engine != pricing


def test_sample_rate_is_zero_when_shadow_reads_off_for_the_shop() -> None:
    shop, excluded = "a.myshopify.com", "b.myshopify.com"
    s = store(state(Flag.SHADOW_READS, enabled=True, sample_rate=0.25, shop_overrides={excluded: False}))
    assert s.sample_rate(Flag.SHADOW_READS, shop) == 0.25
    assert s.sample_rate(Flag.SHADOW_READS, excluded) == 0.0
    assert store(state(Flag.SHADOW_READS, enabled=False, sample_rate=0.25)).sample_rate(Flag.SHADOW_READS, shop) == 0


def test_unknown_flag_raises() -> None:
    with pytest.raises(UnknownFlag):
        store().evaluate("NOPE", None)
    with pytest.raises(UnknownFlag):
        store().state("NOPE")


def test_from_row_drops_junk_and_clamps() -> None:
    st = FlagState.from_row(
        {
            "name": "SHADOW_READS",
            "enabled": True,
            "rolloutPercent": 250,
            "shopOverrides": {"a.myshopify.com": True, "b.myshopify.com": "yes"},
            "sampleRate": 3.0,
        }
    )
    assert dict(st.shop_overrides) == {"a.myshopify.com": True}
    assert st.rollout_percent == 100 and st.sample_rate == 1.0


def test_evaluations_are_tallied_and_flushed() -> None:
    s = store()
    for _ in range(3):
        s.is_enabled(Flag.DUAL_WRITE, "a.myshopify.com")
    assert s._tally[(Flag.DUAL_WRITE, True, "default")] == 3
    s.flush_metrics()
    assert s._tally == {}


def test_apply_replaces_only_the_written_flags() -> None:
    s = store()
    s.apply([state(Flag.V2_PRICING_ENGINE, enabled=True)])
    assert s.is_enabled(Flag.V2_PRICING_ENGINE) is True
    assert s.is_enabled(Flag.DUAL_WRITE) is True  # untouched default


# ------------------------------------------------------------------------------------------ stages


def _states_for(stage: str) -> dict[str, FlagState]:
    out = {}
    for name in FLAG_NAMES:
        values = stage_values(stage, DEFAULT_STATES[name], None)  # type: ignore[arg-type]
        out[name] = FlagState.from_row({"name": name, **values})
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_round_trips(stage: str) -> None:
    states = _states_for(stage)
    assert stage_of(states) == stage
    s = store(*states.values())
    for name, on in STAGE_TABLE[stage].items():  # type: ignore[index]
        assert s.is_enabled(name, "any.myshopify.com") is on, (stage, name)


def test_stage_table_matches_the_plan() -> None:
    # reads legacy until live; dual writes until complete; shadow only while both stores are written
    assert [STAGE_TABLE[s][Flag.V2_BUNDLE_ENGINE] for s in STAGES] == [False, False, False, True, True, True]
    assert [STAGE_TABLE[s][Flag.DUAL_WRITE] for s in STAGES] == [False, True, True, True, True, False]
    assert [STAGE_TABLE[s][Flag.SHADOW_READS] for s in STAGES] == [False, False, True, True, False, False]
    assert [STAGE_TABLE[s][Flag.V2_PRICING_ENGINE] for s in STAGES] == [False, False, False, True, True, True]
    # The defaults (no rows yet) are the dual-write stage.
    assert stage_of(dict(DEFAULT_STATES)) == "dualwrite"


def test_shadow_sample_rate_choice() -> None:
    shadow = DEFAULT_STATES[Flag.SHADOW_READS]
    assert stage_values("shadow", shadow, None)["sampleRate"] == 0.1
    assert stage_values("shadow", shadow, 0.3)["sampleRate"] == 0.3
    tuned = state(Flag.SHADOW_READS, enabled=True, sample_rate=0.5)
    assert stage_values("live", tuned, None)["sampleRate"] == 0.5
    # Turning shadow off leaves the rate as stored, for the next time it is turned on.
    assert stage_values("rampdown", tuned, None)["sampleRate"] == 0.5


def test_partial_states_are_custom() -> None:
    states = _states_for("live")
    states[Flag.V2_BUNDLE_ENGINE] = state(Flag.V2_BUNDLE_ENGINE, rollout_percent=50)
    assert stage_of(states) == "custom"
    states = _states_for("dualwrite")
    states[Flag.V2_BUNDLE_ENGINE] = state(Flag.V2_BUNDLE_ENGINE, shop_overrides={"a.myshopify.com": True})
    assert stage_of(states) == "custom"
    # enabled with rollout 0 is as "on" as rollout 100.
    states = _states_for("complete")
    states[Flag.V2_PRICING_ENGINE] = state(Flag.V2_PRICING_ENGINE, enabled=True, rollout_percent=0)
    assert stage_of(states) == "complete"
