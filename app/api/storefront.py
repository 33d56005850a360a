"""Storefront endpoints behind Shopify's app proxy: `/proxy/*`, and the same under `/api/proxy_route/*`.

Two prefixes, one set of handlers: the legacy app's App Proxy setting points at
`<host>/api/proxy_route` (shopify.md), so the storefront cutover is a change of host only. Each
handler is registered under both prefixes (`_storefront_get`), so the answers cannot drift. The
OpenAPI document lists the `/proxy/*` operations once; each names its `/api/proxy_route/*` alias
(`x-path-aliases`, and the last line of its description). Shopify signs the query string, not the
path, so the same signature check holds under both prefixes.

Thin on purpose: authentication is `ProxyShopDep` (the shop comes only from the signed query
parameters; a bearer token, admin or not, is ignored here), the rules live in
`app/services/storefront/reads.py`, the SQL in `app/repos/storefront.py`.

Query parameters are read as optional strings and validated by the service, *after* the
signature: an unsigned or forged request gets a 401 and learns nothing about which inputs would be
valid. Since FastAPI would then document them as optional, the OpenAPI parameters are written out
by hand (`openapi_extra`), with Shopify's own proxy parameters. Bodies are pre-serialised bytes
(no `response_model` validation on the hot path); `app/schemas/storefront.py` documents them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Scope

from app.api.deps import ContainerDep, ProxyShopDep
from app.api.openapi_docs import PROXY_ERRORS, UNEXPECTED_ERROR, example_response, problem, problem_example
from app.core.auth import LEGACY_PROXY_PREFIX, PROXY_PREFIX, authenticate, query_items
from app.core.container import Container
from app.core.errors import NotReady, Unauthorized
from app.schemas.storefront import (
    AI_BUNDLES_EXAMPLE,
    LEGACY_BUNDLES_EXAMPLE,
    STOREFRONT_BUNDLES_EXAMPLE,
    AiBundlesResponse,
    LegacyBundle,
    StorefrontBundlesResponse,
)
from app.services.storefront import reads as storefront
from app.services.storefront.reads import StorefrontAnswer

router = APIRouter(tags=["storefront"], responses=UNEXPECTED_ERROR)

READ_SOURCE_HEADER = "X-Bundle-Read-Source"

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Awaitable[Response]])

_READ_SOURCE_DOC = {
    READ_SOURCE_HEADER: {
        "description": "Which store answered: `legacy` or `v2`.",
        "schema": {"type": "string", "enum": ["legacy", "v2"]},
    }
}
_PRODUCT_ID_SCHEMA = {"type": "string", "pattern": r"^(?:[0-9]{1,20}|gid://shopify/Product/[0-9]{1,20})$"}


def _param(
    name: str, description: str, *, required: bool = True, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


#: What Shopify appends to every proxied request (shopify.md, "App proxy").
_APP_PROXY_PARAMS = [
    _param("shop", "The shop's myshopify domain; trusted only because the signature covers it."),
    _param("timestamp", "Unix seconds; older than PROXY_SIGNATURE_MAX_AGE_S (default 300) is a 401."),
    _param("signature", "HMAC-SHA256 (hex) of the other parameters with the app's API secret."),
    _param("logged_in_customer_id", "May be empty.", required=False),
    _param("path_prefix", "The proxy's storefront path, e.g. /apps/proxy.", required=False),
]


def _storefront_get(
    path: str, *, summary: str, responses: dict[int | str, dict[str, Any]], params: Sequence[dict[str, Any]]
) -> Callable[[_Endpoint], _Endpoint]:
    """Register a GET handler at `PROXY_PREFIX + path` (documented: `params` and Shopify's own proxy
    parameters, see the module docstring; `x-path-aliases` names the alias) and at
    `LEGACY_PROXY_PREFIX + path` (the same handler, left out of the schema)."""

    def register(endpoint: _Endpoint) -> _Endpoint:
        alias = LEGACY_PROXY_PREFIX + path
        router.add_api_route(
            PROXY_PREFIX + path,
            endpoint,
            methods=["GET"],
            summary=summary,
            responses=responses,
            openapi_extra={"parameters": [*params, *_APP_PROXY_PARAMS], "x-path-aliases": [alias]},
        )
        router.add_api_route(alias, endpoint, methods=["GET"], summary=summary, include_in_schema=False)
        return endpoint

    return register


class _MeasuredRoute(Route):
    """A Starlette route that, like FastAPI's, records itself in the scope: the HTTP metrics label
    requests by the matched route's template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def fast_routes() -> list[Route]:
    """The two hot storefront reads as plain Starlette routes, mounted ahead of the FastAPI router.

    Every product page calls them, so they skip FastAPI's per-request dependency resolution and
    parameter validation (a quarter of the CPU per request, measured in docs/performance.md): the
    request guard middleware has already verified the signature and cached the shop, and the
    handlers below are what the documented FastAPI operations run too, so both answer the same.
    """
    routes: list[Route] = []
    for handler, path in ((_fast_bundles_for_product, "/bundles-for-product"), (_fast_v2_bundles, "/v2/bundles")):
        for prefix in (PROXY_PREFIX, LEGACY_PROXY_PREFIX):
            routes.append(_MeasuredRoute(prefix + path, handler, methods=["GET"], include_in_schema=False))
    return routes


