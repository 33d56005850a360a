"""The wait for a pooled database connection is measured (the soak reports it from /metrics)."""

from __future__ import annotations

import httpx

from tests.integration.bundle_helpers import bundle_body, bundles_url


def _count(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sb_db_pool_acquire_wait_seconds_count")
    )


async def test_pool_acquire_wait_is_recorded_for_requests_that_use_the_database(
    client: httpx.AsyncClient, shop: str
) -> None:
    before = _count((await client.get("/metrics")).text)
    created = await client.post(bundles_url(shop), json=bundle_body())
    assert created.status_code == 201, created.text
    renamed = await client.patch(bundles_url(shop, created.json()["id"]), json={"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    text = (await client.get("/metrics")).text
    assert "sb_db_pool_acquire_wait_seconds_bucket" in text
    assert _count(text) >= before + 2
