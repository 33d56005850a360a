"""Metrics through the OpenTelemetry SDK, exposed in Prometheus text at `/metrics`.

Instruments are module-level so any layer records with one call and no plumbing; the meter
provider is installed once per process (`install_metrics`).
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

_installed = False


def install_metrics(service_name: str = "shopibundle") -> None:
    """Idempotent: tests build many apps in one process, the provider can only be set once."""
    global _installed
    if _installed:
        return
    reader = PrometheusMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": service_name}), metric_readers=[reader])
    metrics.set_meter_provider(provider)
    _installed = True


install_metrics()
meter = metrics.get_meter("shopibundle")

HTTP_REQUESTS = meter.create_counter("sb_http_requests", description="HTTP requests by route, method and status")
SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
HTTP_LATENCY = meter.create_histogram(
    "sb_http_request_duration_seconds",
    unit="s",
    description="HTTP latency by route",
    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
)
DB_POOL_ACQUIRE_WAIT = meter.create_histogram(
    "sb_db_pool_acquire_wait_seconds",
    unit="s",
    description="Time spent waiting for a connection of the raw asyncpg pool (connecting included)",
    explicit_bucket_boundaries_advisory=[0.0001, 0.0005, *SECONDS_BUCKETS],
)
DUAL_WRITES = meter.create_counter(
    "sb_dual_writes", description="Dual-write outcomes: ok, conflict, not_representable, rolled_back"
)
SHADOW_COMPARISONS = meter.create_counter("sb_shadow_comparisons", description="Shadow-read comparisons run")
SHADOW_MISMATCHES = meter.create_counter("sb_shadow_mismatches", description="Shadow-read mismatches by field")
JOB_ITEMS = meter.create_counter("sb_migration_job_items", description="Migration items by kind, outcome and reason")
SHOPIFY_CALLS = meter.create_counter("sb_shopify_calls", description="Shopify Admin API calls by status")
SHOPIFY_THROTTLE_WAIT = meter.create_histogram(
    "sb_shopify_throttle_wait_seconds",
    unit="s",
    description="Time spent waiting for the leaky bucket",
    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
)
FLAG_EVALUATIONS = meter.create_counter("sb_flag_evaluations", description="Feature flag evaluations by flag and value")
WRITE_THROUGH_APPROXIMATIONS = meter.create_counter(
    "sb_write_through_approximations",
    description="Legacy metaobject writes that approximate the V2 bundle, by op and reason",
)
OUTBOX_LAG = meter.create_gauge(
    "sb_outbox_lag_seconds", unit="s", description="Age of the oldest undelivered outbox row"
)

# In-process read caches (app/core/read_cache.py). Each cache tallies in plain ints on its hot path
# and hands the tally over here from its listener's heartbeat (one SDK call per outcome and tick).
READ_CACHE_LOOKUPS = meter.create_counter(
    "sb_read_cache_lookups", description="Read-cache look-ups by cache and outcome: hit, miss, expired"
)
READ_CACHE_STORES = meter.create_counter(
    "sb_read_cache_stores",
    description="Read-cache stores by cache and outcome: stored, or stale (a write was notified meanwhile)",
)
READ_CACHE_INVALIDATIONS = meter.create_counter(
    "sb_read_cache_invalidations",
    description="Read-cache invalidations by cache and scope (partition, all) and reason",
)
READ_CACHE_ENTRIES = meter.create_gauge("sb_read_cache_entries", description="Entries held by a read cache")


def prometheus_text() -> bytes:
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)
