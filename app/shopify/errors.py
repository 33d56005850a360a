"""Errors of the Shopify Admin GraphQL client, each with a stable `reason` code.

The migration records one failure per legacy item with a machine-readable reason, and the
legacy read path decides between "serve stale", "empty answer" and "500" by error kind. Both
need to know *what* went wrong without parsing messages, so every error carries a `reason`
that never changes once released (it ends up in stored job failures and dashboards).

Hierarchy::

    ShopifyError                      any failure talking to Shopify
    ├── ShopifyShopError              the shop itself is unusable: fail all its items
    │   ├── ShopifyUnauthorized       shop_unauthorized  (401/403, or no offline token)
    │   ├── ShopifyPaymentRequired    shop_frozen        (402)
    │   ├── ShopifyLocked             shop_locked        (423)
    │   └── ShopifyShopNotFound       shop_not_found     (404)
    ├── ShopifyUnavailable            shopify_unavailable (retries exhausted: 5xx, timeouts, ...)
    │   └── ShopifyBadResponse        shopify_bad_response (malformed/unexpected bodies)
    ├── ShopifyGraphQLError           shopify_bad_response (top-level GraphQL `errors`, no data)
    │   └── ShopifyInvalidId          shopify_invalid_id  (malformed global id)
    └── ShopifyUserErrors             shopify_user_errors (mutation `userErrors` non-empty)

`ShopifyUnavailable` is transient (a later job may succeed); `ShopifyShopError`s are not
(someone must reinstall/unfreeze the shop), which is why they are separate branches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Stable reason codes (also used by callers that build failures without an exception).
REASON_SHOP_UNAUTHORIZED = "shop_unauthorized"
REASON_SHOP_FROZEN = "shop_frozen"
REASON_SHOP_LOCKED = "shop_locked"
REASON_SHOP_NOT_FOUND = "shop_not_found"
REASON_SHOPIFY_UNAVAILABLE = "shopify_unavailable"
REASON_SHOPIFY_BAD_RESPONSE = "shopify_bad_response"
REASON_SHOPIFY_USER_ERRORS = "shopify_user_errors"
REASON_SHOPIFY_INVALID_ID = "shopify_invalid_id"

#: GraphQL error codes (``errors[].extensions.code``) that mean "this id is not a valid global id".
INVALID_ID_CODES = frozenset({"argumentLiteralsIncompatible", "INVALID_GLOBAL_ID"})


class ShopifyError(Exception):
    """Base of every client error; `reason` is the stable code, `detail` the human text."""

    reason: str = REASON_SHOPIFY_UNAVAILABLE
    #: True when retrying later (another job run) can reasonably succeed.
    transient: bool = False

    def __init__(self, shop: str = "", detail: str = "") -> None:
        self.shop = shop
        self.detail = detail
        super().__init__(f"{self.reason}: {shop}: {detail}" if shop else f"{self.reason}: {detail}")


class ShopifyShopError(ShopifyError):
    """The shop as a whole cannot be served: the caller fails every item of that shop."""


class ShopifyUnauthorized(ShopifyShopError):
    """401/403 or no offline token: the app was uninstalled or the token revoked; never retried."""

    reason = REASON_SHOP_UNAUTHORIZED


class ShopifyPaymentRequired(ShopifyShopError):
    """402: the shop is frozen (unpaid plan); its data is unreachable until the merchant pays."""

    reason = REASON_SHOP_FROZEN


class ShopifyLocked(ShopifyShopError):
    """423: Shopify locked the shop (e.g. fraud review)."""

    reason = REASON_SHOP_LOCKED


class ShopifyShopNotFound(ShopifyShopError):
    """404 on the GraphQL endpoint: the shop domain no longer exists."""

    reason = REASON_SHOP_NOT_FOUND


class ShopifyUnavailable(ShopifyError):
    """Retries exhausted on transient failures (5xx, timeouts, connection errors, throttling)."""

    reason = REASON_SHOPIFY_UNAVAILABLE
    transient = True


class ShopifyBadResponse(ShopifyUnavailable):
    """Shopify answered, but not with a usable body (non-JSON, missing `data`, misaligned nodes).

    A subclass of `ShopifyUnavailable` because such bodies are retried like 5xx first and are
    most often a symptom of the same upstream trouble; the distinct reason keeps them visible.
    """

    reason = REASON_SHOPIFY_BAD_RESPONSE


class ShopifyGraphQLError(ShopifyError):
    """Top-level GraphQL `errors` without `data`: Shopify refused the whole request.

    `code` is the first error's ``extensions.code`` (e.g. ``MAX_COST_EXCEEDED``), which lets
    callers react (split a batch) without matching on messages.
    """

    reason = REASON_SHOPIFY_BAD_RESPONSE

    def __init__(self, shop: str = "", errors: Sequence[Mapping[str, Any]] = (), detail: str = "") -> None:
        self.errors: list[Mapping[str, Any]] = list(errors)
        self.code: str | None = _first_code(self.errors)
        messages = "; ".join(str(e.get("message", "")) for e in self.errors if isinstance(e, Mapping))
        super().__init__(shop, detail or messages or "GraphQL error")


class ShopifyInvalidId(ShopifyGraphQLError):
    """A global id that is not a valid GID (Shopify rejects the *whole* request for one such id)."""

    reason = REASON_SHOPIFY_INVALID_ID

    def __init__(
        self,
        shop: str = "",
        errors: Sequence[Mapping[str, Any]] = (),
        detail: str = "",
        *,
        ids: Sequence[str] = (),
    ) -> None:
        self.ids: list[str] = list(ids)
        super().__init__(shop, errors, detail or (f"invalid global id(s): {', '.join(self.ids)}" if ids else ""))


class ShopifyUserErrors(ShopifyError):
    """A mutation answered HTTP 200 with a non-empty `userErrors` list: the write did not happen."""

    reason = REASON_SHOPIFY_USER_ERRORS

    def __init__(self, user_errors: Sequence[Mapping[str, Any]], *, shop: str = "", payload_key: str = "") -> None:
        self.user_errors: list[Mapping[str, Any]] = list(user_errors)
        self.payload_key = payload_key
        detail = "; ".join(
            f"{_field_path(e.get('field'))}: {e.get('message', '')}".lstrip(": ")
            + (f" ({e['code']})" if e.get("code") else "")
            for e in self.user_errors
        )
        super().__init__(shop, f"{payload_key}: {detail}" if payload_key else detail)


def graphql_error_for(shop: str, errors: Sequence[Mapping[str, Any]]) -> ShopifyGraphQLError:
    """Build the most specific error for a refused GraphQL request."""
    if any(_is_invalid_id_error(e) for e in errors):
        return ShopifyInvalidId(shop, errors)
    return ShopifyGraphQLError(shop, errors)


def _is_invalid_id_error(error: Mapping[str, Any]) -> bool:
    """An invalid-id literal, or an ``INVALID_VARIABLE`` whose problems explain an invalid global id."""
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    texts = [str(error.get("message", ""))] + [str(text) for text in problem_explanations(error)]
    return code in INVALID_ID_CODES or any("invalid global id" in text.lower() for text in texts)


def problem_explanations(error: Mapping[str, Any]) -> list[str]:
    """``extensions.problems[].explanation`` of a variable error (Shopify names bad ids there)."""
    extensions = error.get("extensions")
    problems = extensions.get("problems") if isinstance(extensions, Mapping) else None
    if not isinstance(problems, list):
        return []
    return [str(p["explanation"]) for p in problems if isinstance(p, Mapping) and "explanation" in p]


def _first_code(errors: Sequence[Mapping[str, Any]]) -> str | None:
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, Mapping) else None
        if isinstance(extensions, Mapping) and isinstance(extensions.get("code"), str):
            return str(extensions["code"])
    return None


def _field_path(field: Any) -> str:
    if isinstance(field, list | tuple):
        return ".".join(str(part) for part in field)
    return "" if field is None else str(field)
