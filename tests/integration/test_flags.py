"""Feature flags over HTTP against real PostgreSQL: CRUD, audit, auth, validation, propagation
between two service instances on one database, the env kill switch, and migration stages.

The database is shared by the whole session, so every test here restores the flags it found
(`_restore_flags`, autouse) and prefers per-shop overrides on fresh shops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.rules.stages import STAGE_TABLE, STAGES
from app.services.flags.snapshot import LISTENER_APPLICATION_NAME
from tests.conftest import AppFactory, as_actor, new_shop

FLAGS = ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "DUAL_WRITE", "SHADOW_READS")
SETTABLE = ("enabled", "rolloutPercent", "shopOverrides", "sampleRate")
PROPAGATION_S = 1.0


async def _flags(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await c.get("/admin/flags")
    assert response.status_code == 200, response.text
    return {f["name"]: f for f in response.json()["items"]}


@pytest.fixture(autouse=True)
async def _restore_flags(client: httpx.AsyncClient) -> AsyncIterator[None]:
    """Put every flag back as it was (through the API, so every replica hears it)."""
    before = await _flags(client)
    yield
    after = await _flags(client)
    for name, old in before.items():
        if any(after[name][k] != old[k] for k in SETTABLE):
            response = await client.put(
                f"/admin/flags/{name}",
                json={**{k: old[k] for k in SETTABLE}, "reason": "test teardown: restore"},
                headers=as_actor("tests"),
            )
            assert response.status_code == 200, response.text


async def _evaluate(c: httpx.AsyncClient, name: str, shop: str | None) -> dict[str, Any]:
    response = await c.get(f"/admin/flags/{name}/evaluate", params={"shop": shop} if shop else None)
    assert response.status_code == 200, response.text
    return response.json()


async def _put(c: httpx.AsyncClient, name: str, body: dict[str, Any], actor: str = "tests") -> dict[str, Any]:
    response = await c.put(f"/admin/flags/{name}", json=body, headers=as_actor(actor))
    assert response.status_code == 200, response.text
    return response.json()


async def _wait_for(c: httpx.AsyncClient, name: str, shop: str, expected: bool, started: float) -> float:
    """Poll every 50 ms until `name` evaluates to `expected` for `shop`; seconds since `started`."""
    while True:
        result = await _evaluate(c, name, shop)
        elapsed = time.monotonic() - started
        if result["value"] is expected:
            return elapsed
        assert elapsed < PROPAGATION_S, f"{name} for {shop} still {result} after {elapsed:.2f}s"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------- reads


async def test_list_flags_shape_and_seeded_rows(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    flags = await _flags(client)
    assert set(flags) == set(FLAGS)
    for flag in flags.values():
        assert set(flag) == {
            "name",
            "enabled",
            "rolloutPercent",
            "shopOverrides",
            "sampleRate",
            "envOverride",
            "updatedAt",
            "updatedBy",
        }
        assert isinstance(flag["enabled"], bool) and 0 <= flag["rolloutPercent"] <= 100
        assert flag["updatedAt"].endswith("Z")
    stored = {r["name"] for r in await db.fetch("SELECT name FROM sb_feature_flags")}
    assert stored == set(FLAGS), "start-up seeds every flag"
    seeded = await db.fetch(
        'SELECT "flagName", "newValue" FROM sb_feature_flag_audit WHERE "changedBy" = \'system\' ORDER BY id'
    )
    assert sorted(r["flagName"] for r in seeded) == sorted(FLAGS), "seeding is audited once, by one replica"


async def test_put_flag_returns_new_state_and_writes_audit(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    shop, other = new_shop(), new_shop()
    before = (await _flags(client))["V2_PRICING_ENGINE"]
    reason = f"pilot pricing for {shop}"

    state = await _put(
        client,
        "V2_PRICING_ENGINE",
        {"enabled": False, "shopOverrides": {shop: True}, "rolloutPercent": 0, "reason": reason},
        actor="alice@example.com",
    )
    assert state["name"] == "V2_PRICING_ENGINE"
    assert state["enabled"] is False and state["shopOverrides"] == {shop: True}
    assert state["updatedBy"] == "alice@example.com"
    assert (await _flags(client))["V2_PRICING_ENGINE"] == state

    assert await _evaluate(client, "V2_PRICING_ENGINE", shop) == {
        "name": "V2_PRICING_ENGINE",
        "shop": shop,
        "value": True,
        "reason": "shop_override",
    }
    assert (await _evaluate(client, "V2_PRICING_ENGINE", other))["value"] is False

    page = (await client.get("/admin/flags/audit", params={"flag": "V2_PRICING_ENGINE", "limit": 1})).json()
    (entry,) = page["items"]
    assert entry["flagName"] == "V2_PRICING_ENGINE"
    assert entry["changedBy"] == "alice@example.com"
    assert entry["reason"] == reason
    assert entry["oldValue"] == {k: before[k] for k in SETTABLE}
    assert entry["newValue"] == {
        "enabled": False,
        "rolloutPercent": 0,
        "shopOverrides": {shop: True},
        "sampleRate": before["sampleRate"],
    }
    row = await db.fetchrow('SELECT "changedBy", reason FROM sb_feature_flag_audit WHERE id = $1', entry["id"])
    assert row is not None
    assert dict(row) == {"changedBy": "alice@example.com", "reason": reason}


async def test_put_keeps_omitted_fields_and_replaces_overrides(client: httpx.AsyncClient) -> None:
    a, b = new_shop(), new_shop()
    await _put(
        client,
        "SHADOW_READS",
        {"enabled": False, "sampleRate": 0.2, "rolloutPercent": 0, "shopOverrides": {a: True}, "reason": "set up"},
    )
    state = await _put(client, "SHADOW_READS", {"enabled": False, "shopOverrides": {b: True}, "reason": "swap"})
    assert state["sampleRate"] == 0.2, "omitted sampleRate is kept"
    assert state["shopOverrides"] == {b: True}, "a given map replaces the stored one"
    state = await _put(client, "SHADOW_READS", {"enabled": False, "reason": "only enabled"})
    assert state["shopOverrides"] == {b: True} and state["sampleRate"] == 0.2


async def test_rollout_over_http_is_deterministic(client: httpx.AsyncClient) -> None:
    shops = [new_shop("r") for _ in range(40)]
    await _put(
        client,
        "V2_PRICING_ENGINE",
        {"enabled": False, "rolloutPercent": 50, "shopOverrides": {}, "reason": "half rollout"},
    )
    first = [await _evaluate(client, "V2_PRICING_ENGINE", s) for s in shops]
    again = [await _evaluate(client, "V2_PRICING_ENGINE", s) for s in shops]
    assert first == again
    assert {r["reason"] for r in first} <= {"rollout", "default"}
    assert all(r["value"] is (r["reason"] == "rollout") for r in first)
    assert 0 < sum(r["value"] for r in first) < len(shops)


# ---------------------------------------------------------------------------------------- audit log


async def test_audit_is_newest_first_and_cursor_paginated(client: httpx.AsyncClient) -> None:
    shop = new_shop()
    reasons = [f"step {i} for {shop}" for i in range(3)]
    for i, reason in enumerate(reasons):
        await _put(
            client, "V2_PRICING_ENGINE", {"enabled": False, "shopOverrides": {shop: i % 2 == 0}, "reason": reason}
        )
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {"flag": "V2_PRICING_ENGINE", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/admin/flags/audit", params=params)).json()
        assert len(page["items"]) == 1 and page["nextCursor"]
        seen.append(page["items"][0]["reason"])
        cursor = page["nextCursor"]
    assert seen == list(reversed(reasons))

    everything = (await client.get("/admin/flags/audit", params={"limit": 200})).json()
    ids = [e["id"] for e in everything["items"]]
    assert ids == sorted(ids, reverse=True)
    default = (await client.get("/admin/flags/audit")).json()
    assert len(default["items"]) <= 50


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "not-a-cursor"}, {"cursor": "YXVkaXQ6eA"}],
)
async def test_audit_bad_query_is_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/admin/flags/audit", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


# ------------------------------------------------------------------------------ auth and validation


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/flags", None),
        ("GET", "/admin/flags/DUAL_WRITE", None),
        ("PUT", "/admin/flags/DUAL_WRITE", {"enabled": False, "reason": "no token"}),
        ("GET", "/admin/flags/DUAL_WRITE/evaluate?shop=a.myshopify.com", None),
        ("GET", "/admin/flags/audit", None),
        ("GET", "/admin/migration-stage", None),
        ("PUT", "/admin/migration-stage", {"stage": "off", "reason": "no token"}),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic dGVzdA=="])
async def test_requires_admin_token(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test", headers=headers) as anon:
        response = await anon.request(method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await _flags(client))["DUAL_WRITE"]["updatedBy"] != "no token"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enabled": True}, "body.reason"),
        ({"enabled": True, "reason": ""}, "body.reason"),
        ({"enabled": True, "reason": "   "}, "body.reason"),
        ({"reason": "x"}, "body.enabled"),
        ({"enabled": "yes", "reason": "x"}, "body.enabled"),
        ({"enabled": True, "rolloutPercent": 101, "reason": "x"}, "body.rolloutPercent"),
        ({"enabled": True, "rolloutPercent": -1, "reason": "x"}, "body.rolloutPercent"),
        ({"enabled": True, "sampleRate": 1.5, "reason": "x"}, "body.sampleRate"),
        ({"enabled": True, "sampleRate": -0.1, "reason": "x"}, "body.sampleRate"),
        ({"enabled": True, "shopOverrides": {"Not A Shop": True}, "reason": "x"}, "body.shopOverrides"),
        ({"enabled": True, "shopOverrides": {"evil.example.com": True}, "reason": "x"}, "body.shopOverrides"),
        ({"enabled": True, "shopOverrides": {"a.myshopify.com": "maybe"}, "reason": "x"}, "body.shopOverrides"),
        ({"enabled": True, "shopOverrides": ["a.myshopify.com"], "reason": "x"}, "body.shopOverrides"),
        ({"enabled": True, "rollout": 5, "reason": "x"}, "body.rollout"),
    ],
)
async def test_bad_put_body_is_422(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    before = (await _flags(client))["V2_BUNDLE_ENGINE"]
    response = await client.put("/admin/flags/V2_BUNDLE_ENGINE", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem["errors"]
    assert (await _flags(client))["V2_BUNDLE_ENGINE"] == before, "nothing written"


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/flags/V2_BUNDLE_ENGINE", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_unknown_flag_is_404(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    response = await client.put("/admin/flags/NOPE", json={"enabled": True, "reason": "x"})
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/admin/flags/NOPE")).status_code == 404
    assert (await client.get("/admin/flags/NOPE/evaluate", params={"shop": "a.myshopify.com"})).status_code == 404
    assert (await client.get("/admin/flags/audit", params={"flag": "NOPE"})).status_code == 404
    assert (await client.put("/admin/flags/v2_bundle_engine", json={"enabled": True, "reason": "x"})).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM sb_feature_flags WHERE name NOT IN ($1, $2, $3, $4)", *FLAGS) == 0


@pytest.mark.parametrize("shop", ["Shop.myshopify.com", "shop.example.com", "-x.myshopify.com", "a.myshopify.com/x"])
async def test_evaluate_invalid_shop_is_422(client: httpx.AsyncClient, shop: str) -> None:
    response = await client.get("/admin/flags/V2_BUNDLE_ENGINE/evaluate", params={"shop": shop})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "query.shop"


# ------------------------------------------------------------------------------------- propagation


async def test_shop_flip_reaches_second_instance_within_one_second(
    client: httpx.AsyncClient, app_factory: AppFactory
) -> None:
    shop_a, shop_b = new_shop("a"), new_shop("b")
    async with app_factory() as second:
        before_b = await _evaluate(second, "V2_BUNDLE_ENGINE", shop_b)
        assert (await _evaluate(second, "V2_BUNDLE_ENGINE", shop_a))["value"] is False

        started = time.monotonic()
        await _put(
            client, "V2_BUNDLE_ENGINE", {"enabled": False, "shopOverrides": {shop_a: True}, "reason": f"flip {shop_a}"}
        )
        elapsed = await _wait_for(second, "V2_BUNDLE_ENGINE", shop_a, True, started)
        assert elapsed < PROPAGATION_S
        assert (await _evaluate(second, "V2_BUNDLE_ENGINE", shop_a))["reason"] == "shop_override"
        assert await _evaluate(second, "V2_BUNDLE_ENGINE", shop_b) == before_b, "only that shop flips"

        # And back, the other way round: written on the second instance, seen by the first.
        started = time.monotonic()
        await _put(second, "V2_BUNDLE_ENGINE", {"enabled": False, "shopOverrides": {}, "reason": "unflip"})
        assert await _wait_for(client, "V2_BUNDLE_ENGINE", shop_a, False, started) < PROPAGATION_S


async def test_change_without_notify_still_propagates_by_polling(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """The safety net: a row changed behind the service's back (no NOTIFY) is picked up within a second."""
    shop = new_shop()
    started = time.monotonic()
    await db.execute(
        """UPDATE sb_feature_flags SET "shopOverrides" = jsonb_build_object($1::text, true) WHERE name = $2""",
        shop,
        "V2_PRICING_ENGINE",
    )
    assert await _wait_for(client, "V2_PRICING_ENGINE", shop, True, started) < PROPAGATION_S


