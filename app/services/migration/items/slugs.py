"""Slugs unique within a shop for the bundles a batch creates (manual bundles and AI bundles alike).

Apart from both kinds' writers because one allocator serves the whole batch: a manual row of
bundle_discount_id may create an AI bundle, and both must not pick the same slug.
"""

from __future__ import annotations

from app.repos import migration as repo
from app.rules.slugs import unique_slug


class SlugAllocator:
    """Hands out slugs unique within the shop: `taken` is read once per batch (one query), so the
    usual insert succeeds first time; a concurrent writer that took the slug meanwhile makes the
    insert raise on `Bundle_shop_slug_key`, and `refresh` re-reads the taken slugs for that base."""

    def __init__(self, shop: str, taken: set[str]) -> None:
        self.shop = shop
        self.taken = taken

    def allocate(self, base: str) -> str:
        slug = unique_slug(base, self.taken)
        self.taken.add(slug)
        return slug

    async def refresh(self, conn: repo.Conn, base: str) -> None:
        self.taken |= await repo.taken_slugs(conn, self.shop, [base])
