"""What the running service holds: settings, engine, pools, clients, background tasks.

Created once by the lifespan; endpoints reach it through `Depends(get_container)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.auth import Authenticator, parse_admin_tokens
from app.core.config import Settings
from app.core.db import (
    create_engine,
    create_pool,
    create_sessionmaker,
    resolve_database_url,
    resolve_direct_url,
    to_plain_url,
    uses_pgbouncer,
)
from app.core.metrics import SHOPIFY_CALLS, SHOPIFY_THROTTLE_WAIT
from app.core.migrations import upgrade_async
from app.core.rate_limit import TokenBucketLimiter
from app.core.read_cache import InvalidationListener, ReadCache
from app.core.tasks import stop_tasks
from app.repos.sessions import get_offline_token
from app.shopify.client import ShopifyClient

if TYPE_CHECKING:  # annotations only: the components are the services', the container only holds them
    from app.services.bundles.legacy_reader import LegacyReader
    from app.services.bundles.reads import ShadowRunner
    from app.services.flags.snapshot import FlagStore
    from app.services.migration.worker import JobWorker
    from app.services.ops.status_page import ValidationCache
    from app.services.rollouts.driver import RolloutDriver
    from app.services.shopify_sync.outbox import OutboxDispatcher

log = logging.getLogger(__name__)

#: `FaultHooks.after_v2_write(shop, backend_pid)`.
AfterV2WriteHook = Callable[[str, int], Awaitable[None]]


@dataclass
class FaultHooks:
    """Test seams: each hook, when set, runs at one named point of a service (None in production)."""

    #: Inside a bundle write's transaction, after the V2 rows and before the legacy ones (tests kill
    #: the connection there).
    after_v2_write: AfterV2WriteHook | None = None


@dataclass
class Container:
    settings: Settings
    database_url: str
    #: Key of the status page's login cookies: derived from every admin token, so that revoking
    #: any one of them also ends the cookie sessions.
    ui_cookie_key: str
    authenticator: Authenticator
    admin_rate_limiter: TokenBucketLimiter
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    shopify: ShopifyClient
    # Filled by lifecycle.start(): the flag store, the job worker, the legacy reader, ...
    flags: FlagStore | None = None
    #: The storefront read model (`app.services.storefront.reads.start_read_model`): answers by shop, and
    #: the LISTEN connection that keeps them exact. None when STOREFRONT_CACHE is off.
    storefront_cache: ReadCache[Any] | None = None
    storefront_cache_listener: InvalidationListener | None = None
    #: The migration job worker (`RUN_WORKER`), the outbox dispatcher (when write-through is on), and
    #: the start of both deferred until the schema reaches head.
    worker: JobWorker | None = None
    outbox_dispatcher: OutboxDispatcher | None = None
    deferred_start: asyncio.Task[None] | None = None
    #: Created on first use: sampled shadow comparisons, the legacy read path's reader and cache,
    #: the status page's cached validation report.
    shadow_runner: ShadowRunner | None = None
    legacy_reader: LegacyReader | None = None
    status_page_validation: ValidationCache | None = None
    #: The guarded-rollout driver (`ROLLOUT_DRIVER`): moves the shops of unfinished rollouts.
    rollout_driver: RolloutDriver | None = None
    fault_hooks: FaultHooks = field(default_factory=FaultHooks)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    #: DATABASE_DIRECT_URL: the primary without a transaction-mode pooler in between (None: the
    #: same as `database_url`); use `session_database_url`.
    direct_database_url: str | None = None
    #: The pool on DATABASE_READ_URL (None: none configured); use `read_only_pool`.
    read_pool: asyncpg.Pool | None = None

    @property
    def session_database_url(self) -> str:
        """Where a connection that needs its session goes: LISTEN, pgqueuer, session state."""
        return self.direct_database_url or self.database_url

    @property
    def read_only_pool(self) -> asyncpg.Pool:
        """The pool of read-only paths that tolerate replica lag (storefront, bundle GET/list)."""
        return self.read_pool or self.pool

    async def close(self) -> None:
        await stop_tasks(self.tasks, grace_s=0)
        await self.http.aclose()
        await self.pool.close()
        if self.read_pool is not None:
            await self.read_pool.close()
        await self.engine.dispose()


#: Development-only app credentials: anyone knowing them can forge session tokens and App Proxy
#: signatures, so they are used only in embedded development mode.
DEV_API_KEY = "dev-api-key"
DEV_API_SECRET = "dev-api-secret"


def resolve_app_credentials(settings: Settings) -> tuple[str, str]:
    """The app's API key and secret; outside embedded development mode both must be configured."""
    if settings.shopify_api_key and settings.shopify_api_secret:
        return settings.shopify_api_key, settings.shopify_api_secret
    if not settings.embedded:
        missing = [
            name
            for name, value in (
                ("SHOPIFY_API_KEY", settings.shopify_api_key),
                ("SHOPIFY_API_SECRET", settings.shopify_api_secret),
            )
            if not value
        ]
        raise RuntimeError(
            f"{' and '.join(missing)} must be set when DATABASE_URL is set (production mode): without the "
            "app's own credentials anyone could forge session tokens and App Proxy signatures"
        )
    log.warning("embedded development mode: using the development SHOPIFY_API_KEY/SHOPIFY_API_SECRET")
    return settings.shopify_api_key or DEV_API_KEY, settings.shopify_api_secret or DEV_API_SECRET


