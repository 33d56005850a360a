"""Tracing: one SDK tracer provider per process, configured by the standard OTEL_* variables.

Why it looks like this
----------------------
* Operators already know the OpenTelemetry variables, so there is no service-specific knob:
  `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` (`otlp`, `console`,
  `none`, or a comma-separated list), `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT` /
  `..._HEADERS` (read by the OTLP exporter itself), `OTEL_TRACES_SAMPLER` / `_ARG` (read by the
  SDK), `OTEL_SDK_DISABLED`. One deliberate difference from the specification: the default
  exporter is `none`, not `otlp`, so a service nobody pointed at a collector exports nothing and
  never retries connections to a collector that does not exist.
* Telemetry costs nothing when nothing is exported. Measured under storefront load, the
  instrumentation (server-span middleware, a span per asyncpg query, FastAPI's own native
  OpenTelemetry hooks) took about a fifth of the service's CPU while every span was dropped. So
  the instrumentation is installed only when something exports spans (`OTEL_TRACES_EXPORTER`
  names an exporter, or a test installed the in-memory exporter): see `tracing_enabled`. Without
  it there are no spans, so log lines carry no trace ids and an incoming `traceparent` is not
  forwarded; both come back with an exporter, which is when anyone can look the trace up. The
  tracer provider itself is still installed (cheap, and the explicit `shopify.graphql` /
  `migration.batch` spans need one), FastAPI's native telemetry is switched off in
  `app/main.py` (the curated `sb_http_*` metrics are the service's HTTP metrics).
* The global provider can be set once per process, while tests build dozens of apps in one
  process; every function here is idempotent, and the per-app / per-engine / per-client parts are
  tracked on the objects themselves.
* Instrumentation comes from the official packages: FastAPI (server spans), SQLAlchemy (ORM
  queries), asyncpg (the raw pool of the hot storefront path, and the connections below the ORM),
  httpx (the Shopify client). Shopify and migration-batch spans are created where the work is
  done, through the OpenTelemetry API: `shopify.graphql` in `app/shopify/transport.py` (attributes
  `shopify.shop`, `shopify.cost.requested` / `.actual`, `shopify.throttle.wait_s`), and
  `migration.batch` around each batch of the job worker (attributes `migration.job_id`,
  `migration.item_kind`, `shopify.shop`, `migration.batch.size`; tests/integration/test_telemetry.py
  holds that contract).
* Database spans with no parent come from background loops (the flag refresh every 0.5 s, the
  job poller), all on the raw asyncpg pool: they would be a root trace per poll at the collector,
  so the sampler drops them (asyncpg's spans carry `db.system` from their start, which is what the
  sampler can see). A background task that wants its queries traced starts its own span first,
  as a migration batch does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.core.container import Container

__all__ = [
    "DEFAULT_EXCLUDED_URLS",
    "DEFAULT_SERVICE_NAME",
    "configure_tracing",
    "install_in_memory_exporter",
    "instrument_app",
    "instrument_container",
    "instrument_engine",
    "instrument_http_client",
    "tracer_provider",
    "tracing_enabled",
]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "shopibundle"

#: Probes, scrapes and the status page's own polling: a trace per hit would drown the real ones.
#: `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS` replaces this list (comma-separated regexes, searched in the URL).
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz,/metrics,/admin/ui/partial"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_configured = False
_memory_exporter: InMemorySpanExporter | None = None
_exporting = False  # a span processor that exports was added (env exporter or in-memory exporter)
_asyncpg_instrumented = False
_first_engine_tracer: Any = None  # EngineTracer of the first engine; later engines reuse its tracer
_NOOP_METERS = metrics.NoOpMeterProvider()


class DropOrphanDatabaseSpans(Sampler):
    """Delegates to the configured sampler, except for database spans that would start a trace.

    Background loops (flag snapshot refresh, job polling) query the database several times a
    second outside any request; each such query would otherwise be a one-span trace. Recognised
    by what exists at sampling time: no parent, kind CLIENT, a `db.system` attribute (asyncpg sets
    it at span start; SQLAlchemy sets it later, but nothing queries through the ORM outside a request).
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if (
            not parent.is_valid
            and kind == SpanKind.CLIENT
            and attributes
            and ("db.system" in attributes or "db.system.name" in attributes)
        ):
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"DropOrphanDatabaseSpans{{{self._delegate.get_description()}}}"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _exporters_from_env() -> list[SpanExporter]:
    """`OTEL_TRACES_EXPORTER`: otlp | console | none, comma-separated; unset = none."""
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name in {"otlp", "otlp_proto_http"}:
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            )
            if protocol.strip() != "http/protobuf":
                log.warning("OTLP protocol %r is not supported here; using http/protobuf", protocol)
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:  # pragma: no cover - the package is a declared dependency
                log.error("OTEL_TRACES_EXPORTER=otlp but opentelemetry-exporter-otlp-proto-http is not installed")
                continue
            exporters.append(OTLPSpanExporter())
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER entry %r ignored (use otlp, console or none)", name)
    return exporters


