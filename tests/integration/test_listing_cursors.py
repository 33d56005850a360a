"""Every admin listing pages with the one cursor codec (app/rules/cursors.py): walking it a few items
at a time gives exactly the items of one big page, in the same order, and a cursor of one listing is
refused by every other one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from app.repos import rollouts as rollouts_repo
from app.repos import shadow as shadow_repo
from tests.conftest import new_shop
from tests.integration.bundle_helpers import flag_override

JOBS = "/admin/migrations/jobs"
ROLLOUTS = "/admin/rollouts"


async def walk(client: httpx.AsyncClient, url: str, params: dict[str, Any], limit: int) -> list[Any]:
    """Every item of a listing, `limit` at a time; fails on a page bigger than asked or a loop."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):
        response = await client.get(url, params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items
        assert page["items"], "a page with a next cursor holds items"
    raise AssertionError("the listing never ended")


async def one_page(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> tuple[list[Any], str | None]:
    response = await client.get(url, params={**params, "limit": 200})
    assert response.status_code == 200, response.text
    return response.json()["items"], response.json()["nextCursor"]


async def test_every_admin_listing_pages_exactly(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    # At least three items in each listing, made here so the test does not depend on others.
    shops = [new_shop("cur") for _ in range(3)]
    for shop in shops:
        created = await client.post(JOBS, json={"kind": "bundles", "shops": [shop], "dryRun": True})
        assert created.status_code in (201, 202), created.text
    mismatch_shop = new_shop("cur")
    start = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    for n in range(5):
        # two share a timestamp: the key must break the tie without losing or repeating one
        await shadow_repo.insert_mismatch(
            db,
            shop=mismatch_shop,
            endpoint="list",
            bundle_key=f"b{n}",
            fields=["name"],
            legacy={"n": n},
            v2={"n": -n},
            created_at=start + timedelta(seconds=min(n, 3)),
        )
    for n in range(2):
        # finished rollouts (aborted at once), so no driver moves a flag for them
        rollout_id = f"ro_cursor_{uuid.uuid4().hex[:12]}"
        await rollouts_repo.insert_rollout(
            db,
            rollout_id=rollout_id,
            target_stage="shadow",
            guards={},
            wave_size=1,
            percent=None,
            reason="listing cursor test",
            created_by="test",
            now=start + timedelta(seconds=n),
        )
        await db.execute("UPDATE sb_rollouts SET status = 'aborted' WHERE id = $1", rollout_id)
    for _ in range(2):
        async with flag_override(client, "SHADOW_READS", new_shop("cur"), True):
            pass  # an override set and removed: two audit entries

    listings: list[tuple[str, dict[str, Any], int]] = [
        (JOBS, {}, 2),
        (ROLLOUTS, {}, 1),
        ("/admin/shadow-mismatches", {"shop": mismatch_shop}, 2),
        ("/admin/flags/audit", {"flag": "SHADOW_READS"}, 3),
    ]
    cursors: dict[str, str] = {}
    for url, params, limit in listings:
        everything, more = await one_page(client, url, params)
        assert more is None, f"{url}: the reference page must hold everything"
        walked = await walk(client, url, params, limit)
        assert walked == everything, url
        if len(everything) > limit:
            first = (await client.get(url, params={**params, "limit": limit})).json()
            cursors[url] = first["nextCursor"]
    assert set(cursors) == {url for url, _, _ in listings}
    mismatches, _ = await one_page(client, "/admin/shadow-mismatches", {"shop": mismatch_shop})
    assert [m["bundleKey"] for m in mismatches][-2:] == ["b1", "b0"] and len(mismatches) == 5

    for url, params, _ in listings:
        for owner, cursor in cursors.items():
            if owner == url:
                continue
            refused = await client.get(url, params={**params, "cursor": cursor})
            assert refused.status_code == 422, (url, owner, refused.text)
            assert refused.json()["errors"][0]["field"] == "query.cursor"
