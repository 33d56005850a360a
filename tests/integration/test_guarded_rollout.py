"""Guarded per-shop rollouts (api.md, "Guarded rollout"): shops advance only on evidence, step back
by themselves, pause and abort hold, and two replicas never transition a shop twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from app.core.config import FLAG_NAMES
from tests.conftest import AppFactory, new_shop
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    eventually,
    flag_state,
    metaobject_gid,
    metaobject_item,
    product_gid,
    register_shop,
)

#: A driver that ticks fast and a validation report that is not cached for long.
FAST_DRIVER = {"ROLLOUT_INTERVAL_S": 0.2, "ROLLOUT_VALIDATION_TTL_S": 0.2, "CONSISTENCY_RECHECK_DELAY_S": 0.2}
#: Guards a test can satisfy in seconds: 8 comparisons, any latency, a short dwell.
TEST_GUARDS = {
    "minComparisons": 8,
    "maxMismatchRate": 0.5,
    "maxErrorRate": 0.5,
    "maxP99Ratio": 1000,
    "minDwellSeconds": 1,
}


async def seeded_bundle(client: httpx.AsyncClient, sim: Any, shop: str) -> dict[str, Any]:
    """A bundle created through the API (dual-written) whose metaobject exists in the simulator."""
    metaobject, products = metaobject_gid(), [product_gid(), product_gid()]
    name = f"Bundle {metaobject[-6:]}"
    await sim.add_metaobjects(
        shop, [metaobject_item(metaobject, name=name, title="Legacy title", discount="15", products=products)]
    )
    body = bundle_body(name=name, metaobject=metaobject, products=products, percent="15")
    body["title"] = "Legacy title"
    body["components"] = [{"shopifyProductId": p} for p in products]
    response = await client.post(bundles_url(shop), json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def read_url(shop: str, bundle: dict[str, Any]) -> str:
    return bundles_url(shop, quote(bundle["shopifyMetaobjectId"], safe=""))


async def plant_divergence(db: asyncpg.Connection, bundle: dict[str, Any]) -> None:
    """The legacy row says something V2 does not: every comparison of this bundle differs, durably."""
    await db.execute(
        'UPDATE bundle_discount_id SET "bundleName" = $2 WHERE "bundleId" = $1',
        bundle["shopifyMetaobjectId"],
        "Renamed behind the rollout's back",
    )


@contextlib.asynccontextmanager
async def traffic(client: httpx.AsyncClient, urls: Iterable[str]) -> AsyncIterator[dict[str, Counter[str]]]:
    """Reads each url in a loop (the shadow comparisons' samples); yields the read sources seen per url."""
    seen: dict[str, Counter[str]] = {url: Counter() for url in urls}

    async def loop(url: str) -> None:
        while True:
            response = await client.get(url)
            source = response.headers.get("x-bundle-read-source")
            seen[url][source if response.status_code == 200 and source else f"status {response.status_code}"] += 1
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(loop(url)) for url in seen]
    try:
        yield seen
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@contextlib.asynccontextmanager
async def full_sampling(client: httpx.AsyncClient) -> AsyncIterator[None]:
    """Every read of a shop with shadow reads on is compared (the flag's sampleRate 1), restored after."""
    before = await flag_state(client, "SHADOW_READS")
    body = {"enabled": before["enabled"], "sampleRate": 1.0, "reason": "guarded rollout test: sample everything"}
    assert (await client.put("/admin/flags/SHADOW_READS", json=body)).status_code == 200
    try:
        yield
    finally:
        body = {"enabled": before["enabled"], "sampleRate": before["sampleRate"], "reason": "guarded rollout test done"}
        await client.put("/admin/flags/SHADOW_READS", json=body)


async def forget_shops(client: httpx.AsyncClient, shops: list[str]) -> None:
    """Drop the test shops' per-shop overrides (read-merge-write: other tests' overrides survive)."""
    for name in FLAG_NAMES:
        state = await flag_state(client, name)
        overrides = {k: v for k, v in state["shopOverrides"].items() if k not in shops}
        if overrides != state["shopOverrides"]:
            body = {"enabled": state["enabled"], "shopOverrides": overrides, "reason": "guarded rollout test cleanup"}
            assert (await client.put(f"/admin/flags/{name}", json=body)).status_code == 200


