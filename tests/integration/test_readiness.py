"""Readiness and start-up rules: 503 while the schema is behind head; no token, no production start."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.container import resolve_admin_token
from app.core.migrations import head_revision, upgrade_async
from app.main import create_app
from tests import pg
from tests.conftest import ADMIN_TOKEN, make_settings


async def test_readyz_is_503_while_schema_is_behind_then_200_after_upgrade(simulator: Any) -> None:
    url = await pg.create_database("sbready")
    try:
        await upgrade_async(url, "0002_phase1_v2")
        app = create_app(make_settings(url, simulator, RUN_WORKER=False))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                assert (await client.get("/healthz")).status_code == 200
                behind = await client.get("/readyz")
                assert behind.status_code == 503
                assert behind.json()["schema"] == {
                    "current": "0002_phase1_v2",
                    "head": head_revision(),
                    "status": "behind",
                }
                await upgrade_async(url)
                ready = await client.get("/readyz")
                assert ready.status_code == 200
                assert ready.json()["schema"]["status"] == "current"
                # The background services start by themselves once the schema is current: no restart.
                container = app.state.container
                for _ in range(50):
                    if container.flags is not None:
                        break
                    await asyncio.sleep(0.1)
                assert container.flags is not None
                flags = await client.get("/admin/flags", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                assert flags.status_code == 200
                assert {f["name"] for f in flags.json()["items"]} >= {"V2_BUNDLE_ENGINE", "DUAL_WRITE"}
    finally:
        await pg.drop_database(url)


def test_production_mode_refuses_to_start_without_a_token() -> None:
    settings = Settings(DATABASE_URL="postgresql://u@db.internal:5432/x", ADMIN_API_TOKEN="")
    with pytest.raises(RuntimeError, match="ADMIN_API_TOKEN is required"):
        resolve_admin_token(settings)


def test_embedded_mode_invents_a_token_once_and_keeps_it(tmp_path: Any) -> None:
    settings = Settings(DATABASE_URL="", ADMIN_API_TOKEN="", DATA_DIR=str(tmp_path))
    first = resolve_admin_token(settings)
    assert len(first) >= 32
    assert resolve_admin_token(settings) == first
    assert (tmp_path / "admin_token").stat().st_mode & 0o077 == 0  # not readable by others
