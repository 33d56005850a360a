"""FastAPI dependencies: the container, a database session, and the three kinds of auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Identity, authenticate
from app.core.container import Container
from app.core.errors import Forbidden, NotReady, Unauthorized, ValidationFailed
from app.core.security import is_valid_shop
from app.services.flags.snapshot import FlagStore


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_session(container: ContainerDep) -> AsyncIterator[AsyncSession]:
    async with container.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _identity(request: Request, container: Container) -> Identity:
    """The caller, as the request guard authenticated it (computed here when it did not run)."""
    return authenticate(
        container.authenticator,
        request.scope,
        request.headers.get("authorization"),
        request.query_params.multi_items(),
    )


async def require_admin(request: Request, container: ContainerDep) -> str:
    """Internal token. Returns the actor for audit logs: the authenticated token's name
    (`ADMIN_API_TOKENS=name:token`), never a header the caller could set to anything."""
    identity = _identity(request, container)
    if identity.kind != "admin":
        raise Unauthorized("Invalid token.")
    return identity.actor


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
    identity = _identity(request, container)
    validate_shop(shop)
    if identity.shop is not None and identity.shop != shop:
        raise Forbidden("The session token belongs to another shop.")
    return shop


ShopDep = Annotated[str, Depends(require_shop_access)]


async def require_proxy_shop(request: Request, container: ContainerDep) -> str:
    """App proxy: the shop comes only from the signed query parameters."""
    shop = _identity(request, container).shop
    if shop is None:
        raise Unauthorized("Invalid app proxy signature.")
    return shop


ProxyShopDep = Annotated[str, Depends(require_proxy_shop)]


async def get_flags(container: ContainerDep) -> FlagStore:
    """The replica's flag store; 503 while lifecycle.start() has not created it yet."""
    store = container.flags
    if not isinstance(store, FlagStore):
        raise NotReady("Feature flags are not loaded yet.")
    return store


FlagsDep = Annotated[FlagStore, Depends(get_flags)]