def _proxy_context(request: Request) -> tuple[Container, str, str]:
    """The container, the signed shop and the normalised product of a storefront request."""
    container: Container | None = getattr(request.app.state, "container", None)
    if container is None:
        raise NotReady("The service is starting.")
    items = query_items(request.scope)
    identity = authenticate(container.authenticator, request.scope, None, items)
    if identity.shop is None:
        raise Unauthorized("Invalid app proxy signature.")
    product_id = None
    for key, value in items:  # the last one wins, as in `request.query_params.get`
        if key == "product_id":
            product_id = value
    return container, identity.shop, storefront.normalize_product_id(product_id)


async def _fast_bundles_for_product(request: Request) -> Response:
    container, shop, product_gid = _proxy_context(request)
    return _respond(await storefront.bundles_for_product(container, shop, product_gid))


async def _fast_v2_bundles(request: Request) -> Response:
    container, shop, product_gid = _proxy_context(request)
    return _respond(await storefront.v2_bundles_for_product(container, shop, product_gid))


def _respond(answer: StorefrontAnswer) -> Response:
    return Response(answer.body, media_type="application/json", headers={READ_SOURCE_HEADER: answer.read_source})


@_storefront_get(
    "/bundles-for-product",
    summary="Bundles containing a product, in the legacy theme script's array shape",
    responses={
        **example_response(
            LEGACY_BUNDLES_EXAMPLE, description="The legacy array.", headers=_READ_SOURCE_DOC, model=list[LegacyBundle]
        ),
        **PROXY_ERRORS,
        **problem(
            409,
            "Legacy path: the shop is not connected (uninstalled, frozen, locked or gone; `reason` says which).",
            shopNotConnected=problem_example(
                409,
                "Shopify refused to read the shop's bundles.",
                title="Shop not connected",
                slug="shop-not-connected",
                reason="shop_unauthorized",
            ),
        ),
        **problem(
            502,
            "Legacy path: Shopify refused the read (`reason` says why).",
            shopifyRefused=problem_example(
                502, "Shopify refused to read the shop's bundles.", reason="shopify_bad_response"
            ),
        ),
        **problem(
            503,
            "Legacy path: Shopify unavailable and nothing cached; retry later.",
            shopifyUnavailable=problem_example(
                503,
                "Shopify did not answer; the shop's bundles cannot be read right now. Retry later.",
                title="Shopify unavailable",
                slug="shopify-unavailable",
                reason="shopify_unavailable",
            ),
        ),
    },
    params=(_param("product_id", "Numeric product id or `gid://shopify/Product/<id>`.", schema=_PRODUCT_ID_SCHEMA),),
)
async def bundles_for_product(
    shop: ProxyShopDep,
    container: ContainerDep,
    product_id: str | None = Query(None, include_in_schema=False),
) -> Response:
    """`[{id, title, discount, description, products}]`, exactly as the legacy app answered.

    `V2_BUNDLE_ENGINE` for the shop selects the store (`X-Bundle-Read-Source`); both give the
    same array for a migrated bundle: `id` is the metaobject GID (a V2-only bundle: its V2 id),
    `discount` the percentage as a plain string ("15", "12.5"; "" for none), `products` the
    product GIDs in display order. Only bundles offered to shoppers are listed (ACTIVE; AI
    bundles only when they have a metaobject, as in the legacy app).

    Also served, identically, at `/api/proxy_route/bundles-for-product` (the legacy App Proxy URL).
    """
    product_gid = storefront.normalize_product_id(product_id)
    return _respond(await storefront.bundles_for_product(container, shop, product_gid))


