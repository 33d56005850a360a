"""A V2 bundle as the API hands it out: its body (`to_out`), its ETag and its URL.

One module for the read path (app.services.bundles.reads), the write path (writes) and the
reconciliation job, because they must agree to the byte: a V2 read carries the ETag the last write
answered with, and a write's `If-Match` is compared with the ETag of the representation a read
would give.
"""

from __future__ import annotations

import hashlib
from typing import Any

from app.core.time import as_utc
from app.schemas.bundles import BundleOut, InventoryOut, LegacySync


def bundle_location(shop: str, bundle_id: str) -> str:
    return f"/api/v2/shops/{shop}/bundles/{bundle_id}"


def etag_of(body: dict[str, Any]) -> str:
    """Weak ETag of a V2 representation: a hash of id and `updatedAt` (which every write moves forward)."""
    digest = hashlib.sha256(f"{body.get('id')}|{body.get('updatedAt')}".encode()).hexdigest()[:24]
    return f'W/"{digest}"'


def etag_matches(if_match: str, etag: str) -> bool:
    """RFC 9110 `If-Match`: `*` or a list of entity tags; compared weakly (the W/ prefix is ignored)."""
    value = if_match.strip()
    if value == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in value.split(",") if tag.strip())


def to_out(full: dict[str, Any], legacy_sync: LegacySync | None = None) -> BundleOut:
    """A bundle row with its children (repos.bundles.fetch_full) as the API shape."""
    data = dict(full)
    for key in ("createdAt", "updatedAt", "publishedAt"):
        data[key] = as_utc(data.get(key))
    data["images"] = list(data.get("images") or [])
    data["tags"] = list(data.get("tags") or [])
    rules = []
    for rule in data.get("pricingRules") or []:
        rule = dict(rule)
        rule["startsAt"] = as_utc(rule.get("startsAt"))
        rule["endsAt"] = as_utc(rule.get("endsAt"))
        rules.append(rule)
    data["pricingRules"] = rules
    inventory = data.get("inventory")
    data["inventory"] = InventoryOut(**{k: v for k, v in inventory.items() if k != "bundleId"}) if inventory else None
    data["legacySync"] = legacy_sync
    return BundleOut.model_validate(data)
