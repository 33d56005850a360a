"""Per-item migration logic (plan Phase 3): legacy rows → V2 rows, one short transaction per item.

INTERFACE CONTRACT between the item logic and the job engine (app/services/migration/jobs.py).
The engine plans items, claims batches and persists outcomes (`dispatch.plan_items`,
`dispatch.migrate_batch`); this package knows the legacy and V2 schemas and Shopify, and nothing of
jobs. Its modules, each one concern:

* `common`: item kinds, outcomes and their stable reason codes, the context, `guarded` (one item's
  work → exactly one outcome), small value helpers;
* `dispatch`: the two entry points the engine calls, by item kind, and the item metrics;
* `slugs`, `product_cache`: the slug allocator and the component product cache, shared by kinds;
* `auto_rules`, `ai_bundles`: auto_bundle_rules / auto_bundle_data and ai_fbt_bundles rows;
* `bundle_batch` (the batch of bundle_discount_id rows) with its phases: `bundle_preparation`
  (classify, Shopify, parse → `bundle_items`), then the writers `manual_bundles` (ordinary rows,
  batched and one at a time) and `linked_rows` (rows that are an auto rule's discount or an AI
  bundle's metaobject).

How a batch runs (`migrate_batch`), and why:

1. Batch reads, one statement each and all in one REPEATABLE READ snapshot, on a pooled
   connection that is released before Shopify is called: the legacy rows, which of them already
   have a V2 row (skipped without a Shopify call, so a re-run costs no API points), which are an AI
   bundle's metaobject. (The taken slugs are read once the metaobjects are parsed, as their names
   decide the slugs.)
2. Shopify, without holding a database connection: all metaobject GIDs of the batch in one
   `nodes(ids:)` call (the client splits at 250), handle-in-place-of-id keys by
   `metaobjectByHandle` concurrently, then (with `fill_products`) all product GIDs in one more
   `nodes` call. A shop-level error (no token, 401, 402, 423, 404) fails every item that needed
   Shopify with that reason; a transient one (`shopify_unavailable`) fails them as transient. A
   metaobject Shopify does not have is rechecked in the database first: the legacy app deletes the
   metaobject before the row, so a row gone by then is `deleted_meanwhile`, not a failure.
3. Per item, its own short transaction: re-read the legacy row `FOR SHARE` (gone → skipped
   `deleted_meanwhile`; its *current* name and discount are used, not the batch read's), then
   `INSERT ... ON CONFLICT DO NOTHING RETURNING id` writing the V2 row and all its children through
   data-modifying CTEs. Nothing returned → skipped `already_migrated`, nothing else written: the
   unique index, not a read, decides, so concurrent jobs, replicas and the dual-writing API cannot
   create duplicates, and an API write is never overwritten. For manual bundles (the bulk of the
   data) lock and insert are ONE statement, i.e. one implicit transaction and one round trip, and
   all ordinary manual bundles of the batch share that statement (`repo.insert_manual_bundles`:
   the same lock, name check and ON CONFLICT per row); a statement that fails (a slug taken
   meanwhile, one item's bad value) wrote nothing and its items go through the one-item path,
   which reports each of them. AI bundles and auto rules use an explicit BEGIN / SELECT ... FOR
   SHARE / INSERT / COMMIT. See docs/migration.md for the full argument.

Nothing here raises for a bad item or a Shopify failure: every legacy id gets exactly one outcome.

This file re-exports nothing: callers import from the module that holds a name. Outside this
package, the job engine uses `dispatch` and the types of `common`; the rest is the package's own.
"""
