"""What the running service holds: settings, engine, pools, clients, background tasks.

Created once by the lifespan; endpoints reach it through `Depends(get_container)`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import create_engine, create_pool, create_sessionmaker, resolve_database_url
from app.core.metrics import SHOPIFY_CALLS, SHOPIFY_THROTTLE_WAIT
from app.core.migrations import upgrade_async
from app.repos.sessions import get_offline_token
from app.shopify.client import ShopifyClient

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    database_url: str
    admin_token: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    shopify: ShopifyClient
    # Filled by lifecycle.start(): the flag store, the job worker, the legacy reader, ...
    flags: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.http.aclose()
        await self.pool.close()
        await self.engine.dispose()


def resolve_admin_token(settings: Settings) -> str:
    """The internal token; only the embedded development mode may invent (and print) one."""
    if settings.admin_api_token:
        return settings.admin_api_token
    if not settings.embedded:
        raise RuntimeError("ADMIN_API_TOKEN is required when DATABASE_URL is set (production mode)")
    path = Path(settings.data_dir) / "admin_token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.write_text(token)
    path.chmod(0o600)
    log.warning("embedded development mode: generated ADMIN_API_TOKEN=%s (stored in %s)", token, path)
    return token


async def build_container(settings: Settings) -> Container:
    url = await asyncio.to_thread(resolve_database_url, settings)
    admin_token = resolve_admin_token(settings)
    if settings.should_auto_migrate:
        await upgrade_async(url)
    engine = create_engine(url, pool_size=settings.db_pool_size)
    pool = await create_pool(url, max_size=settings.db_pool_size)
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.shopify_timeout_s),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
    )

    async def token_provider(shop: str) -> str | None:
        return await get_offline_token(pool, shop)

    def on_call(shop: str, outcome: str, seconds: float) -> None:
        SHOPIFY_CALLS.add(1, {"outcome": outcome})

    shopify = ShopifyClient(
        http,
        settings.shopify_admin_url_template,
        settings.shopify_api_version,
        token_provider,
        max_attempts=settings.shopify_max_attempts,
        timeout_s=settings.shopify_timeout_s,
        max_concurrency=settings.shopify_max_concurrency,
        on_call=on_call,
        on_throttle_wait=lambda shop, seconds: SHOPIFY_THROTTLE_WAIT.record(seconds),
    )
    return Container(
        settings=settings,
        shopify=shopify,
        database_url=url,
        admin_token=admin_token,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        pool=pool,
        http=http,
    )
