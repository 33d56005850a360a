"""After the Phase 5 cleanup the legacy table lives in `archive`: outbox and compensation still work,
and its rows still protect the Shopify objects they name (a restore would bring them back)."""

from __future__ import annotations

from app.core.migrations import upgrade_async
from app.repos.outbox import shopify_refs
from tests import pg


async def test_shopify_refs_reads_the_archived_legacy_table() -> None:
    url = await pg.create_database("sbarch")
    try:
        await upgrade_async(url)
        conn = await pg.connect(url)
        try:
            await conn.execute(
                """INSERT INTO bundle_discount_id VALUES
                   ('gid://shopify/Metaobject/7', 'n', 'gid://shopify/DiscountAutomaticNode/7', 'a.myshopify.com')"""
            )
            live = await shopify_refs(
                conn, "a.myshopify.com", "gid://shopify/Metaobject/7", "gid://shopify/DiscountAutomaticNode/7"
            )
            await conn.execute("CREATE SCHEMA archive; ALTER TABLE public.bundle_discount_id SET SCHEMA archive")
            archived = await shopify_refs(
                conn, "a.myshopify.com", "gid://shopify/Metaobject/7", "gid://shopify/DiscountAutomaticNode/7"
            )
            unreferenced = await shopify_refs(conn, "a.myshopify.com", "gid://shopify/Metaobject/8", None)
        finally:
            await conn.close()
    finally:
        await pg.drop_database(url)
    expected = {"gid://shopify/Metaobject/7", "gid://shopify/DiscountAutomaticNode/7"}
    assert live == expected
    assert archived == expected
    assert unreferenced == set()
