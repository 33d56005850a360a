"""Domain errors map to problem+json in one place; these pin the mappings a client branches on."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from unittest.mock import ANY

import orjson
import pytest

from app.core.errors import (
    SHOP_STATE_REASONS,
    ShopifyErrorProblem,
    ShopNotConnected,
    ValidationFailed,
    domain_error_response,
    shopify_refusal,
)
from app.rules.cursors import decode_cursor, encode_cursor


@pytest.mark.parametrize("reason", sorted(SHOP_STATE_REASONS))
def test_a_refusal_for_the_shops_state_is_409_not_connected(reason: str) -> None:
    problem = shopify_refusal("Shopify refused.", reason=reason)
    assert isinstance(problem, ShopNotConnected)
    response = domain_error_response(problem)
    body = orjson.loads(response.body)
    assert response.status_code == 409
    assert body["type"].endswith("/shop-not-connected") and body["reason"] == reason


@pytest.mark.parametrize("reason", ["graphql_error", "user_errors", "invalid_response", "not_found"])
def test_any_other_refusal_is_a_502_shopify_error(reason: str) -> None:
    problem = shopify_refusal("Shopify refused.", reason=reason, userErrors=[{"field": ["x"], "message": "m"}])
    assert type(problem) is ShopifyErrorProblem
    body = orjson.loads(domain_error_response(problem).body)
    assert body["status"] == 502 and body["type"].endswith("/shopify-error")
    assert body["reason"] == reason and body["userErrors"] == [{"field": ["x"], "message": "m"}]


def test_cursors_round_trip_and_refuse_another_listings_cursor() -> None:
    at = datetime(2026, 12, 6, 5, 0, 0)
    cursor = encode_cursor("job", "job_1", at)
    position = decode_cursor(cursor, "job", key_type=str, timed=True)
    assert (position.at, position.key) == (at, "job_1")
    assert decode_cursor(encode_cursor("audit", 41), "audit", key_type=int).key == 41
    cases: list[tuple[str, str, dict[str, Any]]] = [
        (cursor, "audit", {}),  # another listing's cursor
        (encode_cursor("audit", "41"), "audit", {"key_type": int}),  # wrong key type
        (encode_cursor("job", "job_1"), "job", {"timed": True}),  # no time where one is needed
        (encode_cursor("audit", True), "audit", {}),  # bool is not a key
        ("garbage!", "audit", {}),
        ("W10", "audit", {}),  # base64 of a JSON list
    ]
    for bad, kind, kwargs in cases:
        with pytest.raises(ValidationFailed) as raised:
            decode_cursor(bad, kind, **kwargs)
        assert raised.value.errors == [{"field": "query.cursor", "message": ANY}], (bad, kind, kwargs)
