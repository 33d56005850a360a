"""The request guard: credentials are checked before any body is read, and U+0000 is refused
once for every text input (PostgreSQL cannot store it in text; it used to reach SQL and answer 500).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.container import resolve_app_credentials
from app.main import create_app
from tests.conftest import ADMIN_TOKEN, AppFactory, as_actor, make_settings
from tests.integration.bundle_helpers import bundle_body, bundles_url
from tests.integration.test_storefront import signed

NUL = "\x00"


def assert_nul_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["errors"] == [{"field": field, "message": "must not contain the NUL character (U+0000)"}]


async def test_nul_in_flag_reason_is_422_and_changes_nothing(client: httpx.AsyncClient) -> None:
    before = (await client.get("/admin/flags")).json()
    response = await client.put(
        "/admin/flags/SHADOW_READS", json={"enabled": True, "sampleRate": 0.5, "reason": f"a{NUL}b"}
    )
    assert_nul_refused(response, "body.reason")
    assert (await client.get("/admin/flags")).json() == before


async def test_nul_in_stage_reason_is_422(client: httpx.AsyncClient) -> None:
    before = (await client.get("/admin/migration-stage")).json()
    response = await client.put("/admin/migration-stage", json={"stage": "dualwrite", "reason": NUL})
    assert_nul_refused(response, "body.reason")
    assert (await client.get("/admin/migration-stage")).json() == before


async def test_nul_in_a_job_id_and_in_the_failure_filter_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/migrations/jobs/ab%00cd")
    assert_nul_refused(response, "path")
    job_id = str(uuid.uuid4())
    response = await client.get(f"/admin/migrations/jobs/{job_id}/failures", params={"reason": f"x{NUL}"})
    assert_nul_refused(response, "query.reason")


async def test_nul_deep_in_a_bundle_body_names_its_field(client: httpx.AsyncClient, shop: str) -> None:
    body = bundle_body()
    body["components"][0]["shopifyProductId"] = f"gid://shopify/Product/1{NUL}"
    response = await client.post(bundles_url(shop), json=body)
    assert_nul_refused(response, "body.components.0.shopifyProductId")
    listing = await client.get(bundles_url(shop))
    assert listing.status_code == 200
    assert listing.json()["items"] == []


async def test_an_escaped_backslash_before_u0000_is_text_not_nul(client: httpx.AsyncClient, shop: str) -> None:
    body = bundle_body(title="literally \\u0000")
    response = await client.post(bundles_url(shop), json=body)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "literally \\u0000"


async def test_nul_in_the_storefront_session_id_is_422(client: httpx.AsyncClient, shop: str) -> None:
    params = signed(shop, {"productId": "1", "sessionId": f"s{NUL}"})
    response = await client.get("/proxy/ai-bundles-for-product", params=params)
    assert_nul_refused(response, "query.sessionId")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v2/shops/a.myshopify.com/bundles"),
        ("PATCH", "/api/v2/shops/a.myshopify.com/bundles/b1"),
        ("PUT", "/admin/flags/DUAL_WRITE"),
        ("PUT", "/admin/migration-stage"),
        ("POST", "/admin/migrations/jobs"),
    ],
)
@pytest.mark.parametrize("body", [b"{not json", json.dumps({"reason": NUL}).encode(), b"\x00\x01"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic abc"])
async def test_credentials_are_checked_before_the_body(
    client: httpx.AsyncClient, method: str, path: str, body: bytes, authorization: str | None
) -> None:
    headers: dict[str, Any] = {"content-type": "application/json", "Authorization": authorization or ""}
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_unsigned_storefront_request_with_nul_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/proxy/ai-bundles-for-product", params={"shop": "a.myshopify.com", "sessionId": NUL})
    assert response.status_code == 401


async def test_malformed_json_with_valid_credentials_is_still_400(client: httpx.AsyncClient, shop: str) -> None:
    response = await client.post(bundles_url(shop), content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["type"].endswith("bad-json")


# ------------------------------------------------------------------ insecure defaults refused


@pytest.mark.parametrize("missing", ["SHOPIFY_API_KEY", "SHOPIFY_API_SECRET"])
def test_production_mode_refuses_development_app_credentials(missing: str) -> None:
    values = {
        "DATABASE_URL": "postgresql://u@db.internal:5432/x",
        "ADMIN_API_TOKEN": "t",
        "SHOPIFY_API_KEY": "key",
        "SHOPIFY_API_SECRET": "secret",
    }
    values[missing] = ""
    with pytest.raises(RuntimeError, match=f"{missing} must be set"):
        resolve_app_credentials(Settings(**values))


def test_embedded_mode_keeps_development_credentials(tmp_path: Any) -> None:
    settings = Settings(DATA_DIR=str(tmp_path), SHOPIFY_API_KEY="", SHOPIFY_API_SECRET="")
    assert settings.embedded
    assert resolve_app_credentials(settings) == ("dev-api-key", "dev-api-secret")


async def test_the_service_does_not_start_without_its_app_secret(db_url: str, simulator: Any) -> None:
    app = create_app(make_settings(db_url, simulator, SHOPIFY_API_SECRET=""))
    with pytest.raises(RuntimeError, match="SHOPIFY_API_SECRET must be set"):
        async with app.router.lifespan_context(app):
            pass


async def test_named_admin_tokens_authenticate(app_factory: AppFactory) -> None:
    async with app_factory(ADMIN_API_TOKENS="alice:alice-token,bob:bob-token") as c:
        for token in (ADMIN_TOKEN, "alice-token", "bob-token"):
            response = await c.get("/admin/flags", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, token
        response = await c.get("/admin/flags", headers={"Authorization": "Bearer carol-token"})
        assert response.status_code == 401


# ------------------------------------------------------------ identity and admin rate limiting


async def test_the_audit_actor_is_the_token_name_not_a_header(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/flags/SHADOW_READS",
        json={"enabled": True, "sampleRate": 0.25, "reason": "who did this"},
        headers={**as_actor("alice@example.com"), "X-Actor": "mallory"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["updatedBy"] == "alice@example.com"
    audit = (await client.get("/admin/flags/audit", params={"flag": "SHADOW_READS", "limit": 1})).json()
    assert audit["items"][0]["changedBy"] == "alice@example.com"


async def test_admin_requests_are_rate_limited_per_token(app_factory: AppFactory) -> None:
    async with app_factory(ADMIN_RATE_LIMIT_PER_S=1.0, ADMIN_RATE_LIMIT_BURST=3) as c:
        statuses = [(await c.get("/admin/flags", headers=as_actor("bob"))).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429]
        limited = await c.get("/admin/flags", headers=as_actor("bob"))
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert int(limited.headers["retry-after"]) >= 1
        # Another token has its own bucket; the storefront and health are not admin traffic.
        assert (await c.get("/admin/flags", headers=as_actor("oncall"))).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
