"""Every Admin GraphQL document the service sends, in one place.

Each is a module-level constant with a named operation, so tests/unit/test_graphql_documents.py
finds it and checks it (and representative variables) against Shopify's published 2025-01 Admin
schema. The client (`app.shopify.client`) sends the reads; write-through and reconciliation
(`app.services.shopify_sync`) the bundle metaobject and discount operations.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------- reads

METAOBJECT_QUERY = """query Metaobject($id: ID!) {
  metaobject(id: $id) { id handle type fields { key value } }
}"""

METAOBJECT_BY_HANDLE_QUERY = """query MetaobjectByHandle($handle: MetaobjectHandleInput!) {
  metaobjectByHandle(handle: $handle) { id handle type fields { key value } }
}"""

METAOBJECT_NODES_QUERY = """query MetaobjectNodes($ids: [ID!]!) {
  nodes(ids: $ids) { ... on Metaobject { id handle type fields { key value } } }
}"""

PRODUCT_NODES_QUERY = """query ProductNodes($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on Product {
      id title featuredImage { url }
      variants(first: 1) { nodes { id price sku inventoryQuantity } }
    }
  }
}"""

# -------------------------------------------------------- write-through (metaobjects, discounts)

_USER_ERRORS = "userErrors { field message code }"

METAOBJECT_CREATE = f"""mutation BundleMetaobjectCreate($metaobject: MetaobjectCreateInput!) {{
  metaobjectCreate(metaobject: $metaobject) {{ metaobject {{ id handle }} {_USER_ERRORS} }}
}}"""
METAOBJECT_UPSERT = f"""mutation BundleMetaobjectUpsert($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) {{
  metaobjectUpsert(handle: $handle, metaobject: $metaobject) {{ metaobject {{ id handle }} {_USER_ERRORS} }}
}}"""  # noqa: E501
METAOBJECT_UPDATE = f"""mutation BundleMetaobjectUpdate($id: ID!, $metaobject: MetaobjectUpdateInput!) {{
  metaobjectUpdate(id: $id, metaobject: $metaobject) {{ metaobject {{ id handle }} {_USER_ERRORS} }}
}}"""
METAOBJECT_DELETE = f"""mutation BundleMetaobjectDelete($id: ID!) {{
  metaobjectDelete(id: $id) {{ deletedId {_USER_ERRORS} }}
}}"""
DISCOUNT_CREATE = f"""mutation BundleDiscountCreate($automaticBasicDiscount: DiscountAutomaticBasicInput!) {{
  discountAutomaticBasicCreate(automaticBasicDiscount: $automaticBasicDiscount) {{
    automaticDiscountNode {{ id }} {_USER_ERRORS}
  }}
}}"""
DISCOUNT_UPDATE = f"""mutation BundleDiscountUpdate($id: ID!, $automaticBasicDiscount: DiscountAutomaticBasicInput!) {{
  discountAutomaticBasicUpdate(id: $id, automaticBasicDiscount: $automaticBasicDiscount) {{
    automaticDiscountNode {{ id }} {_USER_ERRORS}
  }}
}}"""
DISCOUNT_DELETE = f"""mutation BundleDiscountDelete($id: ID!) {{
  discountAutomaticDelete(id: $id) {{ deletedAutomaticDiscountId {_USER_ERRORS} }}
}}"""
DISCOUNTS_BY_TITLE = """query BundleDiscountsByTitle($query: String!) {
  automaticDiscountNodes(first: 50, query: $query) {
    nodes { id automaticDiscount { ... on DiscountAutomaticBasic { title startsAt } } }
  }
}"""
DISCOUNT_NODES = """query BundleDiscounts($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on DiscountAutomaticNode {
      id
      automaticDiscount {
        ... on DiscountAutomaticBasic {
          title status customerGets { value { ... on DiscountPercentage { percentage } } }
        }
      }
    }
  }
}"""

# --------------------------------------------------------------------------------- reconciliation

METAOBJECTS_QUERY = """query BundleMetaobjects($type: String!, $first: Int!, $after: String) {
  metaobjects(type: $type, first: $first, after: $after) {
    nodes { id handle type fields { key value } }
    pageInfo { hasNextPage endCursor }
  }
}"""
