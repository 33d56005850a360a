"""The `shopibundle` command groups, one module each; `app.cli` assembles them into one parser.

* `common`: what the groups share (handler and registrar types, running a handler, the pool and
  container a command opens, the error and actor helpers);
* `serve` (serve, worker), `db`, `migrate`, `write_through` (reconcile, outbox), `validate`,
  `stage`, `rollback`, `rollout`, `cleanup`, `demo`.

A group's module exposes `add_<name>(sub)`; its handlers are its own. This file re-exports nothing.
"""