async def start_rollout(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/admin/rollouts", json={"reason": "guarded rollout test", **body})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "running" and created["statusUrl"] == f"/admin/rollouts/{created['id']}"
    assert response.headers["location"] == created["statusUrl"]
    return str(created["id"])


async def rollout(client: httpx.AsyncClient, rollout_id: str) -> dict[str, Any]:
    response = await client.get(f"/admin/rollouts/{rollout_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def shop_states(client: httpx.AsyncClient, rollout_id: str) -> dict[str, tuple[str, str]]:
    return {s["shop"]: (s["stage"], s["state"]) for s in (await rollout(client, rollout_id))["shops"]}


async def stop(client: httpx.AsyncClient, rollout_id: str, shops: list[str]) -> None:
    await client.post(f"/admin/rollouts/{rollout_id}/abort")
    await forget_shops(client, shops)


async def transitions(db: asyncpg.Connection, rollout_id: str) -> list[tuple[str, str]]:
    """(flag, reason) of every audit entry the rollout's automatic transitions wrote."""
    rows = await db.fetch(
        'SELECT "flagName", reason FROM sb_feature_flag_audit WHERE reason LIKE $1 ORDER BY id',
        f"rollout {rollout_id}: %",
    )
    return [(r["flagName"], r["reason"]) for r in rows]


def moves(entries: list[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """Each transition once per (shop, 'a → b'), however many flags it wrote."""
    out: Counter[tuple[str, str]] = Counter()
    for reason in dict.fromkeys(reason for _, reason in entries):
        head = reason.split(": ", 2)[1]  # "<shop> <from> → <to>"
        shop, step = head.split(" ", 1)
        out[(shop, step)] += 1
    return out


# -------------------------------------------------------------------------------------------- tests


async def test_planted_divergence_keeps_its_shop_back_and_a_live_shop_steps_back(
    app_factory: AppFactory, sim: Any, db: asyncpg.Connection
) -> None:
    shops = [new_shop("gr") for _ in range(3)]
    async with app_factory(**FAST_DRIVER) as client, full_sampling(client):
        bundles = {}
        for shop in shops:
            await register_shop(sim, db, shop)
            bundles[shop] = await seeded_bundle(client, sim, shop)
        planted = shops[2]
        await plant_divergence(db, bundles[planted])
        urls = {shop: read_url(shop, bundles[shop]) for shop in shops}
        rollout_id = await start_rollout(client, targetStage="live", shops=shops, waveSize=3, guards=TEST_GUARDS)
        try:
            async with traffic(client, urls.values()) as seen:

                async def clean_live() -> bool:
                    states = await shop_states(client, rollout_id)
                    return all(states[s] == ("live", "done") for s in shops[:2])

                assert await eventually(clean_live, timeout_s=60), await rollout(client, rollout_id)
                view = await rollout(client, rollout_id)
                by_shop = {s["shop"]: s for s in view["shops"]}
                # the planted shop is held back by whatever sees the divergence first: dual-write
                # verification, its validation report (the seed's checks), its confirmed mismatches
                assert by_shop[planted]["stage"] in ("dualwrite", "shadow")
                assert by_shop[planted]["state"] in ("observing", "held")
                assert view["status"] == "running"  # the planted shop never reached the target
                failing = {g["name"] for g in by_shop[planted]["guards"] if not g["ok"]}
                assert failing & {"divergent", "validation", "maxMismatchRate"}, by_shop[planted]
                # the live shops answer from V2 now, the planted one still from legacy
                for shop in shops[:2]:
                    stage = (await client.get(f"/admin/shops/{shop}/stage")).json()
                    assert (stage["stage"], stage["source"], stage["rolloutId"]) == ("live", "rollout", rollout_id)
                    assert (await client.get(urls[shop])).headers["x-bundle-read-source"] == "v2"
                assert (await client.get(urls[planted])).headers["x-bundle-read-source"] == "legacy"
                assert seen[urls[planted]]["v2"] == 0

                # a divergence planted in a live shop sends it back to legacy reads within 30 s
                victim = shops[0]
                await plant_divergence(db, bundles[victim])
                loop = asyncio.get_running_loop()
                planted_at = loop.time()

                async def back_on_legacy() -> bool:
                    return (await client.get(urls[victim])).headers["x-bundle-read-source"] == "legacy"

                assert await eventually(back_on_legacy, timeout_s=30), await rollout(client, rollout_id)
                assert loop.time() - planted_at < 30
                states = await shop_states(client, rollout_id)
                assert states[victim] == ("shadow", "rolled_back")
                assert states[shops[1]] == ("live", "done")
                victim_view = next(s for s in (await rollout(client, rollout_id))["shops"] if s["shop"] == victim)
                assert victim_view["lastTransition"]["from"] == "live"
                assert victim_view["lastTransition"]["to"] == "shadow"
                assert "maxMismatchRate" in victim_view["lastTransition"]["reason"]
                # it stays back (nothing but resume advances it)
                await asyncio.sleep(2)
                assert (await shop_states(client, rollout_id))[victim] == ("shadow", "rolled_back")

            # the reads never failed while their shops moved between stores
            assert all(set(counts) <= {"v2", "legacy"} for counts in seen.values()), seen
            # every automatic transition is in the flag audit, with the figures that caused it
            audit = await transitions(db, rollout_id)
            steps = moves(audit)
            for shop in shops[:2]:
                assert steps[(shop, "dualwrite → shadow")] == 1
                assert steps[(shop, "shadow → live")] == 1
            assert steps[(victim, "live → shadow")] == 1
            assert not any(shop == planted and "→ live" in step for shop, step in steps)
            step_back = next(reason for _, reason in audit if f"{victim} live → shadow" in reason)
            assert "lower bound" in step_back and "maxMismatchRate" in step_back
            advance = next(reason for _, reason in audit if f"{shops[1]} shadow → live" in reason)
            assert "minComparisons=" in advance and "maxMismatchRate=" in advance
        finally:
            await stop(client, rollout_id, shops)


async def test_pause_and_abort_hold(app_factory: AppFactory, db: asyncpg.Connection) -> None:
    shops = [new_shop("gp") for _ in range(2)]
    guards = {**TEST_GUARDS, "minDwellSeconds": 0.5}
    async with app_factory(**FAST_DRIVER) as client:
        rollout_id = await start_rollout(client, targetStage="shadow", shops=shops, waveSize=1, guards=guards)
        try:
            paused = await client.post(f"/admin/rollouts/{rollout_id}/pause")
            assert paused.status_code == 202 and paused.json()["status"] == "paused"
            await asyncio.sleep(1.5)
            states = await shop_states(client, rollout_id)
            # at most the one tick that raced the pause; waves wait
            assert states[shops[1]] == ("dualwrite", "waiting")
            settled = dict(states)
            await asyncio.sleep(1.5)
            assert await shop_states(client, rollout_id) == settled  # paused: nothing moves

            resumed = await client.post(f"/admin/rollouts/{rollout_id}/resume")
            assert resumed.status_code == 202 and resumed.json()["status"] == "running"

            async def first_done() -> bool:
                return (await shop_states(client, rollout_id))[shops[0]] == ("shadow", "done")

            assert await eventually(first_done, timeout_s=15)
            aborted = await client.post(f"/admin/rollouts/{rollout_id}/abort")
            assert aborted.status_code == 202 and aborted.json()["status"] == "aborted"
            at_abort = await shop_states(client, rollout_id)
            before = await transitions(db, rollout_id)
            await asyncio.sleep(2)
            assert await shop_states(client, rollout_id) == at_abort  # aborted: nothing moves any more
            assert await transitions(db, rollout_id) == before
            stage = (await client.get(f"/admin/shops/{shops[0]}/stage")).json()
            assert stage["stage"] == "shadow"  # the shop keeps the stage it had
            assert (await client.post(f"/admin/rollouts/{rollout_id}/resume")).status_code == 409
            # its shops are free again: a new rollout may take them (dry run: nothing written)
            plan = await client.post(
                "/admin/rollouts",
                json={"targetStage": "live", "shops": shops, "dryRun": True, "reason": "plan"},
            )
            assert plan.status_code == 200, plan.text
            assert {p["shop"]: p["path"] for p in plan.json()["shops"]}[shops[0]] == ["live"]
        finally:
            await stop(client, rollout_id, shops)


async def test_two_replicas_run_one_rollout_without_double_or_lost_transitions(
    app_factory: AppFactory, db: asyncpg.Connection
) -> None:
    """No traffic: guards that need no comparisons, so every shop walks dualwrite → ... → rampdown."""
    shops = [new_shop("g2") for _ in range(5)]
    guards = {"minComparisons": 0, "maxMismatchRate": 1, "maxErrorRate": 1, "maxP99Ratio": 1000, "minDwellSeconds": 0.3}
    fast = {**FAST_DRIVER, "ROLLOUT_INTERVAL_S": 0.05}
    async with app_factory(**fast) as one, app_factory(**fast) as two:
        rollout_id = await start_rollout(one, targetStage="rampdown", shops=shops, waveSize=2, guards=guards)
        try:

            async def completed() -> bool:
                return (await rollout(two, rollout_id))["status"] == "completed"

            assert await eventually(completed, timeout_s=60), await rollout(one, rollout_id)
            steps = moves(await transitions(db, rollout_id))
            expected = {
                (shop, step) for shop in shops for step in ("dualwrite → shadow", "shadow → live", "live → rampdown")
            }
            assert set(steps) == expected  # nothing lost, nothing extra
            assert all(count == 1 for count in steps.values()), steps  # nothing twice
            one_driver = one.app.state.container.rollout_driver  # type: ignore[attr-defined]
            two_driver = two.app.state.container.rollout_driver  # type: ignore[attr-defined]
            assert one_driver.transitions + two_driver.transitions <= len(expected)
            for shop in shops:
                stage = (await one.get(f"/admin/shops/{shop}/stage")).json()
                assert stage["stage"] == "rampdown"
        finally:
            await stop(one, rollout_id, shops)


async def test_a_rollout_survives_a_restart(app_factory: AppFactory, db: asyncpg.Connection) -> None:
    """State lives in the tables: a replica stopped mid-rollout, another one started later finishes it,
    and each transition still happens exactly once."""
    shops = [new_shop("gz") for _ in range(3)]
    guards = {"minComparisons": 0, "maxMismatchRate": 1, "maxErrorRate": 1, "maxP99Ratio": 1000, "minDwellSeconds": 0.3}
    async with app_factory(**FAST_DRIVER) as first:
        rollout_id = await start_rollout(first, targetStage="live", shops=shops, waveSize=1, guards=guards)

        async def some_progress() -> bool:
            return len(moves(await transitions(db, rollout_id))) >= 2

        assert await eventually(some_progress, timeout_s=30)
    midway = moves(await transitions(db, rollout_id))
    assert len(midway) < 2 * len(shops), "the first replica was meant to stop mid-way"
    async with app_factory(**FAST_DRIVER) as second:
        try:

            async def completed() -> bool:
                return (await rollout(second, rollout_id))["status"] == "completed"

            assert await eventually(completed, timeout_s=60), await rollout(second, rollout_id)
            steps = moves(await transitions(db, rollout_id))
            assert set(steps) == {(shop, step) for shop in shops for step in ("dualwrite → shadow", "shadow → live")}
            assert all(count == 1 for count in steps.values()), steps
        finally:
            await stop(second, rollout_id, shops)


async def test_a_write_racing_the_reads_is_transient_and_trips_nothing(
    app_factory: AppFactory, sim: Any, db: asyncpg.Connection
) -> None:
    """A live shop whose bundle is PATCHed while it is read: the comparisons that raced the write are
    re-read, found equal, counted transient, and the shop stays live. (A second, planted shop keeps the
    rollout unfinished, so the live shop is still watched.)"""
    racer, planted = new_shop("gt"), new_shop("gt")
    async with app_factory(**{**FAST_DRIVER, "CONSISTENCY_RECHECK_DELAY_S": 1.0}) as client, full_sampling(client):
        bundles = {}
        for shop in (racer, planted):
            await register_shop(sim, db, shop)
            bundles[shop] = await seeded_bundle(client, sim, shop)
        await plant_divergence(db, bundles[planted])
        bundle = bundles[racer]
        rollout_id = await start_rollout(
            client, targetStage="live", shops=[racer, planted], guards={**TEST_GUARDS, "maxMismatchRate": 0.2}
        )
        try:
            async with traffic(client, [read_url(racer, bundle), bundles_url(racer)] * 3):

                async def live() -> bool:
                    return (await shop_states(client, rollout_id))[racer] == ("live", "done")

                assert await eventually(live, timeout_s=60), await rollout(client, rollout_id)
                # a write half-way between the two stores while the shop is read: the legacy row
                # changes first, reads see the difference, the write completes before the re-check
                for i in range(3):
                    name = f"Renamed {i}"
                    await db.execute(
                        'UPDATE bundle_discount_id SET "bundleName" = $2 WHERE "bundleId" = $1',
                        bundle["shopifyMetaobjectId"],
                        name,
                    )
                    assert (await client.get(read_url(racer, bundle))).status_code == 200
                    response = await client.patch(bundles_url(racer, bundle["id"]), json={"name": name})
                    assert response.status_code == 200, response.text
                    await asyncio.sleep(0.3)
                await asyncio.sleep(3)
                consistency = (await client.get(f"/admin/shops/{racer}/consistency")).json()
                assert consistency["sinceSource"] == "stage", consistency  # counted since it went live
                assert consistency["shadow"]["transient"] >= 1, consistency
                assert consistency["shadow"]["confirmed"] == 0, consistency
                assert consistency["dualWrite"]["divergent"] == 0, consistency
                view = await rollout(client, rollout_id)
                assert view["status"] == "running"
                assert (await shop_states(client, rollout_id))[racer] == ("live", "done")  # tripped nothing
            assert not any(f"{racer} live → shadow" in reason for _, reason in await transitions(db, rollout_id))
        finally:
            await stop(client, rollout_id, [racer, planted])


async def test_flags_changed_outside_the_rollout_hold_the_shop(app_factory: AppFactory, db: asyncpg.Connection) -> None:
    """A person's change to the shop's flags wins: the rollout holds the shop and writes nothing for it."""
    shop = new_shop("gd")
    guards = {**TEST_GUARDS, "minComparisons": 1_000_000, "minDwellSeconds": 0.3}  # never beyond shadow
    async with app_factory(**FAST_DRIVER) as client:
        rollout_id = await start_rollout(client, targetStage="live", shops=[shop], guards=guards)
        try:

            async def observed_on_shadow() -> bool:
                return (await shop_states(client, rollout_id))[shop] == ("shadow", "observing")

            assert await eventually(observed_on_shadow, timeout_s=15), await rollout(client, rollout_id)
            state = await flag_state(client, "V2_BUNDLE_ENGINE")
            body = {
                "enabled": state["enabled"],
                "shopOverrides": {**state["shopOverrides"], shop: True},
                "reason": "hand",
            }
            assert (await client.put("/admin/flags/V2_BUNDLE_ENGINE", json=body)).status_code == 200

            async def held() -> bool:
                return (await shop_states(client, rollout_id))[shop] == ("shadow", "held")

            assert await eventually(held, timeout_s=10), await rollout(client, rollout_id)
            view = next(s for s in (await rollout(client, rollout_id))["shops"] if s["shop"] == shop)
            assert view["guards"] == [
                {"name": "flagsMatchStage", "value": 1.0, "threshold": 0.0, "ok": False, "samples": 1}
            ]
            before = await transitions(db, rollout_id)
            await asyncio.sleep(1)
            assert await transitions(db, rollout_id) == before  # nothing written for it
            assert (await flag_state(client, "V2_BUNDLE_ENGINE"))["shopOverrides"][shop] is True
            assert (await client.get(f"/admin/shops/{shop}/stage")).json()["stage"] == "custom"
        finally:
            await stop(client, rollout_id, [shop])


async def test_the_rollouts_sample_rate_is_the_observed_shops(
    app_factory: AppFactory, sim: Any, db: asyncpg.Connection
) -> None:
    """The flag samples nothing (sampleRate 0); the rollout's `sampleRate` 1 makes its shop compared on every
    read while observed, so it gathers its comparisons and reaches live; a shop outside the rollout with
    shadow reads on still samples at the flag's rate (nothing)."""
    shop, bystander = new_shop("gr"), new_shop("gr")
    async with app_factory(**FAST_DRIVER) as client:
        before = await flag_state(client, "SHADOW_READS")
        put = {"enabled": before["enabled"], "sampleRate": 0.0, "reason": "guarded rollout test: flag samples nothing"}
        assert (await client.put("/admin/flags/SHADOW_READS", json=put)).status_code == 200
        bundles = {}
        for s in (shop, bystander):
            await register_shop(sim, db, s)
            bundles[s] = await seeded_bundle(client, sim, s)
        state = await flag_state(client, "SHADOW_READS")
        put = {"enabled": state["enabled"], "shopOverrides": {**state["shopOverrides"], bystander: True}, "reason": "t"}
        assert (await client.put("/admin/flags/SHADOW_READS", json=put)).status_code == 200
        rollout_id = await start_rollout(
            client, targetStage="live", shops=[shop], guards={**TEST_GUARDS, "sampleRate": 1.0}
        )
        try:
            async with traffic(client, [read_url(shop, bundles[shop]), read_url(bystander, bundles[bystander])]):

                async def live() -> bool:
                    return (await shop_states(client, rollout_id))[shop] == ("live", "done")

                assert await eventually(live, timeout_s=60), await rollout(client, rollout_id)
            since = "2000-01-01T00:00:00Z"
            mine = (await client.get(f"/admin/shops/{shop}/consistency", params={"since": since})).json()
            other = (await client.get(f"/admin/shops/{bystander}/consistency", params={"since": since})).json()
            assert mine["shadow"]["comparisons"] >= TEST_GUARDS["minComparisons"], mine
            assert other["shadow"]["comparisons"] == 0, other
        finally:
            await stop(client, rollout_id, [shop, bystander])
            put = {
                "enabled": before["enabled"],
                "sampleRate": before["sampleRate"],
                "reason": "guarded rollout test done",
            }
            await client.put("/admin/flags/SHADOW_READS", json=put)


async def test_conflicts_and_bad_input(client: httpx.AsyncClient) -> None:
    shops = [new_shop("gc"), new_shop("gc")]
    rollout_id = await start_rollout(client, targetStage="shadow", shops=shops, guards={"minDwellSeconds": 3600})
    try:
        again = await client.post(
            "/admin/rollouts", json={"targetStage": "live", "shops": [shops[1]], "reason": "overlap"}
        )
        assert again.status_code == 409, again.text
        assert again.json()["coveredShops"] == [{"shop": shops[1], "rolloutId": rollout_id}]
        # two requests racing for one free shop: the unique index lets exactly one of them have it
        free = new_shop("gc")
        body = {"targetStage": "shadow", "shops": [free], "guards": {"minDwellSeconds": 3600}, "reason": "race"}
        raced = await asyncio.gather(*(client.post("/admin/rollouts", json=body) for _ in range(4)))
        assert sorted(r.status_code for r in raced) == [201, 409, 409, 409], [r.text for r in raced]
        winner = next(r.json()["id"] for r in raced if r.status_code == 201)
        await stop(client, winner, [free])
        bad = [
            {"targetStage": "live", "reason": "neither shops nor percent"},
            {"targetStage": "live", "shops": shops, "percent": 10, "reason": "both"},
            {"targetStage": "off", "shops": shops, "reason": "off is not a target"},
            {"targetStage": "live", "shops": ["nope"], "reason": "bad shop"},
            {"targetStage": "live", "shops": shops, "reason": "  "},
            {"targetStage": "live", "shops": shops, "reason": "x", "guards": {"maxMismatchRate": 2}},
            {"targetStage": "live", "shops": shops, "reason": "x", "dryrun": True},
        ]
        for body in bad:
            response = await client.post("/admin/rollouts", json=body)
            assert response.status_code == 422, (body, response.text)
        assert (await client.get("/admin/rollouts/nope")).status_code == 404
        assert (await client.post("/admin/rollouts/nope/pause")).status_code == 404
        assert (await client.get("/admin/shops/nope/stage")).status_code == 422
        listed = await client.get("/admin/rollouts", params={"limit": 1})
        assert listed.status_code == 200 and len(listed.json()["items"]) == 1
        assert (await client.get("/admin/rollouts", params={"cursor": "garbage"})).status_code == 422
        dry = await client.post(
            "/admin/rollouts", json={"targetStage": "live", "percent": 100, "dryRun": True, "reason": "x"}
        )
        assert dry.status_code in (200, 409, 422), dry.text  # percent picks from every known shop
    finally:
        await stop(client, rollout_id, shops)


@pytest.mark.parametrize("source", ["global"])
async def test_shop_stage_says_where_it_comes_from(client: httpx.AsyncClient, source: str) -> None:
    shop = new_shop("gs")
    response = await client.get(f"/admin/shops/{shop}/stage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == source and body["stage"] == body["globalStage"] and body["rolloutId"] is None
    assert {f["name"] for f in body["flags"]} == set(FLAG_NAMES)
    state = await flag_state(client, "V2_BUNDLE_ENGINE")
    put = {"enabled": state["enabled"], "shopOverrides": {**state["shopOverrides"], shop: True}, "reason": "test"}
    assert (await client.put("/admin/flags/V2_BUNDLE_ENGINE", json=put)).status_code == 200
    try:
        body = (await client.get(f"/admin/shops/{shop}/stage")).json()
        assert body["source"] == "shop_override" and body["stage"] == "custom"
    finally:
        await forget_shops(client, [shop])
