"""Dual-write verification: a dual-written bundle re-read from both stores and compared.

After a committed dual write (sampled by `CONSISTENCY_VERIFY_RATE`, in the background) and for
every dual-written bundle of a shop before it goes live (`verify_shop`). The legacy side is read
the way the legacy read path reads it (`bundle_discount_id` + the metaobject, `ai_fbt_bundles`),
the V2 side from the tables; both are compared on the shadow reads' projection. A difference is
re-read once more after `CONSISTENCY_RECHECK_DELAY_S` (a write may have raced) and, if it
persists, recorded `divergent` with its diff: a confirmed mismatch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.core.container import Container
from app.repos import consistency as repo
from app.repos import runner
from app.services.bundles import reads, shadow

#: Bundles verified at once by `verify_shop` (each read may be a Shopify call on the legacy side).
VERIFY_CONCURRENCY = 4


async def _verify(container: Container, shop: str, bundle_id: str) -> bool | None:
    """True: divergent, False: verified, None: not a dual-written bundle (nothing recorded)."""
    out = await reads.v2_by_id(container, shop, bundle_id)
    if out is None or not reads.representable(out):
        return None
    key = reads.lookup_key(out)
    if key is None:
        return None

    async def legacy() -> Any:
        return reads.compared(await reads.legacy_by_key(container, shop, key))

    async def v2() -> Any:
        return reads.compared(await reads.v2_by_id(container, shop, bundle_id))

    async def fresh_legacy() -> Any:
        reads.forget_cached_metaobject(container, shop, key)
        return await legacy()

    return await shadow.verify_pair(container, shop, reads.shadow_key(out) or key, legacy, v2, fresh_legacy)


async def verify_bundle(container: Container, shop: str, bundle_id: str) -> None:
    """The background verification after a dual write (the runner's verifier)."""
    await _verify(container, shop, bundle_id)


async def verify_shop(container: Container, shop: str) -> int:
    """Re-read every dual-written bundle of `shop` from both stores; the number of divergences
    (each recorded with its diff). Raises when a store cannot be read (no verdict is a failure)."""
    ids = await runner.run_read(container.pool, lambda conn: repo.dual_written_bundle_ids(conn, shop))
    limit = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def one(bundle_id: str) -> bool:
        async with limit:
            return bool(await _verify(container, shop, bundle_id))

    results = await asyncio.gather(*(one(i) for i in ids))
    return sum(1 for divergent in results if divergent)
