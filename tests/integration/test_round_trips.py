"""Database round trips per request: flag evaluation adds none, a storefront cache hit sends none.

Every storefront request evaluates feature flags (`V2_BUNDLE_ENGINE`, `V2_PRICING_ENGINE`) and
every bundle read evaluates `V2_BUNDLE_ENGINE` / `SHADOW_READS`. Those evaluations must be
in-memory look-ups: a query per evaluation would double the storefront's database load. These
tests count the statements a request sends to PostgreSQL by wrapping the asyncpg entry points
that talk to the server, scoped by a context variable so only the request's own work counts
(the flag store's background refresh runs in its own task, outside that context).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from asyncpg.prepared_stmt import PreparedStatement

from app.core.security import sign_app_proxy_params
from tests.conftest import API_SECRET, as_actor

_recording: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("round_trips", default=None)
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("round_trip_inside", default=False)


def _counting(method: Any, query_of: Any) -> Any:
    """Wrap an asyncpg coroutine method: record its statement once (outermost call only)."""

    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorded = _recording.get()
        if recorded is None or _inside.get():
            return await method(self, *args, **kwargs)
        recorded.append(query_of(self, args, kwargs))
        token = _inside.set(True)
        try:
            return await method(self, *args, **kwargs)
        finally:
            _inside.reset(token)

    return wrapper


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`with round_trips() as statements:` lists every statement sent inside the block."""
    conn = asyncpg.connection.Connection
    targets = [
        # fetch / fetchrow / fetchval / execute with arguments (cached or prepared first)
        (conn, "_do_execute", lambda s, a, k: a[0]),
        # execute without arguments: the simple-query protocol (BEGIN, COMMIT, scripts)
        (conn, "execute", lambda s, a, k: a[0]),
        # explicit prepare (SQLAlchemy's asyncpg dialect prepares, then runs the prepared statement)
        (conn, "_prepare", lambda s, a, k: a[0]),
        (PreparedStatement, "_PreparedStatement__bind_execute", lambda s, a, k: s.get_query()),
        (PreparedStatement, "_PreparedStatement__do_execute", lambda s, a, k: s.get_query()),
    ]
    for owner, name, query_of in targets:
        monkeypatch.setattr(owner, name, _counting(getattr(owner, name), query_of))

    @contextlib.contextmanager
    def record() -> Iterator[list[str]]:
        statements: list[str] = []
        token = _recording.set(statements)
        try:
            yield statements
        finally:
            _recording.reset(token)

    yield record


@contextlib.asynccontextmanager
async def shop_flags(client: httpx.AsyncClient, shop: str, **values: bool) -> AsyncIterator[None]:
    """Per-shop overrides for this test's shop only (other shops' overrides are kept, then restored)."""
    saved = {}
    for name, value in values.items():
        state = (await client.get(f"/admin/flags/{name}")).json()
        saved[name] = state
        body = {
            "enabled": state["enabled"],
            "rolloutPercent": state["rolloutPercent"],
            "sampleRate": state["sampleRate"],
            "shopOverrides": {**state["shopOverrides"], shop: value},
            "reason": "round-trip test",
        }
        response = await client.put(f"/admin/flags/{name}", json=body, headers=as_actor("tests"))
        assert response.status_code == 200, response.text
    try:
        yield
    finally:
        for name, state in saved.items():
            current = (await client.get(f"/admin/flags/{name}")).json()["shopOverrides"]
            current.pop(shop, None)
            body = {k: state[k] for k in ("enabled", "rolloutPercent", "sampleRate")}
            response = await client.put(
                f"/admin/flags/{name}",
                json={**body, "shopOverrides": current, "reason": "round-trip test: restore"},
                headers=as_actor("tests"),
            )
            assert response.status_code == 200, response.text


async def _seed_v2_bundle(db: asyncpg.Connection, shop: str, product: str) -> str:
    bundle_id = "rt" + uuid.uuid4().hex[:20]
    await db.execute(
        'INSERT INTO "Bundle" (id, shop, name, title, slug, status, "updatedAt") '
        "VALUES ($1, $2, 'Round trip', 'Round trip set', $1, 'ACTIVE', CURRENT_TIMESTAMP)",
        bundle_id,
        shop,
    )
    await db.execute(
        'INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "cachedPrice", "updatedAt") '
        "VALUES ($1 || 'c', $1, $2, 20.00, CURRENT_TIMESTAMP)",
        bundle_id,
        product,
    )
    await db.execute(
        'INSERT INTO "BundlePricingRule" (id, "bundleId", name, "discountValue", "updatedAt") '
        "VALUES ($1 || 'r', $1, 'Bundle Discount', 10, CURRENT_TIMESTAMP)",
        bundle_id,
    )
    return bundle_id


def _signed(shop: str, product: str) -> dict[str, str]:
    params = {"shop": shop, "timestamp": str(int(time.time())), "product_id": product}
    params["signature"] = sign_app_proxy_params(params, API_SECRET)
    return params


