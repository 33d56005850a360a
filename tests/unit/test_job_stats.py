"""Job stats math (progress, rate, ETA), the API view of a job row, and outcome settlement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.services.migration.items.common import ItemOutcome
from app.services.migration.jobs import (
    RESTART_DETAIL,
    ClaimedItem,
    compute_eta,
    compute_progress,
    compute_rate,
    job_out,
    running_seconds,
    settle_outcomes,
    shops_with_work,
)


def test_progress_is_a_clamped_fraction() -> None:
    assert compute_progress(200, 50, finished=False) == 0.25
    assert compute_progress(200, 200, finished=True) == 1.0
    assert compute_progress(10, 12, finished=False) == 1.0  # never above 1
    assert compute_progress(0, 0, finished=False) == 0.0  # empty job: 0 until finished
    assert compute_progress(0, 0, finished=True) == 1.0


def test_running_seconds_leave_pauses_out() -> None:
    assert running_seconds(None, 100.0) == 0.0  # not started
    assert running_seconds(100.0, 160.0) == 60.0
    assert running_seconds(100.0, 160.0, paused_s=20.0) == 40.0  # finished pauses
    assert running_seconds(100.0, 160.0, paused_s=10.0, paused_at=150.0) == 40.0  # paused right now
    assert running_seconds(100.0, 160.0, paused_at=90.0) == 0.0  # paused before it started
    assert running_seconds(100.0, 90.0) == 0.0  # clock skew never goes negative


def test_rate_and_eta() -> None:
    assert compute_rate(0, 10.0) == 0.0
    assert compute_rate(100, 0.0) == 0.0
    assert compute_rate(100, 20.0) == 5.0
    assert compute_eta(1000, 100, 5.0, "running") == 180.0
    assert compute_eta(1000, 1000, 0.0, "succeeded") == 0.0
    assert compute_eta(1000, 100, 0.0, "running") is None  # no rate yet
    assert compute_eta(1000, 100, 5.0, "paused") is None  # not progressing
    assert compute_eta(1000, 100, 5.0, "cancelled") is None


def _row(**over: object) -> dict[str, object]:
    started = datetime(2026, 1, 1, 12, 0, 0)
    row: dict[str, object] = {
        "id": "cjob",
        "kind": "bundles",
        "status": "running",
        "dryRun": False,
        "shops": ["a.myshopify.com", "b.myshopify.com"],
        "batchSize": 50,
        "parentJobId": None,
        "total": 100,
        "processed": 40,
        "migrated": 30,
        "failed": 6,
        "skipped": 4,
        "perShop": {
            "b.myshopify.com": {"total": 40, "migrated": 10, "failed": 0, "skipped": 0},
            "a.myshopify.com": {"total": 60, "migrated": 20, "failed": 6, "skipped": 4},
        },
        "checkpoint": {"shops": {}, "pausedS": 0.0},
        "lastError": None,
        "createdAt": started - timedelta(seconds=5),
        "startedAt": started,
        "finishedAt": None,
        "updatedAt": started,
        "dbNow": started + timedelta(seconds=20),
    }
    row.update(over)
    return row


def test_job_out_derives_stats_from_the_row() -> None:
    job = job_out(_row())
    assert job.stats.model_dump() == {"total": 100, "migrated": 30, "failed": 6, "skipped": 4, "processed": 40}
    assert job.progress == 0.4
    assert job.ratePerSecond == 2.0  # 40 items in 20 s
    assert job.etaSeconds == 30.0  # 60 left at 2/s
    assert [s.shop for s in job.perShop] == ["a.myshopify.com", "b.myshopify.com"]
    assert sum(s.total for s in job.perShop) == job.stats.total
    assert job.statusUrl == "/admin/migrations/jobs/cjob"
    assert job.createdAt.tzinfo is not None  # serialised with an explicit UTC offset


def test_job_out_paused_and_finished() -> None:
    started = datetime(2026, 1, 1, 12, 0, 0)
    paused = job_out(
        _row(status="paused", checkpoint={"pausedS": 0.0, "pausedAt": started.replace(tzinfo=UTC).timestamp() + 10})
    )
    assert paused.etaSeconds is None
    assert paused.ratePerSecond == 4.0  # 40 items in the 10 s before the pause
    finished = job_out(
        _row(
            status="succeeded",
            processed=100,
            migrated=90,
            failed=6,
            skipped=4,
            finishedAt=started + timedelta(seconds=50),
        )
    )
    assert finished.progress == 1.0 and finished.etaSeconds == 0.0
    assert finished.ratePerSecond == 2.0  # 100 items in 50 s: the clock stops at finishedAt


def test_shops_with_work_reads_counters_only() -> None:
    assert shops_with_work(_row()) == ["a.myshopify.com", "b.myshopify.com"]
    done = {"a.myshopify.com": {"total": 2, "migrated": 1, "failed": 1, "skipped": 0}}
    assert shops_with_work(_row(perShop=done)) == []


def _claimed(legacy_id: str, attempts: int = 1, was_claimed: bool = False) -> ClaimedItem:
    return ClaimedItem("bundle", legacy_id, position=0, attempts=attempts, was_claimed=was_claimed)


def test_settle_maps_outcomes() -> None:
    claimed = [_claimed("a"), _claimed("b"), _claimed("c"), _claimed("d", was_claimed=True), _claimed("e")]
    outcomes = [
        ItemOutcome("a", "migrated", v2_id="v2a"),
        ItemOutcome("b", "failed", reason="metaobject_not_found", detail="gone"),
        ItemOutcome("c", "skipped", reason="already_migrated", v2_id="v2c"),  # migrated before this job
        ItemOutcome("d", "skipped", reason="already_migrated", v2_id="v2d"),  # our killed attempt wrote it
        # "e": no outcome reported at all
    ]
    writes = {w.legacy_id: w for w in settle_outcomes(claimed, outcomes, max_attempts=5)}
    assert (writes["a"].status, writes["a"].v2_id) == ("migrated", "v2a")
    assert (writes["b"].status, writes["b"].reason) == ("failed", "metaobject_not_found")
    assert (writes["c"].status, writes["c"].reason) == ("skipped", "already_migrated")
    assert (writes["d"].status, writes["d"].detail) == ("migrated", RESTART_DETAIL)
    assert (writes["e"].status, writes["e"].reason, writes["e"].keep_claim) == ("pending", "internal_error", True)


@pytest.mark.parametrize(("attempts", "status"), [(1, "pending"), (4, "pending"), (5, "failed")])
def test_transient_outcomes_retry_until_max_attempts(attempts: int, status: str) -> None:
    outcome = ItemOutcome("a", "failed", reason="shopify_unavailable", detail="503", transient=True)
    (write,) = settle_outcomes([_claimed("a", attempts=attempts)], [outcome], max_attempts=5)
    assert write.status == status
    assert write.reason == "shopify_unavailable"
    assert not write.keep_claim  # Shopify never answered: nothing was written


def test_batch_exception_retries_keeping_the_claim_then_fails() -> None:
    (retry,) = settle_outcomes([_claimed("a", attempts=1)], None, max_attempts=3, error="boom")
    assert (retry.status, retry.reason, retry.detail, retry.keep_claim) == ("pending", "internal_error", "boom", True)
    (final,) = settle_outcomes([_claimed("a", attempts=3)], None, max_attempts=3, error="boom")
    assert (final.status, final.reason) == ("failed", "internal_error")


def test_transient_retry_keeps_the_mark_of_an_interrupted_attempt() -> None:
    """Killed after writing (attempt 1), transient on attempt 2, already_migrated on attempt 3:
    still migrated, because the mark of attempt 1 survives attempt 2."""
    transient = ItemOutcome("a", "failed", reason="shopify_unavailable", transient=True)
    (retry,) = settle_outcomes([_claimed("a", attempts=2, was_claimed=True)], [transient], max_attempts=5)
    assert (retry.status, retry.keep_claim) == ("pending", True)
    again = ItemOutcome("a", "skipped", reason="already_migrated", v2_id="v2a")
    (final,) = settle_outcomes([_claimed("a", attempts=3, was_claimed=True)], [again], max_attempts=5)
    assert final.status == "migrated"
