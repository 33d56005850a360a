"""`/api/v2/shops/{shop}/bundles`: thin HTTP over app.services.bundles (writes) and bundle_reads (reads).

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
from app.models.bundle_api import BundleCreate, BundleOut, BundlePage, BundleStatus, BundleType, BundleUpdate
from app.services import bundle_reads, bundles

router = APIRouter(prefix="/api/v2/shops/{shop}/bundles", tags=["bundles"])

READ_SOURCE_HEADER = "X-Bundle-Read-Source"
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_COMMON: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON", **_PROBLEM},
    401: {"description": "Missing or invalid credentials", **_PROBLEM},
    403: {"description": "Session token of another shop", **_PROBLEM},
    422: {"description": "Validation failed (errors[] names each field)", **_PROBLEM},
    503: {"description": "Database (or, on legacy reads, Shopify) unavailable; retry", **_PROBLEM},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such bundle in this shop", **_PROBLEM}}
_READ: dict[int | str, dict[str, Any]] = {
    **_COMMON,
    502: {"description": "Shopify refused the legacy read (reason names why)", **_PROBLEM},
}
_READ_HEADERS = {READ_SOURCE_HEADER: {"description": "Which store answered: legacy | v2", "schema": {"type": "string"}}}

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
        **_COMMON,
        409: {"description": "Slug taken, or metaobject already bundled", **_PROBLEM},
        201: {"headers": {"Location": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}}},
    },
)
async def create_bundle(
    shop: ShopDep, body: BundleCreate, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    result = await bundles.create_bundle(container, shop, body, idempotency_key)
    headers = {"Location": bundles.bundle_location(shop, result.bundle_id), "ETag": result.etag}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(result.status, result.body, headers)


@router.get(
    "",
    response_model=BundlePage,
    summary="List bundles, newest first (cursor-paginated)",
    responses={**_READ, 200: {"headers": _READ_HEADERS}},
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
    responses={**_READ, **_NOT_FOUND, 200: {"headers": _READ_HEADERS}},
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
        **_COMMON,
        **_NOT_FOUND,
        409: {"description": "Slug taken, or metaobject already bundled", **_PROBLEM},
        412: {"description": "If-Match does not match the current ETag", **_PROBLEM},
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
    responses={
        **_COMMON,
        **_NOT_FOUND,
        412: {"description": "If-Match does not match the current ETag", **_PROBLEM},
    },
)
async def delete_bundle(
    shop: ShopDep, bundleId: BundleId, container: ContainerDep, if_match: IfMatch = None
) -> Response:
    await bundles.delete_bundle(container, shop, bundleId, if_match)
    return Response(status_code=204)