def configure_tracing() -> TracerProvider | None:
    """Install the process-wide tracer provider from the environment (once; later calls return it).

    Returns None when `OTEL_SDK_DISABLED=true`: the API then stays a no-op everywhere.
    """
    global _provider, _configured, _exporting
    with _lock:
        if _configured:
            return _provider
        _configured = True
        if _env_flag("OTEL_SDK_DISABLED"):
            log.info("OpenTelemetry SDK disabled by OTEL_SDK_DISABLED")
            return None
        attributes: dict[str, str] = {}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = DEFAULT_SERVICE_NAME
        resource = Resource.create(attributes)
        # TracerProvider() reads OTEL_TRACES_SAMPLER / _ARG; we only wrap what it chose.
        provider = TracerProvider(resource=resource)
        provider.sampler = DropOrphanDatabaseSpans(provider.sampler)
        for exporter in _exporters_from_env():
            provider.add_span_processor(BatchSpanProcessor(exporter))
            _exporting = True
            log.info("exporting traces with %s", type(exporter).__name__)
        trace.set_tracer_provider(provider)
        # set_tracer_provider refuses a second provider (someone else got there first): use theirs.
        current = trace.get_tracer_provider()
        _provider = current if isinstance(current, TracerProvider) else provider
        return _provider


def tracing_enabled() -> bool:
    """True when spans go somewhere: only then is the per-request instrumentation worth its CPU."""
    return configure_tracing() is not None and _exporting


def tracer_provider() -> TracerProvider | None:
    """The SDK provider in use (configuring it on first use)."""
    return configure_tracing()


def install_in_memory_exporter() -> InMemorySpanExporter:
    """Tests: every finished span, synchronously, into one shared in-memory exporter.

    Idempotent: the same exporter is returned to every caller in the process; call `.clear()`
    on it before the request under test.
    """
    global _memory_exporter, _exporting
    provider = configure_tracing()
    if provider is None:
        raise RuntimeError("tracing is disabled (OTEL_SDK_DISABLED); no in-memory exporter possible")
    with _lock:
        if _memory_exporter is None:
            _memory_exporter = InMemorySpanExporter()
            processor: SpanProcessor = SimpleSpanProcessor(_memory_exporter)
            provider.add_span_processor(processor)
            _exporting = True
        return _memory_exporter


def instrument_app(app: FastAPI) -> None:
    """Server spans for every request (W3C `traceparent` honoured by the global propagator).

    FastAPI's own HTTP metrics are switched off: `sb_http_requests` / `sb_http_request_duration_seconds`
    (app/core/http_metrics.py) are the curated ones, labelled by route template. A no-op while
    nothing is exported (`tracing_enabled`).
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if not tracing_enabled():
        return
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS)
    FastAPIInstrumentor.instrument_app(
        app,
        meter_provider=_NOOP_METERS,
        excluded_urls=excluded,
        exclude_spans=["receive", "send"],
    )


def _instrument_asyncpg() -> None:
    """asyncpg is instrumented by patching its Connection class: once per process."""
    global _asyncpg_instrumented
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    with _lock:
        if _asyncpg_instrumented:
            return
        instrumentor = AsyncPGInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
        _asyncpg_instrumented = True


def instrument_engine(engine: AsyncEngine) -> None:
    """ORM query spans for one engine (and asyncpg spans for every connection in the process).

    `SQLAlchemyInstrumentor` is a singleton that instruments once; its per-engine part is an
    `EngineTracer` of event listeners. The first engine goes through the official entry point,
    later engines (tests build many apps) get an `EngineTracer` sharing the first one's tracer
    and connection-usage counter. Listeners hold the engine weakly and go away with it.
    """
    global _first_engine_tracer
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    configure_tracing()
    _instrument_asyncpg()
    sync_engine = engine.sync_engine
    if getattr(sync_engine, "_sb_otel_instrumented", False):
        return
    with _lock:
        instrumentor = SQLAlchemyInstrumentor()
        if _first_engine_tracer is None and not instrumentor.is_instrumented_by_opentelemetry:
            # The package pins "sqlalchemy < 2.1" conservatively and would refuse 2.1.x; the engine
            # events it hooks (before/after_cursor_execute, pool checkout/checkin) are stable
            # SQLAlchemy 2 API, and tests/integration/test_telemetry.py proves the spans appear.
            _first_engine_tracer = instrumentor.instrument(engine=sync_engine, skip_dep_check=True)
        elif _first_engine_tracer is not None:
            EngineTracer(_first_engine_tracer.tracer, sync_engine, _first_engine_tracer.connections_usage)
        else:  # pragma: no cover - SQLAlchemy was instrumented elsewhere: build the same tracer here
            usage = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
                "db.client.connections.usage", unit="connections"
            )
            tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")
            _first_engine_tracer = EngineTracer(tracer, sync_engine, usage)
        sync_engine._sb_otel_instrumented = True  # type: ignore[attr-defined]


def instrument_http_client(client: httpx.AsyncClient) -> None:
    """Client spans (and `traceparent` injection) for one httpx client; idempotent per client."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    configure_tracing()
    if getattr(client, "_is_instrumented_by_opentelemetry", False):
        return
    HTTPXClientInstrumentor.instrument_client(client, meter_provider=_NOOP_METERS)


def instrument_container(container: Container) -> None:
    """Everything of one running service that does I/O: its engine, its raw pool, its HTTP client.

    A no-op while nothing is exported (`tracing_enabled`): a span per query nobody collects is
    pure cost on the storefront path.
    """
    if not tracing_enabled():
        return
    instrument_engine(container.engine)
    instrument_http_client(container.http)
