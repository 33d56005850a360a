"""Every GraphQL document the service sends to Shopify is valid against Shopify's published Admin schema.

Documents are collected, not listed: every module-level string constant of the ``app`` package that
parses as a GraphQL operation is checked, so a new document cannot be forgotten. Each must have a
named operation with representative variables below (the shapes the code really sends, the
strictest ones included: publishable status, variant ids, products to remove, a null cursor), and
both the document and those variables must pass the same check the Shopify simulator applies
(graphql-core against the 2025-01 Admin schema, variables coerced as Shopify coerces them).

A second test reads the source: a document written inline at a call site (``client.graphql(shop,
"query ...")``) would escape the collection, so every document argument of ``graphql``,
``graphql_result`` and ``mutate`` must be a name (a module constant) or a parameter.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSyntaxError, OperationDefinitionNode, parse

import app
from devtools.shopify_simulator.validation import check_request

ROOT = Path(app.__file__).resolve().parent
METAOBJECT = "gid://shopify/Metaobject/"
PRODUCT = "gid://shopify/Product/"
VARIANT = "gid://shopify/ProductVariant/"
DISCOUNT = "gid://shopify/DiscountAutomaticNode/"

BUNDLE_FIELDS = [
    {"key": "bundle_name", "value": "Summer set"},
    {"key": "bundle_title", "value": "Summer set"},
    {"key": "description", "value": "Two things that go together"},
    {"key": "created_at", "value": "2024-05-01T10:00:00.123456+00:00"},
    {"key": "discount", "value": "13"},
    {"key": "products", "value": f'["{PRODUCT}1","{PRODUCT}2"]'},
]
DISCOUNT_INPUT = {
    "title": "Summer set",
    "startsAt": "2026-01-01T00:00:00Z",
    "customerGets": {
        "value": {"percentage": 0.125},
        "items": {
            "products": {
                "productsToAdd": [f"{PRODUCT}1"],
                "productVariantsToAdd": [f"{VARIANT}11"],
                "productsToRemove": [f"{PRODUCT}3"],
                "productVariantsToRemove": [f"{VARIANT}33"],
            }
        },
    },
}

#: Representative variables per operation name; several entries = several shapes the code sends.
VARIABLES: dict[str, list[dict[str, Any]]] = {
    "Metaobject": [{"id": f"{METAOBJECT}1"}],
    "MetaobjectByHandle": [{"handle": {"type": "product-bundles", "handle": "summer-set"}}],
    "MetaobjectNodes": [{"ids": [f"{METAOBJECT}1", f"{METAOBJECT}2"]}],
    "ProductNodes": [{"ids": [f"{PRODUCT}1", f"{PRODUCT}2"]}],
    "BundleMetaobjectCreate": [
        {
            "metaobject": {
                "type": "product-bundles",
                "handle": "sb-0123456789abcdef",
                "fields": BUNDLE_FIELDS,
                "capabilities": {"publishable": {"status": "ACTIVE"}},
            }
        },
        {"metaobject": {"type": "product-bundles", "handle": "sb-0123456789abcdef", "fields": BUNDLE_FIELDS}},
    ],
    "BundleMetaobjectUpsert": [
        {
            "handle": {"type": "product-bundles", "handle": "sb-0123456789abcdef"},
            "metaobject": {
                "handle": "sb-0123456789abcdef",
                "fields": BUNDLE_FIELDS,
                "capabilities": {"publishable": {"status": "DRAFT"}},
            },
        },
        {"handle": {"type": "product-bundles", "handle": "sb-0123456789abcdef"}, "metaobject": {"fields": []}},
    ],
    "BundleMetaobjectUpdate": [
        {
            "id": f"{METAOBJECT}1",
            "metaobject": {"fields": BUNDLE_FIELDS, "capabilities": {"publishable": {"status": "DRAFT"}}},
        },
        {"id": f"{METAOBJECT}1", "metaobject": {"fields": BUNDLE_FIELDS}},
    ],
    "BundleMetaobjectDelete": [{"id": f"{METAOBJECT}1"}],
    "BundleDiscountCreate": [{"automaticBasicDiscount": DISCOUNT_INPUT}],
    "BundleDiscountUpdate": [
        {"id": f"{DISCOUNT}1", "automaticBasicDiscount": DISCOUNT_INPUT},
        {"id": f"{DISCOUNT}1", "automaticBasicDiscount": {"title": "Renamed"}},
    ],
    "BundleDiscountDelete": [{"id": f"{DISCOUNT}1"}],
    "BundleDiscountsByTitle": [{"query": "title:'Summer \\'set\\''"}],
    "BundleDiscounts": [{"ids": [f"{DISCOUNT}1", f"{DISCOUNT}2"]}],
    "BundleMetaobjects": [
        {"type": "product-bundles", "first": 50, "after": None},
        {"type": "product-bundles", "first": 50, "after": "eyJsYXN0X2lkIjo0Mn0="},
    ],
}

def _operation(text: str) -> OperationDefinitionNode | None:
    stripped = text.lstrip()
    if not stripped.startswith(("query", "mutation", "{")):
        return None
    try:
        document = parse(text)
    except GraphQLSyntaxError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return operations[0] if operations else None


def collect_documents() -> dict[str, str]:
    """``module.CONSTANT`` -> document, for every module-level GraphQL operation string in ``app``."""
    documents: dict[str, str] = {}
    for info in pkgutil.walk_packages(app.__path__, "app."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, str) and not name.startswith("__") and _operation(value) is not None:
                if getattr(module, "__name__", "") == info.name:
                    documents.setdefault(f"{info.name}.{name}", value)
    # A constant re-exported by another module is the same document: keep one entry per text.
    unique: dict[str, str] = {}
    for key, text in sorted(documents.items()):
        if text not in unique.values():
            unique[key] = text
    return unique


DOCUMENTS = collect_documents()


def test_the_collection_finds_the_known_documents() -> None:
    """Guards the collector itself: the client's, write-through's and reconciliation's documents."""
    names = {_operation(text).name.value for text in DOCUMENTS.values()}  # type: ignore[union-attr]
    assert {"Metaobject", "MetaobjectByHandle", "MetaobjectNodes", "ProductNodes", "BundleMetaobjects"} <= names
    assert any(name.startswith("BundleMetaobject") for name in names - {"BundleMetaobjects"})
    assert any(name.startswith("BundleDiscount") for name in names)


