"""The flag audit log (`GET /admin/flags/audit`): every change with who, when, why, before and after."""

from __future__ import annotations

from typing import Any

from app.core.time import as_utc
from app.repos import flags as repo
from app.rules.cursors import decode_cursor, encode_cursor
from app.rules.flags import DEFAULT_STATES
from app.services.flags.snapshot import FlagStore, UnknownFlag


async def audit_page(store: FlagStore, *, limit: int, cursor: str | None, flag: str | None) -> dict[str, Any]:
    """Newest first; `nextCursor` is null on the last page."""
    if flag is not None and flag not in DEFAULT_STATES:
        raise UnknownFlag(flag)
    before = int(decode_cursor(cursor, "audit", key_type=int).key) if cursor else None
    rows = await repo.list_audit(store.pool, limit=limit + 1, before_id=before, flag_name=flag)
    items = rows[:limit]
    for item in items:
        item["changedAt"] = as_utc(item["changedAt"])
    next_cursor = encode_cursor("audit", items[-1]["id"]) if len(rows) > limit else None
    return {"items": items, "nextCursor": next_cursor}
