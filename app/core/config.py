"""The one settings object of the service.

Every knob is an environment variable (pydantic-settings), so the same image runs in
development, CI and production; `docs/configuration.md` lists them all.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FLAG_NAMES: tuple[str, ...] = ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "DUAL_WRITE", "SHADOW_READS")


class Settings(BaseSettings):
    """Service configuration, read once from the environment (and an optional `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None,
        alias="DATABASE_URL",
        description="Plain postgresql:// URL; unset = embedded PostgreSQL under DATA_DIR.",
    )
    database_read_url: str | None = Field(
        default=None,
        alias="DATABASE_READ_URL",
        description="A read replica for read-only paths (storefront, bundle GET/list); unset = DATABASE_URL.",
    )
    database_direct_url: str | None = Field(
        default=None,
        alias="DATABASE_DIRECT_URL",
        description="A session connection to the primary (LISTEN/NOTIFY, the job queue, migrations) "
        "when DATABASE_URL goes through a pooler; unset = DATABASE_URL.",
    )
    database_pgbouncer: bool | None = Field(
        default=None,
        alias="DATABASE_PGBOUNCER",
        description="DATABASE_URL / DATABASE_READ_URL go through PgBouncer in transaction mode: no "
        "server-side statement cache. Unset: on when the URL's port is 6432.",
    )
    data_dir: Path = Field(default=Path(".data"), alias="DATA_DIR")
    embedded_db_name: str = Field(default="shopibundle", alias="EMBEDDED_DB_NAME")
    auto_migrate: bool | None = Field(
        default=None,
        alias="AUTO_MIGRATE",
        description="Run Alembic to head at start-up. Default: on in embedded mode, off otherwise.",
    )
    admin_api_token: str | None = Field(default=None, alias="ADMIN_API_TOKEN")
    admin_api_tokens: str | None = Field(
        default=None,
        alias="ADMIN_API_TOKENS",
        description="Named internal tokens, `name:token,...`; the name is the audit actor.",
    )
    admin_rate_limit_per_s: float = Field(
        default=50.0,
        alias="ADMIN_RATE_LIMIT_PER_S",
        description="Sustained /admin/* requests per second per admin token (per replica).",
    )
    admin_rate_limit_burst: int = Field(default=300, alias="ADMIN_RATE_LIMIT_BURST")
    shopify_api_key: str | None = Field(
        default=None, alias="SHOPIFY_API_KEY", description="Required outside embedded development mode."
    )
    shopify_api_secret: str | None = Field(
        default=None, alias="SHOPIFY_API_SECRET", description="Required outside embedded development mode."
    )
    shopify_api_version: str = Field(default="2026-01", alias="SHOPIFY_API_VERSION")
    shopify_admin_url_template: str = Field(
        default="https://{shop}/admin/api/{version}/graphql.json", alias="SHOPIFY_ADMIN_URL_TEMPLATE"
    )
    shopify_timeout_s: float = Field(default=10.0, alias="SHOPIFY_TIMEOUT_S")
    shopify_max_concurrency: int = Field(default=8, alias="SHOPIFY_MAX_CONCURRENCY")
    shopify_max_attempts: int = Field(default=6, alias="SHOPIFY_MAX_ATTEMPTS")
    proxy_signature_max_age_s: int = Field(default=300, alias="PROXY_SIGNATURE_MAX_AGE_S")
    legacy_read_cache_ttl_s: float = Field(default=30.0, alias="LEGACY_READ_CACHE_TTL_S")
    flag_cache_ttl_s: float = Field(default=0.5, alias="FLAG_CACHE_TTL_S")
    storefront_cache: bool = Field(
        default=True,
        alias="STOREFRONT_CACHE",
        description="Serve the V2 storefront read path from the in-process read model (docs/performance.md).",
    )
    storefront_cache_ttl_s: float = Field(
        default=30.0,
        gt=0,
        alias="STOREFRONT_CACHE_TTL_S",
        description="Safety bound on a cached storefront answer; notifications and pricing windows keep it exact.",
    )
    storefront_cache_max_entries: int = Field(default=20_000, ge=1, alias="STOREFRONT_CACHE_MAX_ENTRIES")
    # --- The rollout's evidence (docs/feature-flags.md, "Evidence") ---
    shadow_max_in_flight: int = Field(
        default=16, ge=1, alias="SHADOW_MAX_IN_FLIGHT", description="Background comparisons at once; more are dropped."
    )
    consistency_recheck_delay_s: float = Field(
        default=2.0,
        ge=0,
        alias="CONSISTENCY_RECHECK_DELAY_S",
        description="A mismatch is re-read this much later: confirmed if it persists, else transient.",
    )
    consistency_noise_every: int = Field(
        default=10,
        ge=1,
        alias="CONSISTENCY_NOISE_EVERY",
        description="One control-vs-control (legacy vs legacy) comparison per this many shadow comparisons.",
    )
    consistency_verify_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        alias="CONSISTENCY_VERIFY_RATE",
        description="Share of dual writes re-read from both stores after commit.",
    )
    consistency_retention_h: float = Field(
        default=168.0, gt=0, alias="CONSISTENCY_RETENTION_H", description="How long comparisons are kept."
    )
    run_worker: bool = Field(default=True, alias="RUN_WORKER")
    worker_concurrency: int = Field(default=4, alias="WORKER_CONCURRENCY")
    job_lease_s: float = Field(default=15.0, alias="JOB_LEASE_S")
    worker_max_shops: int = Field(
        default=32,
        ge=1,
        alias="WORKER_MAX_SHOPS",
        description="Shops a worker holds at once; only WORKER_CONCURRENCY run a batch, the rest wait for Shopify.",
    )
    migration_max_items_per_s: float = Field(
        default=0.0,
        ge=0,
        alias="MIGRATION_MAX_ITEMS_PER_S",
        description="Pace of a worker's migration batches in items/s (0: unpaced); leaves CPU to the storefront.",
    )
    # --- Guarded rollouts (docs/feature-flags.md, "Guarded rollouts") ---
    rollout_driver: bool = Field(
        default=True, alias="ROLLOUT_DRIVER", description="Run the rollout driver on this replica."
    )
    rollout_interval_s: float = Field(
        default=1.0, gt=0, alias="ROLLOUT_INTERVAL_S", description="How often the driver evaluates every shop."
    )
    rollout_validation_ttl_s: float = Field(
        default=10.0,
        ge=0,
        alias="ROLLOUT_VALIDATION_TTL_S",
        description="How long the driver reuses a shop's validation report.",
    )
    db_pool_size: int = Field(default=10, alias="DB_POOL_SIZE")
    log_format: Literal["json", "text"] = Field(default="json", alias="LOG_FORMAT")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    max_body_bytes: int = Field(default=1024 * 1024, alias="MAX_BODY_BYTES")
    # --- Shopify write-through (docs/write-through.md) ---
    shopify_write_through: bool = Field(default=False, alias="SHOPIFY_WRITE_THROUGH")
    outbox_dispatcher: bool | None = Field(
        default=None,
        alias="OUTBOX_DISPATCHER",
        description="Run the outbox dispatcher here; unset: follows SHOPIFY_WRITE_THROUGH.",
    )
    outbox_concurrency: int = Field(default=4, alias="OUTBOX_CONCURRENCY")
    outbox_poll_interval_s: float = Field(default=1.0, alias="OUTBOX_POLL_INTERVAL_S")
    outbox_max_attempts: int = Field(default=10, alias="OUTBOX_MAX_ATTEMPTS")
    outbox_backoff_base_s: float = Field(default=1.0, alias="OUTBOX_BACKOFF_BASE_S")
    outbox_backoff_max_s: float = Field(default=300.0, alias="OUTBOX_BACKOFF_MAX_S")
    reconcile_orphan_grace_s: float = Field(default=600.0, alias="RECONCILE_ORPHAN_GRACE_S")
    create_intent_grace_s: float = Field(
        default=60.0,
        alias="CREATE_INTENT_GRACE_S",
        description="How long a create's compensation intent waits before the dispatcher may act on it.",
    )

    @field_validator(
        "database_url",
        "database_read_url",
        "database_direct_url",
        "shopify_api_key",
        "shopify_api_secret",
        "admin_api_token",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def embedded(self) -> bool:
        """Embedded development mode: no DATABASE_URL, the service owns its PostgreSQL."""
        return self.database_url is None

    @property
    def should_auto_migrate(self) -> bool:
        return self.embedded if self.auto_migrate is None else self.auto_migrate

    def flag_env_override(self, name: str) -> bool | None:
        """`FEATURE_FLAG_<NAME>=true|false`: the seed's kill switch, stronger than any stored value."""
        raw = os.environ.get(f"FEATURE_FLAG_{name}")
        if raw is None:
            return None
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
