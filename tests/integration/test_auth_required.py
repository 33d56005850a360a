"""Every operation of the served OpenAPI that needs credentials refuses a request without them
(401), whatever its path parameters, query or body hold; and a valid merchant token of another shop
is 403. Generated from the schema, so a new operation cannot be forgotten."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.core.security import make_session_token
from tests.conftest import API_KEY, API_SECRET

PUBLIC = {"/healthz", "/readyz", "/metrics"}
SHOP = "victim-shop.myshopify.com"


def _operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    ops = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                ops.append((method.upper(), path))
    return ops


def _concrete(path: str) -> str:
    return re.sub(r"\{shop\}", SHOP, re.sub(r"\{(?!shop\})[^}]+\}", "x1", path))


@pytest.fixture(scope="module")
async def operations(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    schema = (await client.get("/openapi.json")).json()
    ops = [op for op in _operations(schema) if op[1] not in PUBLIC]
    assert len(ops) >= 30
    return ops


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer "}],
)
async def test_every_operation_needs_credentials(
    client: httpx.AsyncClient, operations: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    anonymous = httpx.AsyncClient(transport=client._transport, base_url=client.base_url)  # no default auth
    failures = []
    async with anonymous:
        for method, path in operations:
            body = b'{"reason": "x", "stage": "live", "enabled": true}' if method in {"POST", "PUT", "PATCH"} else None
            response = await anonymous.request(
                method, _concrete(path), content=body, headers={**headers, "content-type": "application/json"}
            )
            if response.status_code != 401 or not response.headers["content-type"].startswith(
                "application/problem+json"
            ):
                failures.append((method, path, response.status_code))
    assert failures == []


async def test_a_merchant_token_of_another_shop_is_403_on_every_shop_operation(
    client: httpx.AsyncClient, operations: list[tuple[str, str]]
) -> None:
    token = make_session_token("other-shop.myshopify.com", API_KEY, API_SECRET)
    shop_ops = [(m, p) for m, p in operations if p.startswith("/api/v2/shops/{shop}")]
    assert shop_ops
    failures = []
    async with httpx.AsyncClient(transport=client._transport, base_url=client.base_url) as merchant:
        for method, path in shop_ops:
            body = b"{}" if method in {"POST", "PATCH"} else None
            response = await merchant.request(
                method,
                _concrete(path),
                content=body,
                headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
            )
            if response.status_code != 403:
                failures.append((method, path, response.status_code))
    assert failures == []
