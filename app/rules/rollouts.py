"""Guarded rollouts as pure rules: the stage path a rollout walks, the guard thresholds and their
defaults, and the decision taken for one shop from its evidence (docs/feature-flags.md, "Guarded
rollouts"). The driver (`app.services.rollouts`) does the I/O and applies the decision.

Two directions, two standards of evidence:

* **to advance**, a shop must show it is good: enough comparisons, and the Wilson 95% *upper*
  bound of its confirmed-mismatch rate under `maxMismatchRate` (0 of 400 gives 0.95%, under the
  default 1%; 0 of 20 gives 16%, which is not evidence of anything);
* **to step back** from `live` or `rampdown`, the evidence must show it is bad: the Wilson 95%
  *lower* bound of the confirmed rate over `maxMismatchRate` (so one unlucky mismatch among many
  clean comparisons does not flap a shop back and forth), any dual-write divergence, the error rate's
  lower bound over `maxErrorRate`, a p99 ratio over `maxP99Ratio` on enough reads, or a validation
  that is no longer clean. A shop that just entered a stage has no samples and trips nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from app.core.config import FLAG_NAMES
from app.rules.consistency import ConsistencyFigures, wilson_upper
from app.rules.flags import DEFAULT_STATES, FlagState, evaluate_state
from app.rules.stages import STAGE_TABLE, STAGES, Stage

RolloutStatus = Literal["running", "paused", "completed", "aborted"]
ShopState = Literal["waiting", "observing", "advancing", "held", "rolled_back", "done"]
ROLLOUT_STATUSES: Final[tuple[RolloutStatus, ...]] = ("running", "paused", "completed", "aborted")
SHOP_STATES: Final[tuple[ShopState, ...]] = ("waiting", "observing", "advancing", "held", "rolled_back", "done")
#: Statuses of an unfinished rollout (its shops are covered: another rollout may not take them).
UNFINISHED: Final[tuple[RolloutStatus, ...]] = ("running", "paused")
#: Stages a rollout may target (it never moves a shop to `off`).
TARGET_STAGES: Final[tuple[Stage, ...]] = ("dualwrite", "shadow", "live", "rampdown", "complete")
#: Stages a tripped guard sends a shop back from, to `shadow`: it reads from V2 there while the legacy
#: tables are still written. Not `complete`: dual writes are off there, so the legacy tables miss
#: the writes since, and reading them again is a person's decision (the rollback procedure).
STEP_BACK_STAGES: Final[tuple[Stage, ...]] = ("live", "rampdown")
#: Where a shop stepping back goes: reads from legacy, comparisons still running.
STEP_BACK_STAGE: Final[Stage] = "shadow"
#: Stages with shadow comparisons (SHADOW_READS on): only there do the comparison guards apply.
OBSERVED_STAGES: Final[tuple[Stage, ...]] = ("shadow", "live")
#: Reads needed before a p99 ratio may send a shop back (a p99 of fewer reads is a maximum).
MIN_READS_FOR_P99: Final = 100
#: Default wave size: shops that move at the same time.
DEFAULT_WAVE_SIZE: Final = 10


#: API name → attribute of `Guards`.
_GUARD_KEYS: Final = (
    ("minComparisons", "min_comparisons"),
    ("maxMismatchRate", "max_mismatch_rate"),
    ("maxErrorRate", "max_error_rate"),
    ("maxP99Ratio", "max_p99_ratio"),
    ("minDwellSeconds", "min_dwell_seconds"),
    ("sampleRate", "sample_rate"),
)


@dataclass(frozen=True, slots=True)
class Guards:
    """Thresholds of one rollout (camelCase in the API and the table). Defaults and why:
    docs/feature-flags.md, "Guarded rollouts"."""

    min_comparisons: int = 400
    max_mismatch_rate: float = 0.01
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    min_dwell_seconds: float = 600.0
    #: The shop's shadow sample rate while observed (None: the SHADOW_READS flag's own).
    sample_rate: float | None = None

    @classmethod
    def from_api(cls, values: Mapping[str, Any] | None) -> Guards:
        """From camelCase values; missing or null keys keep the default."""
        guards = cls()
        changes = {attr: values[key] for key, attr in _GUARD_KEYS if values and values.get(key) is not None}
        return replace(guards, **changes) if changes else guards

    def to_api(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in _GUARD_KEYS}


@dataclass(frozen=True, slots=True)
class GuardValue:
    """One guard as the API shows it: the measured value, its threshold, whether it holds, on how
    many samples. `value` is None when there is nothing to measure yet."""

    name: str
    value: float | None
    threshold: float
    ok: bool
    samples: int

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "ok": self.ok,
            "samples": self.samples,
        }


def wilson_lower(successes: int, trials: int) -> float:
    """Lower end of the Wilson 95% interval: the interval is symmetric under p → 1-p, so it is one
    minus the upper end of the failures' interval (0.0 without trials)."""
    if trials <= 0:
        return 0.0
    return 1.0 - wilson_upper(trials - min(max(successes, 0), trials), trials)


