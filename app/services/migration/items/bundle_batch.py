"""A batch of bundle_discount_id rows (+ their metaobjects from Shopify) → Bundles with children.

This module only sequences the phases; each lives in its own module: the preparation
(`bundle_preparation`: classify, Shopify, parse), the product cache read, one slug read for the
whole batch, then the writes: the ordinary manual bundles in one statement (`manual_bundles`), and
every row still without an outcome one at a time, in batch order, by the writer of its kind
(`manual_bundles`, `linked_rows`), each under `guarded`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from app.repos import migration as repo
from app.rules.legacy_parsing import LegacyRowKind
from app.rules.slugs import slugify
from app.services.migration.items.ai_bundles import ai_slug_base
from app.services.migration.items.bundle_items import BundleBatchState, BundleItem
from app.services.migration.items.bundle_preparation import BundlePreparation
from app.services.migration.items.common import ItemOutcome, MigrationContext, guarded
from app.services.migration.items.linked_rows import write_ai_metaobject_row, write_auto_rule_row
from app.services.migration.items.manual_bundles import v2_bundle_name, write_manual_batch, write_manual_row
from app.services.migration.items.product_cache import cache_note, fetch_products, product_failure
from app.services.migration.items.slugs import SlugAllocator
from app.shopify.errors import ShopifyError
from app.shopify.objects import Product

_RowWork = Callable[[], Awaitable[ItemOutcome]]


class BundleBatch:
    """bundle_discount_id (+ the metaobject from Shopify) → Bundle with its children."""

    def __init__(self, ctx: MigrationContext, shop: str, ids: list[str], outcomes: dict[str, ItemOutcome]) -> None:
        self.ctx, self.shop = ctx, shop
        self.state = BundleBatchState(ids, outcomes)

    async def run(self) -> None:
        ctx, shop, state = self.ctx, self.shop, self.state
        await BundlePreparation(ctx, shop, state).run()
        to_write = [i for i in state.items.values() if i.parsed is not None]
        refs = [ref for item in to_write if item.parsed for ref in item.parsed.products]
        refs += [ref for ai_refs in state.ai_refs.values() for ref in ai_refs]
        products, failed, batch_error = await fetch_products(ctx, shop, [ref.product_id for ref in refs])
        note = cache_note(batch_error)
        async with ctx.pool.acquire() as conn:
            slugs = await self._slugs(conn, to_write)
            if not ctx.dry_run:
                await write_manual_batch(conn, shop, state, slugs, products, failed, batch_error, note)
            for legacy_id in state.ids:
                item = state.items.get(legacy_id)
                if item is None:
                    continue
                work = self._row_work(conn, item, slugs, products, failed, batch_error, note)
                state.done(work if isinstance(work, ItemOutcome) else await guarded(legacy_id, work))

    async def _slugs(self, conn: repo.Conn, to_write: list[BundleItem]) -> SlugAllocator:
        """One read of the taken slugs among every base the batch may use: its manual bundles' and
        those of the AI bundles its rows may create."""
        bases = {i.legacy_id: slugify(v2_bundle_name(i.row.bundle_name, i.parsed)) for i in to_write if i.parsed}
        ai_ids = [i.ai_id for i in self.state.items.values() if i.ai_id]
        taken = await repo.taken_slugs(conn, self.shop, [*bases.values(), *(ai_slug_base(a) for a in ai_ids)])
        return SlugAllocator(self.shop, taken)

    def _row_work(
        self,
        conn: repo.Conn,
        item: BundleItem,
        slugs: SlugAllocator,
        products: dict[str, Product | None] | None,
        failed: dict[str, str],
        batch_error: ShopifyError | None,
        note: str | None,
    ) -> ItemOutcome | _RowWork:
        """The writer of the row's kind, or the row's outcome when its products could not be read."""
        ctx, shop, legacy_id = self.ctx, self.shop, item.legacy_id
        if item.kind in (LegacyRowKind.AUTO_RULE, LegacyRowKind.AUTO_GENERATED):
            return functools.partial(write_auto_rule_row, ctx, conn, shop, item)
        if item.ai_id is not None:
            problem = product_failure(legacy_id, self.state.ai_refs.get(item.ai_id, []), failed, batch_error)
            if problem is not None:
                return problem
            return functools.partial(write_ai_metaobject_row, ctx, conn, shop, item, slugs, products)
        assert item.parsed is not None
        problem = product_failure(legacy_id, item.parsed.products, failed, batch_error)
        if problem is not None:
            return problem
        return functools.partial(write_manual_row, ctx, conn, shop, item, slugs, products, note)