async def test_listener_reconnects_after_its_connection_dies(
    client: httpx.AsyncClient, app_factory: AppFactory, db: asyncpg.Connection
) -> None:
    count_sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()"
    async with app_factory() as second:
        listeners = await db.fetchval(count_sql, LISTENER_APPLICATION_NAME)
        assert listeners >= 2, "one LISTEN connection per instance"
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_APPLICATION_NAME,
        )
        deadline = time.monotonic() + 10
        while await db.fetchval(count_sql, LISTENER_APPLICATION_NAME) < listeners:
            assert time.monotonic() < deadline, "listeners did not reconnect"
            await asyncio.sleep(0.1)
        shop = new_shop()
        started = time.monotonic()
        await _put(
            client, "V2_BUNDLE_ENGINE", {"enabled": False, "shopOverrides": {shop: True}, "reason": "after reconnect"}
        )
        assert await _wait_for(second, "V2_BUNDLE_ENGINE", shop, True, started) < PROPAGATION_S


async def test_env_kill_switch_beats_shop_override(
    client: httpx.AsyncClient, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = new_shop()
    await _put(client, "V2_BUNDLE_ENGINE", {"enabled": False, "shopOverrides": {shop: True}, "reason": "pilot"})
    monkeypatch.setenv("FEATURE_FLAG_V2_BUNDLE_ENGINE", "false")
    async with app_factory() as fresh:
        assert await _evaluate(fresh, "V2_BUNDLE_ENGINE", shop) == {
            "name": "V2_BUNDLE_ENGINE",
            "shop": shop,
            "value": False,
            "reason": "env",
        }
        flags = await _flags(fresh)
        assert flags["V2_BUNDLE_ENGINE"]["envOverride"] is False
        assert flags["V2_BUNDLE_ENGINE"]["shopOverrides"] == {shop: True}, "stored value untouched"
        assert flags["DUAL_WRITE"]["envOverride"] is None


# ------------------------------------------------------------------------------- migration stages


async def test_migration_stage_round_trip(
    client: httpx.AsyncClient, app_factory: AppFactory, db: asyncpg.Connection
) -> None:
    shop = new_shop()
    async with app_factory() as second:
        for stage in (*STAGES, "dualwrite"):
            last_id = await db.fetchval("SELECT coalesce(max(id), 0) FROM sb_feature_flag_audit")
            before = await _flags(client)
            response = await client.put(
                "/admin/migration-stage", json={"stage": stage, "reason": "round trip"}, headers=as_actor("bob")
            )
            assert response.status_code == 200, response.text
            assert response.json()["stage"] == stage
            got = (await client.get("/admin/migration-stage")).json()
            assert got["stage"] == stage
            flags = {f["name"]: f for f in got["flags"]}
            for name, on in STAGE_TABLE[stage].items():
                assert flags[name]["enabled"] is on and flags[name]["shopOverrides"] == {}
                assert flags[name]["rolloutPercent"] == (100 if on else 0)
                assert (await _evaluate(client, name, shop))["value"] is on, (stage, name)
            if STAGE_TABLE[stage]["SHADOW_READS"]:
                assert flags["SHADOW_READS"]["sampleRate"] > 0

            # One audit entry per flag that actually changed, by the actor, with the stage in the reason.
            audit = await db.fetch(
                'SELECT "flagName", "changedBy", reason FROM sb_feature_flag_audit WHERE id > $1', last_id
            )
            changed = {n for n in FLAGS if any(before[n][k] != flags[n][k] for k in SETTABLE)}
            assert {r["flagName"] for r in audit} == changed and len(audit) == len(changed)
            assert all(
                r["changedBy"] == "bob" and r["reason"] == f"migration stage → {stage}: round trip" for r in audit
            )

            # The other replica derives the same stage within a second.
            deadline = time.monotonic() + PROPAGATION_S
            while (await second.get("/admin/migration-stage")).json()["stage"] != stage:
                assert time.monotonic() < deadline, f"second instance did not reach {stage}"
                await asyncio.sleep(0.05)


async def test_migration_stage_sample_rate_and_custom(client: httpx.AsyncClient) -> None:
    response = await client.put("/admin/migration-stage", json={"stage": "shadow", "reason": "r", "sampleRate": 0.25})
    assert response.status_code == 200
    assert {f["name"]: f for f in response.json()["flags"]}["SHADOW_READS"]["sampleRate"] == 0.25
    # Moving on keeps the tuned rate; a stage without a request rate and no stored rate gets 0.1.
    live = (await client.put("/admin/migration-stage", json={"stage": "live", "reason": "r"})).json()
    assert {f["name"]: f for f in live["flags"]}["SHADOW_READS"]["sampleRate"] == 0.25
    await _put(client, "SHADOW_READS", {"enabled": False, "sampleRate": 0, "reason": "reset rate"})
    shadow = (await client.put("/admin/migration-stage", json={"stage": "shadow", "reason": "r"})).json()
    assert {f["name"]: f for f in shadow["flags"]}["SHADOW_READS"]["sampleRate"] == 0.1

    # A partial rollout or a per-shop exception is no stage at all.
    await _put(client, "V2_BUNDLE_ENGINE", {"enabled": False, "rolloutPercent": 25, "reason": "partial"})
    assert (await client.get("/admin/migration-stage")).json()["stage"] == "custom"

    # Re-asserting the current stage writes nothing.
    await client.put("/admin/migration-stage", json={"stage": "shadow", "reason": "r"})
    before = await _flags(client)
    assert (await client.put("/admin/migration-stage", json={"stage": "shadow", "reason": "again"})).status_code == 200
    assert await _flags(client) == before


@pytest.mark.parametrize(
    "body",
    [
        {"stage": "launch", "reason": "x"},
        {"stage": "live"},
        {"stage": "live", "reason": " "},
        {"stage": "shadow", "reason": "x", "sampleRate": 0},
        {"stage": "shadow", "reason": "x", "sampleRate": 2},
        {"reason": "x"},
    ],
)
async def test_bad_migration_stage_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    before = await _flags(client)
    response = await client.put("/admin/migration-stage", json=body)
    assert response.status_code == 422, response.text
    assert await _flags(client) == before
