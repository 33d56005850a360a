"""FastAPI dependencies: the container, a database session, and the three kinds of auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.container import Container
from app.core.errors import Forbidden, Unauthorized, ValidationFailed
from app.core.security import (
    InvalidSessionToken,
    InvalidSignature,
    constant_time_equals,
    is_valid_shop,
    verify_app_proxy_signature,
    verify_session_token,
)


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_session(container: ContainerDep) -> AsyncIterator[AsyncSession]:
    async with container.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def require_admin(request: Request, container: ContainerDep) -> str:
    """Internal token, compared in constant time. Returns the actor name for audit logs."""
    token = _bearer(request)
    if token is None:
        raise Unauthorized("Missing bearer token.")
    if not constant_time_equals(token, container.admin_token):
        raise Unauthorized("Invalid token.")
    return request.headers.get("x-actor") or "admin"


AdminDep = Annotated[str, Depends(require_admin)]


def validate_shop(shop: str, field: str = "path.shop") -> str:
    if not is_valid_shop(shop):
        raise ValidationFailed(
            "Invalid shop domain.",
            errors=[{"field": field, "message": "must match ^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$"}],
        )
    return shop


async def require_shop_access(shop: str, request: Request, container: ContainerDep) -> str:
    """`/api/v2/shops/{shop}/*`: the internal token for any shop, or a session token for this shop."""
    token = _bearer(request)
    if token is None:
        raise Unauthorized("Missing bearer token.")
    if constant_time_equals(token, container.admin_token):
        return validate_shop(shop)
    settings = container.settings
    try:
        claims = verify_session_token(token, settings.shopify_api_key, settings.shopify_api_secret)
    except InvalidSessionToken as exc:
        raise Unauthorized(f"Invalid session token: {exc}") from exc
    validate_shop(shop)
    if claims.shop != shop:
        raise Forbidden("The session token belongs to another shop.")
    return shop


ShopDep = Annotated[str, Depends(require_shop_access)]


async def require_proxy_shop(request: Request, container: ContainerDep) -> str:
    """App proxy: the shop comes only from the signed query parameters."""
    settings = container.settings
    try:
        return verify_app_proxy_signature(
            request.query_params.multi_items(), settings.shopify_api_secret, settings.proxy_signature_max_age_s
        )
    except InvalidSignature as exc:
        raise Unauthorized(f"Invalid app proxy signature: {exc}") from exc


ProxyShopDep = Annotated[str, Depends(require_proxy_shop)]


# Feature flags (appended by the flags feature; imported here so this edit stays append-only).
from app.core.errors import NotReady  # noqa: E402
from app.services.flags import FlagStore  # noqa: E402


async def get_flags(container: ContainerDep) -> FlagStore:
    """The replica's flag store; 503 while lifecycle.start() has not created it yet."""
    store = container.flags
    if not isinstance(store, FlagStore):
        raise NotReady("Feature flags are not loaded yet.")
    return store


FlagsDep = Annotated[FlagStore, Depends(get_flags)]
