"""The bundle write path: create, update and delete with dual write, idempotency and ETags.

Each operation is one transaction on one connection; this module decides what runs in it and in
which order, and its neighbours do the parts: `checks` (the request, before any transaction),
`v2_rows` (the V2 rows), `legacy_sync` (the legacy rows and the legacy representation),
`representation` (the body and ETag answered), app.services.shopify_sync.write_through (Shopify).

Why it looks like this
----------------------
* **One transaction for both stores** (api.md "Dual write"). The plan's example writes the V2 row
  and then the legacy row as two independent statements: a crash or a conflict between them leaves
  a V2 bundle the legacy app does not know about. Here every write runs on one asyncpg connection
  inside one transaction: V2 rows first, then the legacy rows, then (for creates with a key) the
  idempotency record. Any failure rolls all of it back.
* **Deciding under locks, not on stale reads.** The legacy row of the target metaobject is read
  `FOR UPDATE` before deciding whether it belongs to this bundle; a missing row is inserted with
  `ON CONFLICT DO NOTHING` so two writers racing for the same metaobject cannot both win (the loser
  gets 409 `metaobject already bundled`). The V2 side is guarded by `sb_bundle_shop_metaobject_key`.
  Updates and deletes lock the bundle row first, so concurrent PATCHes serialise and `If-Match`
  is exact.
* **Idempotency keys are claimed first.** The (shop, key) row is inserted at the start of the
  create's transaction; a concurrent request with the same key blocks on the primary key until
  the first commits, then replays its stored response instead of creating a second bundle.
* **Deadlocks and serialisation failures are retried** (whole transaction, 3 attempts): they are
  the database telling us to try again, not the client's fault. A lost database connection is a
  503 problem, never a 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from app.core.container import Container
from app.core.errors import Conflict, DomainError, NotFound, NotReady, PreconditionFailed, ValidationFailed
from app.core.ids import new_id
from app.core.metrics import DUAL_WRITES
from app.core.time import utcnow
from app.repos import bundles as repo
from app.repos import idempotency as idem_repo
from app.repos import runner
from app.repos.base import Executor
from app.schemas.bundles import BundleCreate, BundleUpdate, InventoryOut, LegacySync
from app.services.bundles import shadow
from app.services.bundles.checks import (
    check_idempotency_key,
    check_ref,
    field_error,
    refuse_invalid,
    semantic_errors,
)
from app.services.bundles.legacy_sync import (
    METAOBJECT_CONFLICT,
    MetaobjectConflict,
    created_metadata,
    legacy_shape,
    sync_legacy,
    updated_metadata,
)
from app.services.bundles.representation import etag_matches, etag_of, to_out
from app.services.bundles.v2_rows import (
    insert_children,
    insert_with_slug,
    load_full,
    merged_inventory,
    new_bundle_row,
    replace_children,
)
from app.services.flags import snapshot as flags
from app.services.shopify_sync import write_through

log = logging.getLogger(__name__)

T = TypeVar("T")

ONE_MS = timedelta(milliseconds=1)
#: Columns a PATCH sets as given (slug, metadata and publishedAt need a decision first).
PATCHED_COLUMNS = (
    "name",
    "title",
    "description",
    "type",
    "status",
    "shopifyProductId",
    "shopifyMetaobjectId",
    "displayOrder",
    "featuredImage",
    "currencyCode",
    "tags",
    "images",
)

_CONFLICTS_BY_INDEX: runner.ConflictMap = {
    "sb_bundle_shop_metaobject_key": lambda: MetaobjectConflict(METAOBJECT_CONFLICT),
    "bundle_discount_id_pkey": lambda: MetaobjectConflict(METAOBJECT_CONFLICT),
    "sb_bundle_shop_ai_bundle_key": lambda: Conflict("AI bundle already has a V2 bundle"),
    "Bundle_shop_slug_key": lambda: Conflict("slug taken"),
}


def _register_series() -> None:
    """Zero-valued series per (op, outcome), so the family is scrapeable before the first write."""
    for op in ("create", "update", "delete"):
        for outcome in ("ok", "not_representable", "conflict", "rolled_back"):
            DUAL_WRITES.add(0, {"op": op, "outcome": outcome})


_register_series()


#: `responseStatus` an idempotency record keeps for a completed create (the column is the API's status).
IDEMPOTENT_CREATED = 201


class _KeyTaken(Exception):
    """The Idempotency-Key row exists (committed by an earlier request): replay it."""


@dataclass(slots=True)
class WriteResult:
    """A write's outcome: the JSON-ready bundle, its ETag, whether this write created it (a replay
    tells what the first request did) and whether it is a replay. The router picks the status."""

    created: bool
    body: dict[str, Any]
    bundle_id: str
    etag: str
    replayed: bool = False


async def run_transaction(container: Container, fn: Callable[[Executor], Awaitable[T]]) -> T:
    """`runner.run_transaction` on the container's pool, with the bundle tables' conflicts."""
    return await runner.run_transaction(container.pool, fn, conflicts=_CONFLICTS_BY_INDEX, passthrough=(_KeyTaken,))


def _request_hash(body: BundleCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json", exclude_unset=True), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Dual-write outcomes and the fault hook
# --------------------------------------------------------------------------------------------


async def _fault_hook(container: Container, shop: str, conn: Executor) -> None:
    hook = container.fault_hooks.after_v2_write
    if hook is not None:
        get_pid = getattr(conn, "get_server_pid", None)
        await hook(shop, get_pid() if get_pid is not None else 0)


def _count(op: str, outcome: str) -> None:
    DUAL_WRITES.add(1, {"op": op, "outcome": outcome})


async def _observe(op: str, dual: bool, action: Awaitable[T]) -> T:
    """Count dual-write failures by kind (successes are counted by the caller, who knows the outcome)."""
    try:
        return await action
    except MetaobjectConflict:
        if dual:
            _count(op, "conflict")
        raise
    except _KeyTaken:
        raise
    except Exception as exc:
        # Validation, 404 and 412 are not dual-write failures; a lost database or a bug is.
        if dual and (isinstance(exc, NotReady) or not isinstance(exc, DomainError)):
            _count(op, "rolled_back")
        raise


def _after_commit(container: Container, shop: str, op: str, dual: bool, sync: LegacySync, bundle_id: str) -> None:
    """Count a committed dual write by its legacy outcome; a synced one is verified by a shadow read."""
    if dual:
        _count(op, "ok" if sync == "synced" else sync)
        if sync == "synced":  # re-read both stores after commit (sampled, in the background)
            shadow.after_dual_write(container, shop, bundle_id)


# --------------------------------------------------------------------------------------------
# Create
# --------------------------------------------------------------------------------------------


async def create_bundle(
    container: Container, shop: str, body: BundleCreate, idempotency_key: str | None = None
) -> WriteResult:
    """Create a bundle (V2 rows + legacy rows in one transaction); replay an earlier answer for a reused key."""
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    refuse_invalid(
        semantic_errors(
            components=body.components, rules=body.pricingRules, discounts=body.discounts, metadata=body.metadata
        )
    )
    dual = flags.is_on(container, "DUAL_WRITE", shop)
    request_hash = _request_hash(body)
    bundle_id = new_id()
    # Write-through: the Shopify metaobject + discount exist before the rows that point to them; compensated below.
    shopify_side = None
    if dual:
        shopify_side = await write_through.before_create(
            container, shop, body, idempotency_key, bundle_id=bundle_id, request_hash=request_hash
        )
        body = shopify_side.body if shopify_side is not None else body

    async def work(conn: Executor) -> tuple[dict[str, Any], LegacySync]:
        await write_through.commit_intent(conn, shopify_side)  # the create intent commits with the rows
        if idempotency_key is not None and not await idem_repo.claim(
            conn, shop, idempotency_key, request_hash, utcnow() - idem_repo.IDEMPOTENCY_TTL
        ):
            raise _KeyTaken()
        full, sync = await _insert_bundle(container, conn, shop, bundle_id, body, dual)
        out = to_out(full, sync).model_dump(mode="json")
        if shopify_side is not None:  # write-through: what the bundle's metaobject could not say
            out["legacyApproximations"] = list(shopify_side.approximations)
        if idempotency_key is not None:
            await idem_repo.complete(conn, shop, idempotency_key, IDEMPOTENT_CREATED, out, bundle_id)
        return out, sync

    try:
        out, sync = await _observe("create", dual, run_transaction(container, work))
    except _KeyTaken:
        assert idempotency_key is not None
        await write_through.after_create_failed(container, shop, shopify_side)  # undo the Shopify objects
        return await _replay(container, shop, idempotency_key, request_hash)
    except BaseException:
        await write_through.after_create_failed(container, shop, shopify_side)  # undo the Shopify objects
        raise
    _after_commit(container, shop, "create", dual, sync, out["id"])
    return WriteResult(True, out, out["id"], etag_of(out))


async def _insert_bundle(
    container: Container, conn: Executor, shop: str, bundle_id: str, body: BundleCreate, dual: bool
) -> tuple[dict[str, Any], LegacySync]:
    """The create's rows: the V2 bundle, its children and inventory, then (dual) the legacy rows."""
    now = utcnow()
    metadata, ai_must_exist = created_metadata(body.metadata, dual=dual)
    await insert_with_slug(conn, new_bundle_row(bundle_id, shop, body, metadata, now), body.slug)
    await insert_children(
        conn, bundle_id, now, components=body.components, rules=body.pricingRules, discounts=body.discounts
    )
    inventory = body.inventory.model_dump() if body.inventory else InventoryOut().model_dump()
    await repo.upsert_inventory(conn, bundle_id, inventory, new_id())
    full = await load_full(conn, shop, bundle_id)
    sync: LegacySync = "disabled"
    if dual:
        await _fault_hook(container, shop, conn)
        sync = await sync_legacy(conn, shop, None, legacy_shape(full), now, ai_must_exist=ai_must_exist)
    return full, sync


