"""V2 bundle writes (dual write, idempotency, write-through hooks) and reads (V2 or legacy, shadow comparisons).

Its modules, each one concern:

* `writes`: create, update and delete, each one transaction (locks, idempotency, outcome metrics);
* `checks`: the request checks pydantic cannot make per field, run before any transaction;
* `v2_rows`: the V2 rows a write builds and inserts (bundle, children, slug, inventory);
* `legacy_sync`: the legacy representation of a V2 bundle and the dual write (`sync_legacy`);
* `representation`: the API body of a V2 bundle, its ETag and URL, shared by reads and writes;
* `reads`, `legacy_reader`: the read path and the legacy store's reader;
* `shadow`: shadow comparisons off the response path.
"""
