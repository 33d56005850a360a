"""Shared fixtures: a migrated PostgreSQL database per run, the Shopify simulator over HTTP,
and the service itself (lifespan and all) behind an httpx client.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.config import Settings
from app.core.migrations import upgrade_async
from app.main import create_app
from tests import pg

ADMIN_TOKEN = "test-admin-token"
API_KEY = "test-api-key"
API_SECRET = "test-api-secret"
#: Named admin tokens: the audit actor is the name of the token a request authenticated with.
ACTORS = ("tests", "alice@example.com", "bob", "oncall", "ops@example.com")
ACTOR_TOKENS = {name: f"token-of-{name}" for name in ACTORS}


def as_actor(name: str) -> dict[str, str]:
    """Headers that authenticate as the named admin token `name` (one of ACTORS)."""
    return {"Authorization": f"Bearer {ACTOR_TOKENS[name]}"}


class SecretWatch(logging.Handler):
    """Every log record of the whole run, checked for the secrets the tests use.

    Tokens, the app secret and Shopify access tokens must never reach a log line, whatever logged
    it (the service, uvicorn, httpx, asyncpg), including exception text and tracebacks.
    """

    #: JWT header prefix: `{"alg":` base64url-encoded; session tokens start with it.
    JWT_PREFIX = "eyJhbGciOi"

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(level=logging.DEBUG)
        self.secrets = secrets
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose args do not fit its format: check the parts
            text = f"{record.msg} {record.args}"
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + logging.Formatter().formatException(record.exc_info)
        for secret in (*self.secrets, self.JWT_PREFIX):
            if secret in text:
                self.leaks.append(f"{record.name}: {secret[:6]}… in {text[:200]!r}")


@pytest.fixture(scope="session", autouse=True)
def secrets_never_logged() -> Iterator[SecretWatch]:
    from tests.integration.bundle_helpers import SHOP_TOKEN

    watch = SecretWatch((ADMIN_TOKEN, API_SECRET, SHOP_TOKEN, *ACTOR_TOKENS.values()))
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
    assert not watch.leaks, "secrets reached the logs:\n" + "\n".join(watch.leaks[:20])


@pytest.fixture(scope="session")
async def db_url() -> AsyncIterator[str]:
    url = await pg.create_database()
    await upgrade_async(url)
    yield url
    await pg.drop_database(url)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await pg.connect(db_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def simulator() -> Iterator[Any]:
    from devtools.shopify_simulator import SimulatorServer

    with SimulatorServer() as sim:
        yield sim


@pytest.fixture
async def sim(simulator: Any) -> AsyncIterator[Any]:
    """Control client of the simulator; faults are cleared after each test."""
    from devtools.shopify_simulator import SimulatorControl

    control = SimulatorControl(simulator.base_url)
    yield control
    await control.clear_faults()
    await control.aclose()


def new_shop(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}.myshopify.com"


@pytest.fixture
def shop() -> str:
    return new_shop()


def make_settings(db_url: str, simulator: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": db_url,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "ADMIN_API_TOKENS": ",".join(f"{name}:{token}" for name, token in ACTOR_TOKENS.items()),
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": API_SECRET,
        "SHOPIFY_ADMIN_URL_TEMPLATE": simulator.url_template,
        "SHOPIFY_MAX_ATTEMPTS": 4,
        "SHOPIFY_TIMEOUT_S": 2.0,
        "LOG_FORMAT": "text",
        "AUTO_MIGRATE": False,
        "DB_POOL_SIZE": 5,
        # One admin token drives the whole session's shared client far faster than an operator
        # would, so the per-token limit would make results depend on test order; the limiter's own
        # test (test_request_guard.py) sets its limits explicitly.
        "ADMIN_RATE_LIMIT_PER_S": 100_000,
        "ADMIN_RATE_LIMIT_BURST": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


AppFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def app_factory(db_url: str, simulator: Any) -> AppFactory:
    """`async with app_factory(**settings) as client:` runs one service instance (full lifespan)."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(make_settings(db_url, simulator, **overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://service.test",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            ) as client:
                client.app = app  # type: ignore[attr-defined]
                yield client

    return factory


@pytest.fixture(scope="session")
async def client(app_factory: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with app_factory() as c:
        yield c


def pytest_report_header(config: pytest.Config) -> str:
    target = os.environ.get("TEST_DATABASE_URL") or "embedded PostgreSQL (temporary)"
    return f"test database server: {target}"