def _flag_queries(statements: list[str]) -> list[str]:
    return [s for s in statements if "sb_feature_flag" in s]


def _is_pool_reset(statement: str) -> bool:
    """asyncpg's pool resets a connection on release (`pg_advisory_unlock_all(); CLOSE ALL; ...`):
    a round trip of its own, counted separately so the assertions say what they mean."""
    return statement.lstrip().startswith("SELECT pg_advisory_unlock_all()")


@pytest.mark.parametrize("pricing", [True, False])
async def test_storefront_request_is_one_round_trip_whatever_the_flags(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str, round_trips: Any, pricing: bool
) -> None:
    product = f"gid://shopify/Product/{uuid.uuid4().int % 10**12}"
    bundle_id = await _seed_v2_bundle(db, shop, product)
    async with shop_flags(client, shop, V2_BUNDLE_ENGINE=True, V2_PRICING_ENGINE=pricing):
        for path in ("/proxy/v2/bundles", "/proxy/bundles-for-product"):
            with round_trips() as statements:
                response = await client.get(path, params=_signed(shop, product))
            assert response.status_code == 200, response.text
            assert response.headers["X-Bundle-Read-Source"] == "v2"
            body = response.json()
            items = body["bundles"] if path == "/proxy/v2/bundles" else body
            assert [item["id"] for item in items] == [bundle_id]
            if path == "/proxy/v2/bundles":
                # V2 engine: 10 % off 20.00; legacy percentage: the same rule read as the legacy discount.
                assert items[0]["pricing"]["discountedPrice"] == "18.00"
            # Two flags evaluated, one query sent: the store's own (plus the pool's reset on release).
            queries = [s for s in statements if not _is_pool_reset(s)]
            assert len(queries) == 1, statements
            assert "FROM" in queries[0] and "BundleComponent" in queries[0]
            assert len(statements) - len(queries) <= 1, statements
            assert _flag_queries(statements) == []


async def test_a_storefront_cache_hit_sends_no_statement(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str, round_trips: Any
) -> None:
    """The read model: the first request computes (one query), the same request again is answered
    from the replica's cache without touching the database."""
    container = client.app.state.container  # type: ignore[attr-defined]
    assert container.storefront_cache is not None, "STOREFRONT_CACHE is on by default"
    product = f"gid://shopify/Product/{uuid.uuid4().int % 10**12}"
    bundle_id = await _seed_v2_bundle(db, shop, product)
    await container.storefront_cache_listener.sync()  # the seed's notifications are behind us
    async with shop_flags(client, shop, V2_BUNDLE_ENGINE=True, V2_PRICING_ENGINE=True):
        for path in ("/proxy/v2/bundles", "/proxy/bundles-for-product"):
            with round_trips() as first:
                miss = await client.get(path, params=_signed(shop, product))
            with round_trips() as second:
                hit = await client.get(path, params=_signed(shop, product))
            assert miss.status_code == hit.status_code == 200, (miss.text, hit.text)
            assert bundle_id in miss.text
            assert hit.content == miss.content
            assert hit.headers["X-Bundle-Read-Source"] == "v2"
            assert len([s for s in first if not _is_pool_reset(s)]) == 1, first
            assert second == [], second


async def test_bundle_read_evaluates_flags_without_a_query(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str, round_trips: Any
) -> None:
    product = f"gid://shopify/Product/{uuid.uuid4().int % 10**12}"
    bundle_id = await _seed_v2_bundle(db, shop, product)
    counts = {}
    v2_statements: list[str] = []
    for engine in (True, False):
        async with shop_flags(client, shop, V2_BUNDLE_ENGINE=engine, SHADOW_READS=False):
            with round_trips() as statements:
                response = await client.get(f"/api/v2/shops/{shop}/bundles/{bundle_id}")
        if engine:
            assert response.status_code == 200, response.text
            assert response.json()["id"] == bundle_id
        assert _flag_queries(statements) == [], statements
        counts[engine] = len(statements)
        if engine:
            v2_statements = statements
    # Each read sends only its store's statements (the V2 one: the bundle and its children; the
    # legacy one: the legacy rows), and none of them is for a flag.
    assert counts[True] >= 1 and counts[False] >= 1, counts
    assert all('"Bundle' in q or "bundle" in q.lower() or _is_pool_reset(q) for q in v2_statements), v2_statements


async def test_the_counter_sees_round_trips(client: httpx.AsyncClient, round_trips: Any) -> None:
    """The instrument itself: pool queries, simple queries and ORM statements are all counted."""
    container = client.app.state.container  # type: ignore[attr-defined]
    from sqlalchemy import text

    with round_trips() as statements:
        await container.pool.fetchval("SELECT 1")
        async with container.pool.acquire() as conn:
            await conn.execute("SELECT 2")
        async with container.sessionmaker() as session:
            await session.execute(text("SELECT 3"))
    assert any("SELECT 1" in s for s in statements)
    assert any("SELECT 2" in s for s in statements)
    assert any("SELECT 3" in s for s in statements), statements