def next_stage(current: Stage | str, target: Stage) -> Stage | None:
    """The next stage one step toward `target` (None when the shop is there or beyond). A shop in
    `off` or on a custom mix of flags starts at `dualwrite`."""
    path = STAGES[STAGES.index("dualwrite") :]
    if current not in path:
        return "dualwrite"
    here, goal = STAGES.index(current), STAGES.index(target)
    if here >= goal:
        return None
    return STAGES[here + 1]


def stored_stage_of(states: Mapping[str, FlagState], shop: str) -> Stage | Literal["custom"]:
    """The stage the stored flags put `shop` on (environment kill switches aside: they are per
    replica and beat whatever is stored anyway); `custom` when they match no stage."""
    values = {name: evaluate_state(states.get(name) or DEFAULT_STATES[name], shop, None).value for name in FLAG_NAMES}
    for stage, table in STAGE_TABLE.items():
        if all(values[name] is on for name, on in table.items()):
            return stage
    return "custom"


def flags_guard(stored: str, stage: str) -> GuardValue:
    """Whether the shop's stored flags still put it on the stage the rollout set: when someone changed
    them outside the rollout (a global stage change, an immediate rollback, an override by hand),
    the rollout holds the shop and writes nothing for it (the person's change wins)."""
    ok = stored == stage
    return GuardValue("flagsMatchStage", 0.0 if ok else 1.0, 0.0, ok, 1)


def reached(current: Stage | str, target: Stage) -> bool:
    return current in STAGES and STAGES.index(current) >= STAGES.index(target)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the driver measured for one shop since it entered its current stage."""

    figures: ConsistencyFigures
    validation_ok: bool | None  # None: not known (the report could not be built)
    dwell_seconds: float


def guard_values(stage: Stage | str, guards: Guards, evidence: Evidence) -> list[GuardValue]:
    """Every guard's value for advancing from `stage` (the comparison guards only where shadow reads run)."""
    f = evidence.figures
    trials = f.comparisons + f.verified + f.divergent
    out: list[GuardValue] = []
    if stage in OBSERVED_STAGES:
        out.append(
            GuardValue(
                "minComparisons",
                float(f.comparisons),
                float(guards.min_comparisons),
                f.comparisons >= guards.min_comparisons,
                f.comparisons,
            )
        )
        upper = f.mismatch_upper
        out.append(
            GuardValue("maxMismatchRate", upper, guards.max_mismatch_rate, upper <= guards.max_mismatch_rate, trials)
        )
        err = f.error_rate
        out.append(
            GuardValue(
                "maxErrorRate", err, guards.max_error_rate, err is None or err <= guards.max_error_rate, f.v2_reads
            )
        )
        ratio = f.p99_ratio
        out.append(
            GuardValue(
                "maxP99Ratio", ratio, guards.max_p99_ratio, ratio is None or ratio <= guards.max_p99_ratio, f.v2_reads
            )
        )
    out.append(GuardValue("divergent", float(f.divergent), 0.0, f.divergent == 0, f.verified + f.divergent))
    out.append(
        GuardValue(
            "validation",
            None if evidence.validation_ok is None else (0.0 if evidence.validation_ok else 1.0),
            0.0,
            evidence.validation_ok is True,
            1 if evidence.validation_ok is not None else 0,
        )
    )
    out.append(
        GuardValue(
            "minDwellSeconds",
            round(evidence.dwell_seconds, 3),
            guards.min_dwell_seconds,
            evidence.dwell_seconds >= guards.min_dwell_seconds,
            1,
        )
    )
    return out


