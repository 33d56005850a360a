"""The one guard for "this needs the legacy tables": a 409 with the way out while Phase 5 has them archived.

Used by everything that reads or writes `ARCHIVED_LEGACY_TABLES`: stage changes, flag writes that
would turn dual writes on or reads back to legacy, the validation report, job planning.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.errors import Conflict
from app.repos import legacy_tables as tables_repo
from app.repos.base import Conn
from app.repos.legacy_tables import ARCHIVE_SCHEMA, ARCHIVED_LEGACY_TABLES, Location

__all__ = [
    "ARCHIVED_LEGACY_TABLES",
    "LegacyTablesArchived",
    "legacy_table_locations",
    "require_legacy_tables",
]


class LegacyTablesArchived(Conflict):
    """409: the operation needs legacy tables that Phase 5 moved to the archive schema."""

    def __init__(self, tables: Sequence[str], action: str) -> None:
        names = ", ".join(tables)
        super().__init__(
            f"{action} needs the legacy tables, but {names} {'is' if len(tables) == 1 else 'are'} archived "
            f"(schema `{ARCHIVE_SCHEMA}`, Phase 5 cleanup). Move them back first: "
            "`shopibundle cleanup restore --reason ...` or POST /admin/cleanup/restore.",
            archivedTables=list(tables),
        )


async def require_legacy_tables(conn: Conn, action: str) -> None:
    """Raise `LegacyTablesArchived` (409) unless every archivable legacy table is in `public`.

    Called first by everything that reads them in bulk, so an archived table is a clear conflict
    with the way out, not a 500 from "relation does not exist".
    """
    locations = await tables_repo.locations(conn)
    archived = [name for name, where in locations.items() if where == "archive"]
    if archived:
        raise LegacyTablesArchived(archived, action)
    missing = [name for name, where in locations.items() if where == "missing"]
    if missing:
        raise Conflict(
            f"{action} needs the legacy tables, but {', '.join(missing)} exist in no schema (neither public nor "
            f"{ARCHIVE_SCHEMA}): restore them from a backup.",
            missingTables=missing,
        )


async def legacy_table_locations(conn: Conn) -> dict[str, Location]:
    """Where each archivable legacy table is: `public`, `archive`, `both` (needs a person) or `missing`."""
    return await tables_repo.locations(conn)
