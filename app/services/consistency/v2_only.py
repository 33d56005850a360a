"""What only V2 holds: the list a rollback shows before it sends reads back to the legacy tables.

For each shop whose reads come from V2 now (`V2_BUNDLE_ENGINE` as stored, per shop), the V2 bundles
created or changed since the shop left legacy reads (the latest audit entry that switched it; all
of them when the audit does not say) that the legacy tables cannot hold whole
(`rules.consistency.v2_only_reasons`: no legacy row at all, a legacy row that approximates, AI
bundle fields the legacy AI table has no column for, drafts, tags and images). A rollback deletes
none of it: the V2 rows stay, and come back when reads return to V2; but while reads are on legacy
the merchant and the storefront do not see it, which is why the rollback asks for confirmation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.time import as_utc, naive_utc
from app.repos import bundles as bundle_repo
from app.repos import consistency as repo
from app.repos import flags as flag_repo
from app.repos.base import Conn
from app.rules.consistency import reads_v2_since, v2_only_reasons
from app.rules.flags import DEFAULT_STATES, Flag, FlagState

#: Bundles examined per shop (newest changes first), and listed per shop.
MAX_SCANNED = 2000
MAX_LISTED = 100
_AUDIT_PAGE = 500


async def _audit(conn: Conn) -> list[dict[str, Any]]:
    """Every audit entry of V2_BUNDLE_ENGINE, newest first."""
    entries: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        page = await flag_repo.list_audit(conn, limit=_AUDIT_PAGE, before_id=before, flag_name=Flag.V2_BUNDLE_ENGINE)
        entries.extend(page)
        if len(page) < _AUDIT_PAGE:
            return entries
        before = int(page[-1]["id"])


async def v2_only_holdings(conn: Conn) -> dict[str, Any]:
    """`{shops: [{shop, readsFromV2Since, count, scanned, truncated, bundles: [...]}], total}`: the
    shops reading from V2 that hold V2-only data, each bundle with its `reasons`."""
    rows = await flag_repo.fetch_all(conn)
    stored = {row["name"]: row for row in rows}
    row = stored.get(Flag.V2_BUNDLE_ENGINE)
    state = FlagState.from_row(row) if row is not None else DEFAULT_STATES[Flag.V2_BUNDLE_ENGINE]
    audit = await _audit(conn)
    shops: list[dict[str, Any]] = []
    for shop in await repo.shops_with_bundles(conn):
        on_v2, since = reads_v2_since(shop, state, audit)
        if not on_v2:
            continue
        naive_since: datetime | None = naive_utc(since) if since is not None else None
        ids = await repo.v2_bundles_changed_since(conn, shop, naive_since, MAX_SCANNED)
        changed = await repo.count_v2_bundles_changed_since(conn, shop, naive_since)
        listed: list[dict[str, Any]] = []
        count = 0
        for start in range(0, len(ids), 200):
            for full in await bundle_repo.fetch_full(conn, shop, ids[start : start + 200]):
                reasons = v2_only_reasons(full)
                if not reasons:
                    continue
                count += 1
                if len(listed) < MAX_LISTED:
                    listed.append(
                        {
                            "id": full["id"],
                            "name": full.get("name"),
                            "shopifyMetaobjectId": full.get("shopifyMetaobjectId"),
                            "updatedAt": as_utc(full.get("updatedAt")),
                            "reasons": reasons,
                        }
                    )
        if count:
            shops.append(
                {
                    "shop": shop,
                    "readsFromV2Since": as_utc(since) if since is not None else None,
                    "count": count,
                    "scanned": len(ids),
                    "truncated": changed > len(ids),
                    "bundles": listed,
                }
            )
    return {"shops": shops, "total": sum(s["count"] for s in shops)}


def describe(holdings: dict[str, Any]) -> str:
    """One sentence for a refusal or a CLI prompt."""
    shops = holdings["shops"]
    names = ", ".join(f"{s['shop']} ({s['count']})" for s in shops[:5]) + (" ..." if len(shops) > 5 else "")
    return (
        f"{holdings['total']} V2 bundle(s) in {len(shops)} shop(s) reading from V2 hold data the legacy tables "
        f"cannot represent: {names}. Nothing is deleted, but reads from legacy will not show it."
    )