async def _replay(container: Container, shop: str, key: str, request_hash: str) -> WriteResult:
    stored = await runner.run_read(container.pool, lambda conn: idem_repo.get(conn, shop, key))
    if stored is None or not stored["responseStatus"]:
        raise NotReady("The earlier request with this Idempotency-Key is unresolved; retry.")
    if stored["requestHash"] != request_hash:
        raise ValidationFailed(
            "Idempotency-Key reused with a different body.",
            errors=[field_error("header.Idempotency-Key", "already used with a different request body")],
        )
    body = stored["responseBody"]
    return WriteResult(
        int(stored["responseStatus"]) == IDEMPOTENT_CREATED, body, str(body.get("id")), etag_of(body), replayed=True
    )


# --------------------------------------------------------------------------------------------
# Update and delete: lock the bundle, check If-Match, then write
# --------------------------------------------------------------------------------------------


async def _lock_unchanged(
    conn: Executor, shop: str, bundle_ref: str, if_match: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundle's row, locked, and the bundle with its children; 404 when absent, 412 when
    `If-Match` names another version (compared under the lock, so it is exact)."""
    current = await repo.lock_bundle(conn, shop, bundle_ref)
    if current is None:
        raise NotFound("Bundle not found.")
    before = await load_full(conn, shop, current["id"])
    if if_match is not None and not etag_matches(if_match, etag_of(to_out(before).model_dump(mode="json"))):
        raise PreconditionFailed("The bundle changed since you read it (If-Match does not match the ETag).")
    return current, before


async def update_bundle(
    container: Container, shop: str, bundle_ref: str, patch: BundleUpdate, if_match: str | None = None
) -> WriteResult:
    """Partial update by V2 id or metaobject GID; lists replace; `If-Match` must name the current ETag.

    Every call is a write: `updatedAt` moves forward (at least 1 ms past the previous value, so
    the ETag changes even for two updates within one millisecond) and the legacy rows are
    re-synchronised, which also repairs drift.
    """
    check_ref(bundle_ref)
    given = patch.model_fields_set
    refuse_invalid(
        semantic_errors(
            components=patch.components if "components" in given else None,
            rules=patch.pricingRules if "pricingRules" in given else None,
            discounts=patch.discounts if "discounts" in given else None,
            metadata=patch.metadata if "metadata" in given else None,
        )
    )
    dual = flags.is_on(container, "DUAL_WRITE", shop)

    async def work(conn: Executor) -> tuple[dict[str, Any], LegacySync]:
        current, before = await _lock_unchanged(conn, shop, bundle_ref, if_match)
        full, sync, approximations = await _apply_patch(container, conn, shop, current, before, patch, dual)
        out = to_out(full, sync).model_dump(mode="json")
        if approximations is not None:  # write-through: what the bundle's metaobject could not say
            out["legacyApproximations"] = approximations
        return out, sync

    out, sync = await _observe("update", dual, run_transaction(container, work))
    _after_commit(container, shop, "update", dual, sync, out["id"])
    return WriteResult(False, out, out["id"], etag_of(out))


async def _apply_patch(
    container: Container,
    conn: Executor,
    shop: str,
    current: dict[str, Any],
    before: dict[str, Any],
    patch: BundleUpdate,
    dual: bool,
) -> tuple[dict[str, Any], LegacySync, list[write_through.Approximation] | None]:
    """The update's writes on the locked bundle: its row, replaced child lists, inventory, then (dual)
    the legacy rows and the write-through outbox row. Returns the bundle as written, the legacy
    outcome and write-through's approximations (None when it did not run)."""
    given = patch.model_fields_set
    bundle_id = current["id"]
    old_shape = legacy_shape(before)
    now = utcnow()
    changes, ai_must_exist = await _row_changes(conn, shop, current, patch, old_shape.ai_bundle_id, dual, now)
    previous = current["updatedAt"]
    updated_at = max(now, previous + ONE_MS) if previous else now
    await repo.update_bundle(conn, bundle_id, changes, updated_at)
    await replace_children(
        conn,
        bundle_id,
        updated_at,
        components=patch.components if "components" in given else None,
        rules=patch.pricingRules if "pricingRules" in given else None,
        discounts=patch.discounts if "discounts" in given else None,
    )
    if "inventory" in given and patch.inventory is not None:
        merged = merged_inventory(before.get("inventory"), patch.inventory.model_dump(exclude_unset=True))
        await repo.upsert_inventory(conn, bundle_id, merged, new_id())
    full = await load_full(conn, shop, bundle_id)
    sync: LegacySync = "disabled"
    approximations = None
    if dual:
        await _fault_hook(container, shop, conn)
        sync = await sync_legacy(conn, shop, old_shape, legacy_shape(full), now, ai_must_exist=ai_must_exist)
        approximations = await write_through.after_update(container, conn, shop, before, full)  # outbox row
    return full, sync, approximations


async def _row_changes(
    conn: Executor,
    shop: str,
    current: dict[str, Any],
    patch: BundleUpdate,
    old_ai_bundle_id: str | None,
    dual: bool,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """The `Bundle` columns the patch changes, and whether its `ai_bundle_id` must name an existing
    AI row. A new slug must be free (409 otherwise); the first activation sets `publishedAt`."""
    given = patch.model_fields_set
    changes: dict[str, Any] = {column: getattr(patch, column) for column in PATCHED_COLUMNS if column in given}
    if "slug" in given and patch.slug != current["slug"]:
        if await repo.slug_taken(conn, shop, patch.slug or "", exclude_id=current["id"]):
            raise Conflict("slug taken", slug=patch.slug)
        changes["slug"] = patch.slug
    moved = "shopifyMetaobjectId" in changes and changes["shopifyMetaobjectId"] != current["shopifyMetaobjectId"]
    metadata, rewritten, ai_must_exist = updated_metadata(
        patch.metadata if "metadata" in given else current["metadata"],
        stored=current["metadata"],
        moved=moved,
        old_ai_bundle_id=old_ai_bundle_id,
        dual=dual,
    )
    if rewritten or "metadata" in given:
        changes["metadata"] = metadata
    if changes.get("status") == "ACTIVE" and current["publishedAt"] is None:
        changes["publishedAt"] = now
    return changes, ai_must_exist


async def delete_bundle(container: Container, shop: str, bundle_ref: str, if_match: str | None = None) -> None:
    """Delete by V2 id or metaobject GID (children cascade); the legacy rows go in the same transaction."""
    check_ref(bundle_ref)
    dual = flags.is_on(container, "DUAL_WRITE", shop)

    async def work(conn: Executor) -> Literal["ok", "disabled"]:
        current, before = await _lock_unchanged(conn, shop, bundle_ref, if_match)
        await repo.delete_bundle(conn, current["id"])
        if not dual:
            return "disabled"
        await _fault_hook(container, shop, conn)
        await sync_legacy(conn, shop, legacy_shape(before), None, utcnow(), ai_must_exist=False)
        await write_through.after_delete(container, conn, shop, before)  # the Shopify deletes, queued in the outbox
        return "ok"

    outcome = await _observe("delete", dual, run_transaction(container, work))
    if dual:
        _count("delete", outcome)