def tripped(stage: Stage | str, guards: Guards, evidence: Evidence) -> list[str]:
    """Why a shop reading from V2 must step back now (empty: it stays). Needs evidence of harm, not
    its absence (module docstring)."""
    if stage not in STEP_BACK_STAGES:
        return []
    f = evidence.figures
    reasons: list[str] = []
    bad, trials = f.confirmed + f.divergent, f.comparisons + f.verified + f.divergent
    lower = wilson_lower(bad, trials)
    if lower > guards.max_mismatch_rate:
        reasons.append(f"maxMismatchRate: lower bound {lower:.4f} of {bad}/{trials} > {guards.max_mismatch_rate}")
    if f.divergent > 0:
        reasons.append(f"divergent: {f.divergent} dual-written bundles differ between the stores")
    err_lower = wilson_lower(f.v2_errors, f.v2_reads)
    if err_lower > guards.max_error_rate:
        reasons.append(
            f"maxErrorRate: lower bound {err_lower:.4f} of {f.v2_errors}/{f.v2_reads} > {guards.max_error_rate}"
        )
    ratio = f.p99_ratio
    if ratio is not None and f.v2_reads >= MIN_READS_FOR_P99 and ratio > guards.max_p99_ratio:
        reasons.append(f"maxP99Ratio: {ratio:.2f} > {guards.max_p99_ratio} on {f.v2_reads} reads")
    if evidence.validation_ok is False:
        reasons.append("validation: the shop's validation report is not clean")
    return reasons


Action = Literal["none", "advance", "step_back", "hold", "observe", "done", "start"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one shop: `to_stage`/`to_state` when something changes, why, and the values."""

    action: Action
    to_stage: Stage | str
    to_state: ShopState
    reason: str
    values: tuple[GuardValue, ...] = ()


def decide(
    *,
    stage: Stage | str,
    state: ShopState,
    target: Stage,
    status: RolloutStatus,
    wave_open: bool,
    guards: Guards,
    evidence: Evidence | None,
) -> Decision:
    """The next step of one shop of an unfinished rollout.

    * step-backs are armed in every state but `waiting`, also while paused;
    * `waiting` starts when its wave opens and the rollout runs: it is observed on its current stage
      (its clock starts), or moved to `dualwrite` first when it is `off` or on a custom mix of flags;
    * `rolled_back` stays until `resume` (the service turns it into `observing`);
    * otherwise a shop whose guards all hold advances one stage (`done` once at the target); one
      whose guards fail with evidence of harm is `held`, one still gathering evidence `observing`.
    """
    values = tuple(guard_values(stage, guards, evidence)) if evidence is not None else ()
    if state == "waiting":
        if status != "running" or not wave_open:
            return Decision("none", stage, state, "", values)
        if reached(stage, target):
            return Decision("done", stage, "done", f"already at {stage}", values)
        if stage in STAGES[STAGES.index("dualwrite") :]:
            # observed where it is: the guards of its current stage decide its first step
            return Decision("start", stage, "observing", "wave started", values)
        return Decision("start", "dualwrite", "observing", "wave started: dual writes first", values)
    if evidence is None:
        return Decision("none", stage, state, "", values)
    trips = tripped(stage, guards, evidence)
    if trips:
        return Decision("step_back", STEP_BACK_STAGE, "rolled_back", "; ".join(trips), values)
    if state in ("rolled_back", "done") or status != "running":
        return Decision("none", stage, state, "", values)
    if reached(stage, target):
        return Decision("done", stage, "done", f"reached {target}", values)
    failing = [v for v in values if not v.ok]
    if not failing:
        step = next_stage(stage, target)
        assert step is not None
        return Decision("advance", step, "done" if step == target else "observing", _summary(values), values)
    harmful = [v for v in failing if _is_harm(v, guards)]
    to_state: ShopState = "held" if harmful else "observing"
    return Decision("hold" if harmful else "observe", stage, to_state, _summary(failing), values)


def _is_harm(value: GuardValue, guards: Guards) -> bool:
    """A failing guard that more time alone will not fix (as opposed to too few samples or dwell)."""
    if value.name in ("divergent", "validation"):
        return value.value is not None
    if value.name == "maxMismatchRate" and value.value is not None:
        # upper bound over the threshold with enough samples: the rate itself is too high
        return value.samples >= guards.min_comparisons
    return value.name in ("maxErrorRate", "maxP99Ratio")


def _summary(values: tuple[GuardValue, ...] | list[GuardValue]) -> str:
    parts = []
    for v in values:
        shown = "n/a" if v.value is None else (f"{v.value:.4g}")
        parts.append(f"{v.name}={shown} ({'ok' if v.ok else 'fails'}, threshold {v.threshold:g}, n={v.samples})")
    return ", ".join(parts)
