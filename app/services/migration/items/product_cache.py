"""The component product cache: Shopify products read once per batch, copied onto components.

Shared by the AI bundles and the manual bundles of bundle_discount_id; only with
`MigrationContext.fill_products`. A product that could not be read fails its item as transient,
because a migrated bundle is never revisited to fill its cache later.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.ids import new_id
from app.repos import migration as repo
from app.rules.legacy_parsing import LegacyProductRef
from app.services.migration.items.common import (
    ItemOutcome,
    MigrationContext,
    failed_outcome,
    outcome_from_shopify_error,
)
from app.shopify.errors import REASON_SHOPIFY_UNAVAILABLE, ShopifyError, ShopifyShopError
from app.shopify.objects import Product


def build_components(
    refs: Sequence[LegacyProductRef], products: dict[str, Product | None] | None
) -> list[repo.NewComponent]:
    """Components in legacy order; caches filled from the product when it was fetched.

    Title and image belong to the product; price, SKU and stock to the first variant only, so they
    are cached only when the component has no variant or that very variant.
    """
    result = []
    for ref in refs:
        product = products.get(ref.product_id) if products is not None else None
        if product is None:
            result.append(repo.NewComponent(new_id(), ref.product_id, ref.variant_id, ref.quantity))
            continue
        same_variant = ref.variant_id is None or ref.variant_id == product.variant_id
        result.append(
            repo.NewComponent(
                id=new_id(),
                product_id=ref.product_id,
                variant_id=ref.variant_id,
                quantity=ref.quantity,
                cached_title=product.title or None,
                cached_price=product.price if same_variant else None,
                cached_image_url=product.image_url,
                cached_sku=product.sku if same_variant else None,
                cached_inventory=product.inventory_quantity if same_variant else None,
                synced=True,
            )
        )
    return result


async def fetch_products(
    ctx: MigrationContext, shop: str, product_ids: Sequence[str]
) -> tuple[dict[str, Product | None] | None, dict[str, str], ShopifyError | None]:
    """Products for the component caches: (found or None per id, per-id errors, batch error).

    A shop-level error is returned, not raised: the caller decides (cache left empty).
    """
    if not ctx.fill_products or ctx.dry_run or not product_ids:
        return None, {}, None
    try:
        result = await ctx.shopify.fetch_products_detailed(shop, list(dict.fromkeys(product_ids)))
    except ShopifyError as exc:
        return None, {}, exc
    return result.nodes, result.failed, None


def product_failure(
    legacy_id: str, refs: Sequence[LegacyProductRef], failed: dict[str, str], batch_error: ShopifyError | None
) -> ItemOutcome | None:
    """Products were asked for but could not be read: fail the item as transient so a retry fills the
    cache (a migrated bundle is never revisited). A shop-level error instead leaves the cache empty:
    retrying cannot help while the shop is unusable, and the bundle itself does not need Shopify."""
    if batch_error is not None and not isinstance(batch_error, ShopifyShopError):
        return outcome_from_shopify_error(legacy_id, batch_error)
    for ref in refs:
        if ref.product_id in failed:
            return failed_outcome(
                legacy_id,
                REASON_SHOPIFY_UNAVAILABLE,
                f"product {ref.product_id}: {failed[ref.product_id]}",
                transient=True,
            )
    return None


def cache_note(batch_error: ShopifyError | None) -> str | None:
    return f"product cache not filled ({batch_error.reason})" if batch_error is not None else None