def resolve_admin_tokens(settings: Settings) -> dict[str, str]:
    """Every internal token by name; only the embedded development mode may invent one."""
    tokens = parse_admin_tokens(settings.admin_api_token, settings.admin_api_tokens)
    if tokens:
        return tokens
    return {"admin": resolve_admin_token(settings)}


def resolve_admin_token(settings: Settings) -> str:
    """The internal token; only the embedded development mode may invent (and print) one."""
    if settings.admin_api_token:
        return settings.admin_api_token
    if not settings.embedded:
        raise RuntimeError(
            "ADMIN_API_TOKEN is required when DATABASE_URL is set (production mode); "
            "ADMIN_API_TOKENS=name:token,... names several"
        )
    path = Path(settings.data_dir) / "admin_token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.write_text(token)
    path.chmod(0o600)
    # The token itself is never logged: `make run` prints it once on the terminal.
    log.warning("embedded development mode: generated an ADMIN_API_TOKEN, stored in %s", path)
    return token


def _ui_cookie_key(admin_tokens: dict[str, str]) -> str:
    material = "\n".join(f"{name}:{token}" for name, token in sorted(admin_tokens.items()))
    return hashlib.sha256(material.encode()).hexdigest()


async def build_container(settings: Settings, *, serves_requests: bool = True) -> Container:
    """Everything a replica holds. `serves_requests=False` (CLI, a separate worker) needs no inbound
    credentials: missing ones are replaced by random values that authenticate nothing."""
    if serves_requests:
        api_key, api_secret = resolve_app_credentials(settings)
        admin_tokens = resolve_admin_tokens(settings)
    else:
        api_key = settings.shopify_api_key or secrets.token_urlsafe(16)
        api_secret = settings.shopify_api_secret or secrets.token_urlsafe(32)
        admin_tokens = parse_admin_tokens(settings.admin_api_token, settings.admin_api_tokens) or {
            "admin": secrets.token_urlsafe(32)
        }
    authenticator = Authenticator(
        admin_tokens,
        api_key=api_key,
        api_secret=api_secret,
        proxy_max_age_s=settings.proxy_signature_max_age_s,
    )
    url = await asyncio.to_thread(resolve_database_url, settings)
    direct_url = resolve_direct_url(settings, url)
    if settings.should_auto_migrate:
        await upgrade_async(direct_url)
    pgbouncer = uses_pgbouncer(settings, url)
    engine = create_engine(url, pool_size=settings.db_pool_size, pgbouncer=pgbouncer)
    pool = await create_pool(url, max_size=settings.db_pool_size, pgbouncer=pgbouncer)
    read_pool = None
    if settings.database_read_url:
        read_url = to_plain_url(settings.database_read_url)
        read_pool = await create_pool(
            read_url,
            max_size=settings.db_pool_size,
            pgbouncer=uses_pgbouncer(settings, read_url),
            application_name="shopibundle-read",
        )
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
        ui_cookie_key=_ui_cookie_key(admin_tokens),
        authenticator=authenticator,
        admin_rate_limiter=TokenBucketLimiter(settings.admin_rate_limit_per_s, settings.admin_rate_limit_burst),
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        pool=pool,
        http=http,
        direct_database_url=direct_url if direct_url != url else None,
        read_pool=read_pool,
    )
