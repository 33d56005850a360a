"""Phases 1 and 2 of a bundle batch: classify the rows (database), read their metaobjects (Shopify),
parse them. What comes out is `BundleBatchState.items`: the rows still to write, each with its
metaobject and parsed bundle (ordinary rows) or its AI bundle / rule link (the odd rows).

Apart from the writers because it holds no connection while Shopify is called, and writes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from app.repos import migration as repo
from app.rules.legacy_metaobject import BUNDLE_METAOBJECT_TYPE
from app.rules.legacy_parsing import (
    InvalidLegacyData,
    LegacyRowKind,
    classify_bundle_discount_row,
    parse_bundle_metaobject,
)
from app.services.migration.items.ai_bundles import ai_product_refs
from app.services.migration.items.bundle_items import BundleBatchState, BundleItem
from app.services.migration.items.common import (
    REASON_INVALID_LEGACY_DATA,
    REASON_METAOBJECT_NOT_FOUND,
    SKIP_ALREADY_MIGRATED,
    SKIP_DELETED_MEANWHILE,
    ItemOutcome,
    MigrationContext,
    classify_unexpected,
    failed_outcome,
    outcome_from_shopify_error,
    skipped_outcome,
    yield_now_and_then,
)
from app.shopify.client import ShopifyClient
from app.shopify.errors import REASON_SHOPIFY_UNAVAILABLE, ShopifyError, ShopifyShopError
from app.shopify.objects import Metaobject, NodesResult


class BundlePreparation:
    """Classifies (phase 1, database), fetches (phase 2, `_MetaobjectFetch`) and parses a batch's
    rows; every row it cannot carry on gets its outcome."""

    def __init__(self, ctx: MigrationContext, shop: str, state: BundleBatchState) -> None:
        self.ctx, self.shop, self.state = ctx, shop, state

    async def run(self) -> None:
        async with self.ctx.pool.acquire() as conn:
            await self._classify(conn)
        fetch = _MetaobjectFetch(self.ctx.shopify, self.shop, self.state)
        await fetch.run()
        if fetch.not_found:
            async with self.ctx.pool.acquire() as conn:
                await self._recheck_not_found(conn, fetch.not_found)
        await self._parse()

    # ------------------------------------------------------------------ phase 1: classify (DB reads)

    async def _classify(self, conn: repo.Conn) -> None:
        """Sort the batch's rows into the four odd kinds and the ordinary ones; skip what is in V2.

        The reads share one snapshot: between two READ COMMITTED statements the API can delete a
        bundle from both stores, and the row read by the first and missing from the second would go
        to Shopify, find its metaobject deleted and fail as `metaobject_not_found`.
        """
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await repo.fetch_bundle_rows(conn, self.shop, self.state.ids)
            by_id, by_handle = self._sort(rows)
            await self._link_ai_and_skip_migrated(conn, by_id, by_handle)

    def _sort(self, rows: dict[str, repo.LegacyBundleRow]) -> tuple[list[str], list[str]]:
        """Rows keyed by a metaobject GID and by a handle; a missing or invalid row is done here."""
        state = self.state
        by_id: list[str] = []
        by_handle: list[str] = []
        for legacy_id in state.ids:
            row = rows.get(legacy_id)
            if row is None:
                state.done(
                    skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "no bundle_discount_id row for this shop")
                )
                continue
            classification = classify_bundle_discount_row(legacy_id)
            item = BundleItem(legacy_id, classification.kind, row)
            state.items[legacy_id] = item
            if classification.kind == LegacyRowKind.INVALID:
                state.done(
                    failed_outcome(
                        legacy_id,
                        REASON_INVALID_LEGACY_DATA,
                        f"bundleId is not a metaobject GID or handle: {legacy_id!r}",
                    )
                )
            elif classification.kind == LegacyRowKind.METAOBJECT_ID:
                by_id.append(legacy_id)
            elif classification.kind == LegacyRowKind.METAOBJECT_HANDLE:
                item.handle = classification.value
                by_handle.append(legacy_id)
        return by_id, by_handle

    async def _link_ai_and_skip_migrated(self, conn: repo.Conn, by_id: list[str], by_handle: list[str]) -> None:
        """Mark the rows that are an AI bundle's metaobject; skip the rows already in V2."""
        state, shop = self.state, self.shop
        ai_by_metaobject = await repo.ai_bundles_by_metaobject(conn, shop, by_id)
        for legacy_id, ai_id in ai_by_metaobject.items():
            state.items[legacy_id].ai_id = ai_id
        state.ai_refs = await ai_product_refs(self.ctx, conn, shop, list(ai_by_metaobject.values()))
        plain = [legacy_id for legacy_id in by_id if legacy_id not in ai_by_metaobject]
        existing = await _v2_bundles(conn, shop, by_metaobject=plain, by_legacy_key=by_handle)
        for legacy_id, v2_id in existing.items():
            if legacy_id in state.items:
                state.done(skipped_outcome(legacy_id, SKIP_ALREADY_MIGRATED, v2_id=v2_id))

    async def _recheck_not_found(self, conn: repo.Conn, not_found: list[ItemOutcome]) -> None:
        """A metaobject Shopify does not have: was its bundle deleted while Shopify was read?

        The legacy app deletes the metaobject in Shopify first and the row after, and the API's delete
        removes both stores; so a row that is gone now, or whose bundle V2 now has, is not a failure.
        Only a row that is still there with no V2 bundle is `metaobject_not_found`.
        """
        ids = [o.legacy_id for o in not_found]
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await repo.fetch_bundle_rows(conn, self.shop, ids)
            in_v2 = await _v2_bundles(conn, self.shop, by_metaobject=ids, by_legacy_key=ids)
        for outcome in not_found:
            legacy_id = outcome.legacy_id
            if legacy_id not in rows:
                outcome = skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "deleted while Shopify was read")
            elif legacy_id in in_v2:
                outcome = skipped_outcome(legacy_id, SKIP_ALREADY_MIGRATED, v2_id=in_v2[legacy_id])
            self.state.done(outcome)

    # ------------------------------------------------------------------ parse (CPU only)

    async def _parse(self) -> None:
        for position, item in enumerate(list(self.state.items.values())):
            await yield_now_and_then(position)
            if item.metaobject is None:
                continue
            try:
                item.parsed = parse_bundle_metaobject(item.metaobject.fields)
            except InvalidLegacyData as exc:
                self.state.done(failed_outcome(item.legacy_id, REASON_INVALID_LEGACY_DATA, str(exc)))