@pytest.mark.parametrize("key", sorted(DOCUMENTS))
def test_document_and_its_variables_are_valid_against_the_admin_schema(key: str) -> None:
    text = DOCUMENTS[key]
    operation = _operation(text)
    assert operation is not None and operation.name is not None, f"{key}: give the operation a name"
    name = operation.name.value
    assert name in VARIABLES, f"{key}: add representative variables for operation {name!r} to VARIABLES"
    for variables in VARIABLES[name]:
        errors = check_request(text, variables)
        assert errors == [], f"{key} with {variables}: {errors}"


def test_every_variables_entry_belongs_to_a_document() -> None:
    names = {_operation(text).name.value for text in DOCUMENTS.values()}  # type: ignore[union-attr]
    assert set(VARIABLES) <= names, f"stale VARIABLES entries: {sorted(set(VARIABLES) - names)}"


def _inline_documents(path: Path) -> list[str]:
    """Calls of ``graphql``/``graphql_result``/``mutate`` whose document argument is written inline."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("graphql", "graphql_result", "mutate"):
            continue
        document = node.args[1] if len(node.args) >= 2 else None
        for keyword in node.keywords:
            if keyword.arg in ("query", "mutation", "document"):
                document = keyword.value
        if document is not None and not isinstance(document, ast.Name | ast.Attribute):
            found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return found


def test_no_document_is_written_inline_at_a_call_site() -> None:
    inline = [hit for path in sorted(ROOT.rglob("*.py")) for hit in _inline_documents(path)]
    assert inline == [], f"move these documents to module constants so they are validated: {inline}"