@_storefront_get(
    "/v2/bundles",
    summary="Active V2 bundles containing a product, with components, price and stock",
    responses={
        **example_response(
            STOREFRONT_BUNDLES_EXAMPLE,
            description="The bundles.",
            headers=_READ_SOURCE_DOC,
            model=StorefrontBundlesResponse,
        ),
        **PROXY_ERRORS,
    },
    params=(_param("product_id", "Numeric product id or `gid://shopify/Product/<id>`.", schema=_PRODUCT_ID_SCHEMA),),
)
async def v2_bundles(
    shop: ProxyShopDep,
    container: ContainerDep,
    product_id: str | None = Query(None, include_in_schema=False),
) -> Response:
    """ACTIVE bundles only, from the V2 tables. Prices come from the V2 pricing engine when
    `V2_PRICING_ENGINE` is on for the shop, else from the legacy percentage (the bundle's
    BUNDLE_DISCOUNT percentage off the sum of the component prices). Money and percentages are
    strings with exactly two decimals ("19.99"), never JSON numbers.

    Also served, identically, at `/api/proxy_route/v2/bundles`."""
    product_gid = storefront.normalize_product_id(product_id)
    return _respond(await storefront.v2_bundles_for_product(container, shop, product_gid))


@_storefront_get(
    "/ai-bundles-for-product",
    summary="AI frequently-bought-together bundles of a product, as the legacy app answered",
    responses={
        **example_response(
            AI_BUNDLES_EXAMPLE, description="The AI bundles.", headers=_READ_SOURCE_DOC, model=AiBundlesResponse
        ),
        **PROXY_ERRORS,
        **problem(
            422,
            "Missing or invalid product id, or a session id over 256 characters",
            invalidProductId=problem_example(
                422,
                "Invalid product id.",
                errors=[
                    {
                        "field": "query.productId",
                        "message": "must be a numeric product id or gid://shopify/Product/<id>",
                    }
                ],
            ),
            invalidSessionId=problem_example(
                422, "Invalid session id.", errors=[{"field": "query.sessionId", "message": "at most 256 characters"}]
            ),
        ),
    },
    params=(
        _param("productId", "Numeric product id or `gid://shopify/Product/<id>`.", schema=_PRODUCT_ID_SCHEMA),
        _param(
            "sessionId",
            "Storefront session, for its A/B assignment (at most 256 characters).",
            required=False,
            schema={"type": "string", "maxLength": 256},
        ),
    ),
)
async def ai_bundles_for_product(
    shop: ProxyShopDep,
    container: ContainerDep,
    product_id: str | None = Query(None, alias="productId", include_in_schema=False),
    session_id: str | None = Query(None, alias="sessionId", include_in_schema=False),
) -> Response:
    """`{bundles, enabled}`, plus `variantGroupId` when the session has an unexpired A/B assignment.

    Always answered from the legacy AI tables (`ai_fbt_config`, `ai_fbt_bundles`,
    `ai_bundle_ab_assignments`), whatever `V2_BUNDLE_ENGINE` says: the A/B assignments and the
    per-shop config live only there (see `app/services/storefront/reads.py`). Active bundles only,
    highest `confidenceScore` first, at most 3; with an unexpired A/B assignment of the session for
    this product, only the bundles of the assigned variant group (all of them when that group has
    none). `productId` and `bundledProductIds` are numeric ids: the theme builds `/products/<id>.js`
    from them.

    Also served, identically, at `/api/proxy_route/ai-bundles-for-product` (the legacy App Proxy URL).
    """
    product_gid = storefront.normalize_product_id(product_id, field="query.productId")
    session = storefront.normalize_session_id(session_id)
    return _respond(await storefront.ai_bundles_for_product(container, shop, product_gid, session))
