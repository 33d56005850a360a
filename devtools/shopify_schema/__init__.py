"""Shopify's published Admin GraphQL schema (2025-01), loaded once per process.

The introspection JSON ships gzipped beside this module (see README.md for its origin and licence).
Building the ``GraphQLSchema`` takes about a third of a second, so it is cached: the simulator and
the document tests share one instance per process.

The schema is validated against the 2025-01 version whatever API version a client asks for: it is
the newest Admin schema Shopify publishes in a redistributable package, and the subset the service
uses (metaobjects, products, automatic discounts) is unchanged in later versions.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any, cast

import orjson
from graphql import GraphQLSchema, IntrospectionQuery, build_client_schema

SCHEMA_VERSION = "2025-01"
SCHEMA_PATH = Path(__file__).with_name(f"admin_schema_{SCHEMA_VERSION}.json.gz")


def load_introspection() -> dict[str, Any]:
    """The raw introspection result (``{"__schema": ...}``)."""
    with gzip.open(SCHEMA_PATH, "rb") as fh:
        payload = orjson.loads(fh.read())
    data: dict[str, Any] = payload["data"]
    return data


def _undeprecate_interface_implementations(introspection: dict[str, Any]) -> None:
    """Clear ``isDeprecated`` on object fields whose interface field is not deprecated.

    Shopify's schema deprecates two such fields (``Customer.hasTimelineComment``,
    ``DiscountAutomaticBxgy.id``), which recent graphql-core rejects as an invalid schema. Deprecation
    plays no part in validating documents, so relaxing it changes no validation result.
    """
    types = {t["name"]: t for t in introspection["__schema"]["types"]}
    for type_ in types.values():
        for interface_ref in type_.get("interfaces") or []:
            interface = types.get(interface_ref["name"])
            if interface is None:
                continue
            live = {f["name"] for f in interface.get("fields") or [] if not f.get("isDeprecated")}
            for field in type_.get("fields") or []:
                if field["name"] in live and field.get("isDeprecated"):
                    field["isDeprecated"] = False
                    field["deprecationReason"] = None


@functools.cache
def admin_schema() -> GraphQLSchema:
    """The Admin schema as a graphql-core ``GraphQLSchema`` (built once per process)."""
    introspection = load_introspection()
    _undeprecate_interface_implementations(introspection)
    return build_client_schema(cast(IntrospectionQuery, introspection))


__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "admin_schema", "load_introspection"]
