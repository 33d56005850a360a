"""What the client's typed reads return: Shopify objects as plain values, parsed defensively.

The migration, the legacy read path and write-through work on these frozen values rather than on
GraphQL dicts, so the shape of a node is interpreted once, here: a null node, `{}` (an id of
another type matches no fragment) or a node without an id becomes None, and a missing or odd
field becomes None or empty, never a KeyError inside a migration item.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

__all__ = ["Metaobject", "NodesResult", "Product", "is_gid", "parse_metaobject", "parse_product"]

_GID_RE = re.compile(r"gid://shopify/(?P<type>[A-Za-z]+)/(?P<id>[0-9]+)")

T = TypeVar("T")


def is_gid(value: str, type_: str) -> bool:
    """True for `gid://shopify/<type_>/<digits>`: the only id shape Shopify accepts for `type_`.

    Checked before sending because one malformed id (the legacy import stored *handles* as
    `gid://shopify/Metaobject/<handle>`) makes Shopify reject the whole 250-id batch.
    """
    match = _GID_RE.fullmatch(value) if isinstance(value, str) else None
    return bool(match and match.group("type") == type_)


@dataclass(frozen=True, slots=True)
class Metaobject:
    """A metaobject as read from Shopify. `fields` maps key → value; null values are omitted."""

    id: str
    handle: str
    type: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Product:
    """The few product facts cached on bundle components (first variant only)."""

    id: str
    title: str
    image_url: str | None
    variant_id: str | None
    price: Decimal | None
    sku: str | None
    inventory_quantity: int | None


@dataclass(slots=True)
class NodesResult(Generic[T]):
    """Outcome of a batched `nodes(ids:)` read.

    `nodes` maps every input id to its object or None; `invalid` lists ids that are not valid
    GIDs of the expected type (never sent, or rejected by Shopify); `failed` maps ids whose
    node came back null *with* a GraphQL error at its position (e.g. access denied) to the
    error message, so a caller can tell them apart from "does not exist".
    """

    nodes: dict[str, T | None]
    invalid: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def parse_metaobject(node: Any) -> Metaobject | None:
    """A `Metaobject` from a node; None for null or `{}` (an id of another type matches no fragment)."""
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        return None
    fields: dict[str, str] = {}
    raw_fields = node.get("fields")
    for entry in raw_fields if isinstance(raw_fields, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("key"), str) and entry.get("value") is not None:
            fields[entry["key"]] = str(entry["value"])
    return Metaobject(
        id=node["id"], handle=str(node.get("handle") or ""), type=str(node.get("type") or ""), fields=fields
    )


def parse_product(node: Any) -> Product | None:
    """A `Product` from a node (title, image, first variant); None for null or `{}` as above."""
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        return None
    image = node.get("featuredImage")
    image_url = image.get("url") if isinstance(image, Mapping) else None
    variants = node.get("variants")
    variant_nodes = variants.get("nodes") if isinstance(variants, Mapping) else None
    variant = variant_nodes[0] if isinstance(variant_nodes, list) and variant_nodes else None
    variant = variant if isinstance(variant, Mapping) else {}
    quantity = variant.get("inventoryQuantity")
    return Product(
        id=node["id"],
        title=str(node.get("title") or ""),
        image_url=image_url if isinstance(image_url, str) else None,
        variant_id=variant.get("id") if isinstance(variant.get("id"), str) else None,
        price=_decimal(variant.get("price")),
        sku=variant.get("sku") if isinstance(variant.get("sku"), str) else None,
        inventory_quantity=quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else None,
    )


def _decimal(value: Any) -> Decimal | None:
    """Money is a decimal string in current API versions; older ones nest it as MoneyV2."""
    if isinstance(value, Mapping):
        value = value.get("amount")
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None
