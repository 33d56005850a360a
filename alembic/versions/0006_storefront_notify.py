"""Storefront change notifications: `pg_notify('sb_storefront_changed', <shop>)` from every write.

Each replica caches storefront answers per shop in process (app/core/read_cache.py) and drops a
shop's answers when told. Telling is done here, by statement-level AFTER triggers on every V2
table the storefront answer is computed from (`Bundle`, `BundleComponent`, `BundlePricingRule`,
`BundleInventory`: the tables `app/repos/storefront.py` reads), so every writer notifies: the API
and its dual write, migration jobs, rollback tooling, manual SQL. A notification is delivered
only when (and if) its transaction commits, so a replica never drops an answer for a write that
rolled back, nor misses one that committed.

* Statement-level with transition tables: one trigger run per statement, one `pg_notify` per
  distinct shop the statement touched (PostgreSQL also folds identical notifications of one
  transaction into one). Transition tables allow one event per trigger, hence three per table.
* `Bundle` rows carry the shop; child rows are mapped to it through `Bundle` by `bundleId`. A
  child deleted by the cascade of its bundle's delete no longer finds its bundle: the bundle's
  own trigger has notified that shop already.
* An UPDATE notifies the shops of the old and the new rows (a row moved between bundles).
* TRUNCATE has no transition table: it notifies `*`, every shop.

Revision ID: 0006_storefront_notify
Revises: 0005_outbox
Create Date: 2026-12-06 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_storefront_notify"
down_revision: str | Sequence[str] | None = "0005_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "sb_storefront_changed"
#: The table holding the shop, and the child tables joined to it by "bundleId".
SHOP_TABLE = "Bundle"
CHILD_TABLES = ("BundleComponent", "BundlePricingRule", "BundleInventory")

_SHOP_FN = "sb_storefront_notify_by_shop"
_CHILD_FN = "sb_storefront_notify_by_bundle"
_ALL_FN = "sb_storefront_notify_all"

#: (trigger suffix, event, REFERENCING clause)
_EVENTS = (
    ("ins", "INSERT", "REFERENCING NEW TABLE AS sb_new"),
    ("upd", "UPDATE", "REFERENCING OLD TABLE AS sb_old NEW TABLE AS sb_new"),
    ("del", "DELETE", "REFERENCING OLD TABLE AS sb_old"),
)


def _trigger_name(suffix: str) -> str:
    """Trigger names are per table: every table gets the same four."""
    return f"sb_storefront_notify_{suffix}"


def upgrade() -> None:
    # plpgsql plans each statement on first execution, so a branch naming a transition table
    # the firing trigger does not have is never planned.
    op.execute(
        f"""
        CREATE FUNCTION {_SHOP_FN}() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            changed_shop text;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                FOR changed_shop IN SELECT DISTINCT shop FROM sb_new LOOP
                    PERFORM pg_notify('{CHANNEL}', changed_shop);
                END LOOP;
            ELSIF TG_OP = 'UPDATE' THEN
                FOR changed_shop IN SELECT shop FROM sb_old UNION SELECT shop FROM sb_new LOOP
                    PERFORM pg_notify('{CHANNEL}', changed_shop);
                END LOOP;
            ELSE
                FOR changed_shop IN SELECT DISTINCT shop FROM sb_old LOOP
                    PERFORM pg_notify('{CHANNEL}', changed_shop);
                END LOOP;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {_CHILD_FN}() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            changed_shop text;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                FOR changed_shop IN
                    SELECT DISTINCT b.shop FROM sb_new c JOIN "{SHOP_TABLE}" b ON b.id = c."bundleId"
                LOOP
                    PERFORM pg_notify('{CHANNEL}', changed_shop);
                END LOOP;
            ELSIF TG_OP = 'UPDATE' THEN
                FOR changed_shop IN
                    SELECT DISTINCT b.shop
                    FROM (SELECT "bundleId" FROM sb_old UNION SELECT "bundleId" FROM sb_new) c
                    JOIN "{SHOP_TABLE}" b ON b.id = c."bundleId"
                LOOP
                    PERFORM pg_notify('{CHANNEL}', changed_shop);
                END LOOP;
            ELSE
                FOR changed_shop IN
                    SELECT DISTINCT b.shop FROM sb_old c JOIN "{SHOP_TABLE}" b ON b.id = c."bundleId"
                LOOP
                    PERFORM pg_notify('{CHANNEL}', changed_shop);
                END LOOP;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {_ALL_FN}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '*');
            RETURN NULL;
        END
        $$
        """
    )
    for table in (SHOP_TABLE, *CHILD_TABLES):
        function = _SHOP_FN if table == SHOP_TABLE else _CHILD_FN
        for suffix, event, referencing in _EVENTS:
            op.execute(
                f'CREATE TRIGGER {_trigger_name(suffix)} AFTER {event} ON "{table}" '
                f"{referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        op.execute(
            f'CREATE TRIGGER {_trigger_name("trunc")} AFTER TRUNCATE ON "{table}" '
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_ALL_FN}()"
        )


def downgrade() -> None:
    for table in (SHOP_TABLE, *CHILD_TABLES):
        for suffix in ("ins", "upd", "del", "trunc"):
            op.execute(f'DROP TRIGGER IF EXISTS {_trigger_name(suffix)} ON "{table}"')
    for function in (_SHOP_FN, _CHILD_FN, _ALL_FN):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
