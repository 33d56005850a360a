"""`/api/v2/shops/{shop}/bundles`: thin HTTP over app.services.bundles.writes (writes) and bundle_reads (reads).

Each handler parses and authorises (ShopDep: the internal token for any shop, or a session
token for this shop), calls one service function and turns its result into a response with the
headers api.md promises: `Location` and `ETag` on writes, `X-Bundle-Read-Source` on reads.
`{bundleId:path}` because a legacy metaobject GID (`gid://shopify/Metaobject/1`) contains slashes
once its URL encoding is undone.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Response

from app.api.deps import ContainerDep, ShopDep
from app.api.openapi_docs import (
    BODY_ERRORS,
    DATABASE_UNAVAILABLE,
    DB_ERRORS,
    INVALID_LIMIT,
    INVALID_SHOP,
    SHOP_ERRORS,
    SHOP_NOT_CONNECTED,
    SHOPIFY_UNAVAILABLE,
    UNEXPECTED_ERROR,
    Responses,
    example_response,
    problem,
    problem_example,
    problem_responses,
)
from app.schemas.bundles import (
    BUNDLE_EXAMPLE,
    BUNDLE_PAGE_EXAMPLE,
    BUNDLE_UPDATED_EXAMPLE,
    BUNDLE_WRITTEN_EXAMPLE,
    BundleCreate,
    BundleOut,
    BundlePage,
    BundleStatus,
    BundleType,
    BundleUpdate,
)
from app.services.bundles import reads as bundle_reads
from app.services.bundles import writes as bundles
from app.services.bundles.representation import bundle_location

router = APIRouter(prefix="/api/v2/shops/{shop}/bundles", tags=["bundles"], responses=UNEXPECTED_ERROR)

READ_SOURCE_HEADER = "X-Bundle-Read-Source"

_INVALID_FIELDS = problem_example(
    422,
    "The request has invalid fields.",
    errors=[
        {
            "field": "body.components.0.quantity",
            "message": "Input should be greater than or equal to 1",
            "type": "greater_than_equal",
        },
        {
            "field": "body.components.1.shopifyProductId",
            "message": "Value error, must be a product GID (gid://shopify/Product/<id>) or a numeric id",
            "type": "value_error",
        },
    ],
)
_NOT_FOUND = problem(
    404,
    "No such bundle in this shop (another shop's bundle included)",
    bundleNotFound=problem_example(404, "Bundle not found."),
)
_CONFLICT = problem(
    409,
    "Slug taken, or the metaobject already belongs to another bundle",
    slugTaken=problem_example(409, "slug taken", slug="summer-set"),
    metaobjectBundled=problem_example(409, "metaobject already bundled"),
)
#: A create with write-through: the same conflicts, or Shopify refusing for the shop's state.
_CREATE_CONFLICT = problem(
    409,
    "Slug taken, the metaobject already belongs to another bundle, or (write-through) the shop is not "
    "connected (`reason` says why)",
    slugTaken=problem_example(409, "slug taken", slug="summer-set"),
    metaobjectBundled=problem_example(409, "metaobject already bundled"),
    shopNotConnected=problem_example(
        409,
        "Shopify refused to create the bundle's objects: the app is not installed on the shop.",
        title="Shop not connected",
        slug="shop-not-connected",
        reason="shop_unauthorized",
    ),
)
_STALE = problem_responses(412)
_WRITE_422 = problem(
    422,
    "Validation failed; `errors[]` names each invalid field",
    invalidFields=_INVALID_FIELDS,
    invalidShop=INVALID_SHOP,
)
_READ_ERRORS: Responses = {
    **SHOP_ERRORS,
    **problem(
        409,
        "Legacy read: the shop is not connected (app uninstalled, shop frozen, locked or gone; `reason` says which)",
        shopNotConnected=SHOP_NOT_CONNECTED,
    ),
    **problem(502, "Legacy read: Shopify refused the request (`reason` says why)"),
    **problem(
        503,
        "Database unavailable, or (legacy read) Shopify unavailable; retry",
        databaseUnavailable=DATABASE_UNAVAILABLE,
        shopifyUnavailable=SHOPIFY_UNAVAILABLE,
    ),
}
_MALFORMED_CURSOR = problem_example(422, "Invalid cursor.", errors=[{"field": "query.cursor", "message": "malformed"}])
_READ_HEADERS = {READ_SOURCE_HEADER: {"description": "Which store answered: legacy | v2", "schema": {"type": "string"}}}
_ETAG_HEADER = {"ETag": {"description": "Weak ETag of this version, for `If-Match`", "schema": {"type": "string"}}}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry-safe create: the same key and body within 24 h returns the first response.",
    ),
]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag of the version you are changing.")]
BundleId = Annotated[str, "V2 id, or the legacy metaobject GID (URL-encoded)"]


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


@router.post(
    "",
    status_code=201,
    response_model=BundleOut,
    summary="Create a bundle (dual-written to the legacy tables while DUAL_WRITE is on)",
    responses={
        **example_response(
            BUNDLE_WRITTEN_EXAMPLE,
            201,
            "Created (or, for a retried `Idempotency-Key`, the first response again)",
            headers={
                "Location": {"description": "The new bundle's URL", "schema": {"type": "string"}},
                **_ETAG_HEADER,
                "Idempotent-Replayed": {
                    "description": "`true` when this is the stored answer to an earlier request with the same key",
                    "schema": {"type": "string"},
                },
            },
        ),
        **SHOP_ERRORS,
        **BODY_ERRORS,
        **_CREATE_CONFLICT,
        **problem(
            422,
            "Validation failed (`errors[]` names each field), or the `Idempotency-Key` was used with another body",
            invalidFields=_INVALID_FIELDS,
            invalidShop=INVALID_SHOP,
            idempotencyKeyReused=problem_example(
                422,
                "Idempotency-Key reused with a different body.",
                errors=[{"field": "header.Idempotency-Key", "message": "already used with a different request body"}],
            ),
        ),
        **problem(
            502,
            "Write-through: Shopify refused to create the bundle's metaobject or discount; nothing was kept",
            shopifyRefused=problem_example(
                502,
                "Shopify refused to create the bundle's objects: Handle has already been taken",
                reason="shopify_user_errors",
                userErrors=[{"field": ["metaobject", "handle"], "message": "Handle has already been taken"}],
            ),
        ),
        **problem(
            503,
            "Database or (write-through) Shopify unavailable, or the same key's first request unresolved; retry",
            databaseUnavailable=DATABASE_UNAVAILABLE,
            shopifyUnavailable=problem_example(
                503,
                "Shopify did not answer; the bundle was not created (nothing was kept). Retry the request.",
                title="Shopify unavailable",
                slug="shopify-unavailable",
                reason="shopify_unavailable",
            ),
            idempotencyUnresolved=problem_example(
                503, "The earlier request with this Idempotency-Key is unresolved; retry."
            ),
        ),
    },
)
async def create_bundle(
    shop: ShopDep, body: BundleCreate, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    result = await bundles.create_bundle(container, shop, body, idempotency_key)
    headers = {"Location": bundle_location(shop, result.bundle_id), "ETag": result.etag}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(201 if result.created else 200, result.body, headers)


@router.get(
    "",
    response_model=BundlePage,
    summary="List bundles, newest first (cursor-paginated)",
    responses={
        **example_response(BUNDLE_PAGE_EXAMPLE, headers=_READ_HEADERS),
        **_READ_ERRORS,
        **problem(
            422,
            "Invalid shop, `limit`, `cursor` or filter",
            invalidShop=INVALID_SHOP,
            invalidLimit=INVALID_LIMIT,
            invalidCursor=_MALFORMED_CURSOR,
            invalidProductId=problem_example(
                422,
                "Invalid productId.",
                errors=[{"field": "query.productId", "message": "must be a product GID or a numeric id"}],
            ),
        ),
    },
)
async def list_bundles(
    shop: ShopDep,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[BundleStatus | None, Query()] = None,
    type: Annotated[BundleType | None, Query()] = None,
    productId: Annotated[
        str | None, Query(max_length=100, description="Bundles with a component of this product (id or GID)")
    ] = None,
) -> Response:
    result = await bundle_reads.list_bundles(
        container, shop, limit=limit, cursor=cursor, status=status, type_=type, product_id=productId
    )
    return _json(200, result.body, {READ_SOURCE_HEADER: result.source})


@router.get(
    "/{bundleId:path}",
    response_model=BundleOut,
    summary="One bundle by V2 id or legacy metaobject GID",
    responses={
        **example_response(BUNDLE_EXAMPLE, headers={**_READ_HEADERS, **_ETAG_HEADER}),
        **_READ_ERRORS,
        **_NOT_FOUND,
    },
)
async def get_bundle(shop: ShopDep, bundleId: BundleId, container: ContainerDep) -> Response:
    result = await bundle_reads.get_bundle(container, shop, bundleId)
    headers: dict[str, str] = {READ_SOURCE_HEADER: result.source}
    if result.etag:
        headers["ETag"] = result.etag
    return _json(200, result.body, headers)


@router.patch(
    "/{bundleId:path}",
    response_model=BundleOut,
    summary="Partial update; lists replace; honours If-Match",
    responses={
        **example_response(BUNDLE_UPDATED_EXAMPLE, headers=_ETAG_HEADER),
        **SHOP_ERRORS,
        **BODY_ERRORS,
        **_NOT_FOUND,
        **_CONFLICT,
        **_STALE,
        **_WRITE_422,
        **DB_ERRORS,
    },
)
async def update_bundle(
    shop: ShopDep, bundleId: BundleId, body: BundleUpdate, container: ContainerDep, if_match: IfMatch = None
) -> Response:
    result = await bundles.update_bundle(container, shop, bundleId, body, if_match)
    return _json(200, result.body, {"ETag": result.etag})


@router.delete(
    "/{bundleId:path}",
    status_code=204,
    summary="Delete a bundle (and its legacy rows, in the same transaction)",
    responses={**SHOP_ERRORS, **_NOT_FOUND, **_STALE, **DB_ERRORS},
)
async def delete_bundle(
    shop: ShopDep, bundleId: BundleId, container: ContainerDep, if_match: IfMatch = None
) -> Response:
    await bundles.delete_bundle(container, shop, bundleId, if_match)
    return Response(status_code=204)