class _MetaobjectFetch:
    """Phase 2: the metaobjects of the rows keyed by one, from Shopify, with no database connection
    held. A row whose metaobject cannot be had gets its outcome, except a metaobject Shopify does
    not have: that row goes to `not_found` for the recheck. The others get `metaobject`. The rows
    that are an AI bundle's metaobject need none (their AI bundle is read from the database)."""

    def __init__(self, shopify: ShopifyClient, shop: str, state: BundleBatchState) -> None:
        self.shopify, self.shop, self.state = shopify, shop, state
        # Rows whose metaobject Shopify does not have: their outcome waits for a recheck of the row.
        self.not_found: list[ItemOutcome] = []

    async def run(self) -> None:
        """All GIDs in one batched nodes() read, handles by metaobjectByHandle, concurrently."""
        items = self.state.items.values()
        by_id = [i for i in items if i.kind == LegacyRowKind.METAOBJECT_ID and i.ai_id is None]
        by_handle = [i for i in items if i.kind == LegacyRowKind.METAOBJECT_HANDLE]
        if not by_id and not by_handle:
            return
        results = await self._read_metaobjects(by_id, by_handle)
        shop_error = next((r for r in results if isinstance(r, ShopifyShopError)), None)
        if shop_error is not None:
            # The shop itself is unusable (no token, 401, frozen, locked, gone): every item that needs
            # Shopify fails with that reason; the other items of the batch go on.
            for item in [*by_id, *by_handle]:
                self.state.done(outcome_from_shopify_error(item.legacy_id, shop_error))
            return
        if by_id:
            self._take_nodes(by_id, results[0])
        self._take_handles(by_handle, results[1 if by_id else 0 :])

    async def _read_metaobjects(self, by_id: list[BundleItem], by_handle: list[BundleItem]) -> list[Any]:
        """One result per call, in call order: the nodes() read first (if any), then each handle's;
        a failed call's exception in its place. Cancellation propagates."""
        shopify, shop = self.shopify, self.shop
        calls: list[Awaitable[Any]] = []
        if by_id:
            calls.append(shopify.fetch_metaobjects_detailed(shop, [i.legacy_id for i in by_id]))
        for item in by_handle:
            assert item.handle is not None
            calls.append(shopify.fetch_metaobject_by_handle(shop, BUNDLE_METAOBJECT_TYPE, item.handle))
        results: list[Any] = list(await asyncio.gather(*calls, return_exceptions=True))
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation
        return results

    def _take_nodes(self, by_id: list[BundleItem], nodes_result: NodesResult[Metaobject] | Exception) -> None:
        """The nodes() read's answer for each GID row: its metaobject, or the row's outcome."""
        done = self.state.done
        if isinstance(nodes_result, Exception):
            for item in by_id:
                done(_fetch_failure(item.legacy_id, nodes_result))
            return
        for item in by_id:
            if item.legacy_id in nodes_result.failed:
                done(
                    failed_outcome(
                        item.legacy_id,
                        REASON_SHOPIFY_UNAVAILABLE,
                        nodes_result.failed[item.legacy_id],
                        transient=True,
                    )
                )
            elif item.legacy_id in nodes_result.invalid:
                done(failed_outcome(item.legacy_id, REASON_INVALID_LEGACY_DATA, "Shopify refused the id as invalid"))
            elif (mo := nodes_result.nodes.get(item.legacy_id)) is None:
                self.not_found.append(
                    failed_outcome(item.legacy_id, REASON_METAOBJECT_NOT_FOUND, "nodes() returned null")
                )
            else:
                item.metaobject = mo

    def _take_handles(self, by_handle: list[BundleItem], results: list[Any]) -> None:
        """Each handle row's metaobjectByHandle answer: its metaobject, or the row's outcome."""
        for item, result in zip(by_handle, results, strict=True):
            if isinstance(result, Exception):
                self.state.done(_fetch_failure(item.legacy_id, result))
            elif result is None:
                self.not_found.append(
                    failed_outcome(
                        item.legacy_id,
                        REASON_METAOBJECT_NOT_FOUND,
                        f"no {BUNDLE_METAOBJECT_TYPE} metaobject with handle {item.handle!r}",
                    )
                )
            else:
                item.metaobject = result


async def _v2_bundles(
    conn: repo.Conn, shop: str, *, by_metaobject: list[str], by_legacy_key: list[str]
) -> dict[str, str]:
    """legacy key → the V2 bundle that already holds it: by `shopifyMetaobjectId` for GID rows, by
    `metadata.legacyBundleId` for handle rows (their bundle is keyed by the real GID)."""
    found = await repo.existing_bundles_by_metaobject(conn, shop, by_metaobject)
    found.update(await repo.existing_bundles_by_legacy_key(conn, shop, by_legacy_key))
    return found


def _fetch_failure(legacy_id: str, exc: Exception) -> ItemOutcome:
    """A failed Shopify call's outcome for one row: the error's own reason, else classified."""
    if isinstance(exc, ShopifyError):
        return outcome_from_shopify_error(legacy_id, exc)
    reason, transient = classify_unexpected(exc)
    return failed_outcome(legacy_id, reason, repr(exc)[:500], transient=transient)
