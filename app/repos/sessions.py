"""The legacy `session` table: where a shop's offline Admin API token lives."""

from __future__ import annotations

import json

import asyncpg


async def get_offline_token(pool: asyncpg.Pool, shop: str) -> str | None:
    """The shop's offline token, or None when there is no row, no JSON or no token in it."""
    content = await pool.fetchval('SELECT content FROM "session" WHERE id = $1', f"offline_{shop}")
    if not content:
        return None
    try:
        data = json.loads(content)
    except (TypeError, ValueError):
        return None
    token = data.get("accessToken") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None
