"""The Shopify Admin simulator over real HTTP: GraphQL subset, auth, cost throttling and faults.

Every other integration test and the benchmarks trust the simulator to behave like Shopify where the
service depends on it, so these tests pin that behaviour down on the wire (status codes, body shapes,
cost arithmetic) rather than on internals.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from devtools.shopify_simulator import SimulatorControl, SimulatorServer

SHOP = "alpha.myshopify.com"
TOKEN = "shpat_alpha"
OTHER = "beta.myshopify.com"
OTHER_TOKEN = "shpat_beta"
BUNDLE = "product-bundles"
METAOBJECT = "gid://shopify/Metaobject/"

NODES_QUERY = """
query Nodes($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on Metaobject { id handle type fields { key value } }
  }
}
"""
PRODUCTS_QUERY = """
query Products($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on Product {
      id title featuredImage { url }
      variants(first: 1) { nodes { id price sku inventoryQuantity } }
    }
  }
}
"""
METAOBJECT_QUERY = "query One($id: ID!) { metaobject(id: $id) { id handle type fields { key value } } }"
BY_HANDLE_QUERY = """
query ByHandle($type: String!, $handle: String!) {
  metaobjectByHandle(handle: {type: $type, handle: $handle}) { id handle type fields { key value } }
}
"""
BY_HANDLE_OBJECT_QUERY = """
query ByHandle($handle: MetaobjectHandleInput!) {
  metaobjectByHandle(handle: $handle) { id handle type fields { key value } }
}
"""
USER_ERRORS = "userErrors { field message code }"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
async def control(sim: SimulatorServer) -> AsyncIterator[SimulatorControl]:
    async with SimulatorControl(sim.base_url) as ctl:
        await ctl.reset()
        await ctl.put_shop(SHOP, TOKEN)
        await ctl.put_shop(OTHER, OTHER_TOKEN)
        yield ctl


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield http


async def gql(
    client: httpx.AsyncClient,
    sim: SimulatorServer,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    shop: str = SHOP,
    token: str | None = TOKEN,
    timeout_s: float | None = None,
) -> httpx.Response:
    headers = {"X-Shopify-Access-Token": token} if token is not None else {}
    kwargs: dict[str, Any] = {"timeout": timeout_s} if timeout_s is not None else {}
    return await client.post(
        sim.url_template.format(shop=shop, version="2026-01"),
        json={"query": query, "variables": variables or {}},
        headers=headers,
        **kwargs,
    )


async def seed_bundles(control: SimulatorControl, count: int, shop: str = SHOP) -> list[dict[str, Any]]:
    return await control.add_metaobjects(
        shop,
        [
            {
                "handle": f"bundle-{i}",
                "type": BUNDLE,
                "fields": {
                    "bundle_name": f"Bundle {i}",
                    "discount": "15",
                    "products": ["gid://shopify/Product/1"],
                },
            }
            for i in range(count)
        ],
    )


# -- reads ----------------------------------------------------------------------------------------


async def test_nodes_250_ids_in_one_call_aligned_with_nulls(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    seeded = await seed_bundles(control, 200)
    existing = iter(seeded)
    ids: list[str] = []
    expected: list[dict[str, Any] | None] = []
    for i in range(250):
        if i % 5 == 4:
            ids.append(f"gid://shopify/Metaobject/{900000 + i}")
            expected.append(None)
        else:
            item = next(existing)
            ids.append(item["id"])
            expected.append({k: item[k] for k in ("id", "handle", "type", "fields")})

    response = await gql(client, sim, NODES_QUERY, {"ids": ids})

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    assert body["data"]["nodes"] == expected
    first = body["data"]["nodes"][0]
    assert first["fields"] == [
        {"key": "bundle_name", "value": "Bundle 0"},
        {"key": "discount", "value": "15"},
        {"key": "products", "value": '["gid://shopify/Product/1"]'},
    ]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 500  # 250 objects + 250 fields lists
    assert cost["actualQueryCost"] == 400  # the 50 nulls cost nothing
    assert cost["throttleStatus"]["maximumAvailable"] == 1000
    assert cost["throttleStatus"]["restoreRate"] == 100
    assert 600 <= cost["throttleStatus"]["currentlyAvailable"] <= 610
    stats = await control.stats()
    assert stats["nodeIds"][SHOP] == 250
    assert stats["byKind"]["nodes"] == 1


async def test_nodes_more_than_250_ids_is_max_input_size_exceeded(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    ids = [f"gid://shopify/Metaobject/{i}" for i in range(1, 252)]
    response = await gql(client, sim, NODES_QUERY, {"ids": ids})

    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "message": "The input array size of 251 is greater than the maximum allowed of 250.",
                "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
            }
        ]
    }


async def test_products_nodes_shape(sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient) -> None:
    products = await control.add_products(
        SHOP,
        [
            {
                "title": "Mug",
                "price": 19.99,
                "sku": "MUG-1",
                "imageUrl": "https://cdn/x.png",
                "inventoryQuantity": 7,
            },
            {
                "id": "gid://shopify/Product/777",
                "title": "Sticker",
                "price": "2.50",
                "variantId": "gid://shopify/ProductVariant/778",
            },
        ],
    )
    mug, sticker = products
    ids = [mug["id"], "gid://shopify/Product/424242", sticker["id"]]

    body = (await gql(client, sim, PRODUCTS_QUERY, {"ids": ids})).json()

    assert body["data"]["nodes"] == [
        {
            "id": mug["id"],
            "title": "Mug",
            "featuredImage": {"url": "https://cdn/x.png"},
            "variants": {"nodes": [{"id": mug["variantId"], "price": "19.99", "sku": "MUG-1", "inventoryQuantity": 7}]},
        },
        None,
        {
            "id": "gid://shopify/Product/777",
            "title": "Sticker",
            "featuredImage": None,
            "variants": {
                "nodes": [
                    {
                        "id": "gid://shopify/ProductVariant/778",
                        "price": "2.50",
                        "sku": None,
                        "inventoryQuantity": 0,
                    }
                ]
            },
        },
    ]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 9  # 3 x (object + image + variants connection)
    assert cost["actualQueryCost"] == 6


@pytest.mark.parametrize(
    ("query", "variables", "bad_id", "path"),
    [
        (
            NODES_QUERY,
            {"ids": ["gid://shopify/Metaobject/1", "gid://shopify/Metaobject/[object Object]"]},
            "gid://shopify/Metaobject/[object Object]",
            [1],
        ),
        (
            METAOBJECT_QUERY,
            {"id": "gid://shopify/Metaobject/[object Object]"},
            "gid://shopify/Metaobject/[object Object]",
            [],
        ),
        (METAOBJECT_QUERY, {"id": "not-a-gid"}, "not-a-gid", []),
    ],
)
async def test_malformed_global_id_in_a_variable_is_invalid_variable(
    sim: SimulatorServer,
    control: SimulatorControl,
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any],
    bad_id: str,
    path: list[int],
) -> None:
    """Shopify coerces ID variables to global ids: one malformed id refuses the whole request."""
    await seed_bundles(control, 1)
    response = await gql(client, sim, query, variables)

    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    [(name, value)] = variables.items()
    declared = "[ID!]!" if name == "ids" else "ID!"
    explanation = f"Invalid global id `{bad_id}`"
    located = f" for {path[0]} ({explanation})" if path else ""
    assert error["message"] == f"Variable ${name} of type {declared} was provided invalid value{located}"
    assert error["extensions"] == {
        "code": "INVALID_VARIABLE",
        "value": value,
        "problems": [{"path": path, "explanation": explanation}],
    }
    assert error["locations"][0]["line"] >= 1


async def test_malformed_global_id_literal_fails_the_whole_request(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    await seed_bundles(control, 1)
    response = await gql(client, sim, '{ metaobject(id: "42") { id } }')

    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "message": "Invalid global id '42'",
                "extensions": {"code": "argumentLiteralsIncompatible"},
            }
        ],
        "data": None,
    }


async def test_metaobject_by_id_and_by_handle(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    [item] = await seed_bundles(control, 1)
    expected = {k: item[k] for k in ("id", "handle", "type", "fields")}

    by_id = (await gql(client, sim, METAOBJECT_QUERY, {"id": item["id"]})).json()
    assert by_id["data"] == {"metaobject": expected}
    assert by_id["extensions"]["cost"]["requestedQueryCost"] == 2

    separate = (await gql(client, sim, BY_HANDLE_QUERY, {"type": BUNDLE, "handle": "bundle-0"})).json()
    assert separate["data"] == {"metaobjectByHandle": expected}

    as_object = await gql(client, sim, BY_HANDLE_OBJECT_QUERY, {"handle": {"type": BUNDLE, "handle": "bundle-0"}})
    assert as_object.json()["data"] == {"metaobjectByHandle": expected}

    inline = f'{{ mo: metaobjectByHandle(handle: {{type: "{BUNDLE}", handle: "bundle-0"}}) {{ id }} }}'
    assert (await gql(client, sim, inline)).json()["data"] == {"mo": {"id": item["id"]}}

    missing = (await gql(client, sim, BY_HANDLE_QUERY, {"type": BUNDLE, "handle": "nope"})).json()
    assert missing["data"] == {"metaobjectByHandle": None}

    # A handle stored where the id belongs (legacy import) is a well-formed GID that finds nothing.
    gone = (await gql(client, sim, METAOBJECT_QUERY, {"id": "gid://shopify/Metaobject/bundle-0"})).json()
    assert gone["data"] == {"metaobject": None}
    assert gone["extensions"]["cost"]["actualQueryCost"] == 1

    # Literal ids inline, two aliased root fields in one request.
    gid = item["id"]
    two = f'{{ a: metaobject(id: "{gid}") {{ id }} b: nodes(ids: ["{gid}", "{METAOBJECT}9"]) {{ id }} }}'
    body = (await gql(client, sim, two)).json()
    assert body["data"] == {"a": {"id": gid}, "b": [{"id": gid}, None]}


async def test_deleted_metaobject_reads_as_null(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    [item] = await seed_bundles(control, 1)
    assert await control.get_metaobject(SHOP, item["id"]) is not None
    assert await control.delete_metaobject(SHOP, item["id"]) is True
    assert await control.delete_metaobject(SHOP, item["id"]) is False
    assert await control.get_metaobject(SHOP, item["id"]) is None

    body = (await gql(client, sim, METAOBJECT_QUERY, {"id": item["id"]})).json()
    assert body["data"] == {"metaobject": None}


async def test_unknown_field_and_parse_error(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    unknown = await gql(client, sim, "{ ordersX(first: 1) { id } }")
    assert unknown.status_code == 200
    assert unknown.json() == {
        "errors": [
            {
                "message": "Field 'ordersX' doesn't exist on type 'QueryRoot'",
                "locations": [{"line": 1, "column": 3}],
                "path": ["query", "ordersX"],
                "extensions": {"code": "undefinedField", "typeName": "QueryRoot", "fieldName": "ordersX"},
            }
        ]
    }

    broken = await gql(client, sim, "{ nodes(ids: [) }")
    assert broken.status_code == 200
    assert broken.json() == {
        "errors": [{"message": 'Parse error on ")" (RPAREN) at [1, 15]', "locations": [{"line": 1, "column": 15}]}]
    }

    # In Shopify's schema but not simulated: refused under a code of its own, never answered wrongly.
    unsupported = (await gql(client, sim, "{ orders(first: 1) { nodes { id } } }")).json()
    assert "data" not in unsupported
    assert unsupported["errors"][0]["extensions"]["code"] == "SIMULATOR_UNSUPPORTED"

    no_query = await client.post(
        sim.url_template.format(shop=SHOP, version="2026-01"),
        content=b"nope",
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    assert no_query.status_code == 400


# -- auth and shop status ------------------------------------------------------------------------


async def test_auth_and_shop_status(sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient) -> None:
    query = "{ shop { name } }"
    ok = await gql(client, sim, "{ shop { name myshopifyDomain plan { displayName } } }")
    assert ok.status_code == 200
    assert ok.json()["data"] == {"shop": {"name": SHOP, "myshopifyDomain": SHOP, "plan": {"displayName": "standard"}}}

    invalid = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    wrong = await gql(client, sim, query, token="shpat_wrong")
    assert (wrong.status_code, wrong.json()) == (401, invalid)
    assert (await gql(client, sim, query, token=None)).status_code == 401
    assert (await gql(client, sim, query, token=OTHER_TOKEN)).status_code == 401  # another shop's token

    unknown = await gql(client, sim, query, shop="nobody.myshopify.com")
    assert (unknown.status_code, unknown.json()) == (404, {"errors": "Not Found"})

    await control.put_shop(SHOP, status="frozen")
    frozen = await gql(client, sim, query)
    assert (frozen.status_code, frozen.json()) == (402, {"errors": "Unavailable Shop"})

    await control.put_shop(SHOP, status="locked")
    locked = await gql(client, sim, query)
    assert (locked.status_code, locked.json()) == (423, {"errors": "Locked"})

    await control.put_shop(SHOP, status="gone")
    assert (await gql(client, sim, query)).status_code == 404

    await control.put_shop(SHOP, status="active")
    assert (await gql(client, sim, query)).status_code == 200

    await control.revoke_token(SHOP)
    revoked = await gql(client, sim, query)
    assert (revoked.status_code, revoked.json()) == (401, invalid)
    assert (await gql(client, sim, query, shop=OTHER, token=OTHER_TOKEN)).status_code == 200

    await control.put_shop(SHOP, "shpat_new")
    assert (await gql(client, sim, query, token="shpat_new")).status_code == 200


# -- cost and throttling -------------------------------------------------------------------------


async def test_throttle_is_per_shop_by_cost(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    await control.put_shop(SHOP, maximum_available=50, restore_rate=100)
    ids = [item["id"] for item in await seed_bundles(control, 20)]

    first = (await gql(client, sim, NODES_QUERY, {"ids": ids})).json()
    assert first["extensions"]["cost"]["actualQueryCost"] == 40
    assert len(first["data"]["nodes"]) == 20

    throttled = await gql(client, sim, NODES_QUERY, {"ids": ids})
    assert throttled.status_code == 200
    body = throttled.json()
    assert "data" not in body
    assert body["errors"] == [
        {
            "message": "Throttled",
            "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
        }
    ]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 40
    assert cost["actualQueryCost"] is None
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 50
    assert status["restoreRate"] == 100
    assert status["currentlyAvailable"] < 40

    # The other shop's bucket is independent.
    other_ids = [item["id"] for item in await seed_bundles(control, 20, shop=OTHER)]
    other = (await gql(client, sim, NODES_QUERY, {"ids": other_ids}, shop=OTHER, token=OTHER_TOKEN)).json()
    assert "errors" not in other
    assert len(other["data"]["nodes"]) == 20

    # Waiting what Shopify tells clients to wait is enough.
    await asyncio.sleep((40 - status["currentlyAvailable"]) / status["restoreRate"] + 0.05)
    again = (await gql(client, sim, NODES_QUERY, {"ids": ids})).json()
    assert "errors" not in again
    assert again["data"]["nodes"][0]["id"] == ids[0]

    stats = await control.stats()
    assert stats["throttled"] == {SHOP: 1}

    # Optionally answered with HTTP 429 and Retry-After instead of 200.
    await control.set_faults(SHOP, throttle_status_code=429)
    as_429 = await gql(client, sim, NODES_QUERY, {"ids": ids})
    assert as_429.status_code == 429
    assert int(as_429.headers["retry-after"]) >= 1
    assert as_429.json()["errors"][0]["extensions"]["code"] == "THROTTLED"

    # A query that can never fit the bucket is refused outright, not throttled forever.
    too_big = (await gql(client, sim, NODES_QUERY, {"ids": ids + ids})).json()
    assert too_big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


async def test_cost_arithmetic_is_consistent(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    await control.put_shop(SHOP, restore_rate=0.001)  # effectively no refill: exact arithmetic
    [item] = await seed_bundles(control, 1)
    before = (await control.get_shop(SHOP))["throttleStatus"]["currentlyAvailable"]
    assert before == 1000

    first = (await gql(client, sim, METAOBJECT_QUERY, {"id": item["id"]})).json()["extensions"]["cost"]
    second = (await gql(client, sim, METAOBJECT_QUERY, {"id": item["id"]})).json()["extensions"]["cost"]
    assert first["requestedQueryCost"] == first["actualQueryCost"] == 2
    assert first["throttleStatus"]["currentlyAvailable"] == 998
    assert second["throttleStatus"]["currentlyAvailable"] == 996

    mutation = (
        await gql(
            client,
            sim,
            f"mutation($id: ID!) {{ metaobjectDelete(id: $id) {{ deletedId {USER_ERRORS} }} }}",
            {"id": item["id"]},
        )
    ).json()["extensions"]["cost"]
    assert mutation["requestedQueryCost"] == mutation["actualQueryCost"] == 10
    assert mutation["throttleStatus"]["currentlyAvailable"] == 986

    await control.put_shop(SHOP, plan="enterprise")
    assert (await control.get_shop(SHOP))["throttleStatus"]["restoreRate"] == 2000


# -- faults --------------------------------------------------------------------------------------


async def test_injected_5xx_and_429_in_queue_order(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    await control.set_faults(
        next_faults=[
            {"kind": "5xx", "status": 502, "body": "html"},
            {"kind": "5xx", "status": 503, "body": "json"},
            {"kind": "throttle"},
        ]
    )
    query = "{ shop { name } }"

    bad_gateway = await gql(client, sim, query)
    assert bad_gateway.status_code == 502
    assert bad_gateway.headers["content-type"].startswith("text/html")
    assert "Bad Gateway" in bad_gateway.text

    unavailable = await gql(client, sim, query)
    assert unavailable.status_code == 503
    assert unavailable.json() == {"errors": "Service Unavailable"}

    too_many = await gql(client, sim, query)
    assert too_many.status_code == 429
    assert too_many.headers["retry-after"] == "1"
    assert too_many.json()["errors"][0]["extensions"]["code"] == "THROTTLED"

    assert (await gql(client, sim, query)).status_code == 200

    # A shop-scoped queue hits only that shop.
    await control.set_faults(OTHER, next_faults=[{"kind": "5xx", "count": 2}])
    assert (await gql(client, sim, query)).status_code == 200
    assert (await gql(client, sim, query, shop=OTHER, token=OTHER_TOKEN)).status_code in (502, 503)
    assert (await gql(client, sim, query, shop=OTHER, token=OTHER_TOKEN)).status_code in (502, 503)
    assert (await gql(client, sim, query, shop=OTHER, token=OTHER_TOKEN)).status_code == 200

    stats = await control.stats()
    assert stats["faultsInjected"] == {"5xx": 4, "throttle": 1}


async def test_injected_timeout(sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient) -> None:
    await control.set_faults(timeout_sleep_s=3, next_faults=["timeout"])
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        await gql(client, sim, "{ shop { name } }", timeout_s=0.3)
    assert time.perf_counter() - started < 1.5
    # The simulator is not blocked: the next request is answered at once.
    started = time.perf_counter()
    assert (await gql(client, sim, "{ shop { name } }")).status_code == 200
    assert time.perf_counter() - started < 0.5


async def test_injected_malformed_bodies(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    ids = [item["id"] for item in await seed_bundles(control, 3)]
    await control.set_faults(next_faults=[{"kind": "malformed", "variant": "truncated"}, {"kind": "partial"}])

    truncated = await gql(client, sim, NODES_QUERY, {"ids": ids})
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)

    partial = await gql(client, sim, NODES_QUERY, {"ids": ids})
    assert partial.status_code == 200
    body = partial.json()
    nodes = body["data"]["nodes"]
    assert len(nodes) == 3
    assert nodes.count(None) == 1
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["path"] == ["nodes", nodes.index(None)]
    assert "cost" in body["extensions"]


async def test_random_faults_are_reproducible_with_a_seed(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    async def run() -> list[int]:
        return [(await gql(client, sim, "{ shop { name } }")).status_code for _ in range(20)]

    await control.set_faults(error5xx=0.5, seed=1234)
    first = await run()
    await control.set_faults(seed=1234)
    second = await run()
    assert first == second
    assert 200 in first
    assert {502, 503} & set(first)

    await control.set_faults(error5xx=0.0, malformed=1.0)
    for _ in range(4):
        response = await gql(client, sim, "{ shop { name } }")
        assert response.status_code == 200
        try:
            body = response.json()
        except json.JSONDecodeError:
            continue  # truncated
        assert body["data"] == {"shop": None}  # partial: data and errors together
        assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    await control.clear_faults()
    assert (await gql(client, sim, "{ shop { name } }")).json()["data"]["shop"]["name"] == SHOP


async def test_latency_is_applied_per_shop(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    await control.set_faults(SHOP, latency_ms=150)

    started = time.perf_counter()
    assert (await gql(client, sim, "{ shop { name } }")).status_code == 200
    assert time.perf_counter() - started >= 0.15

    started = time.perf_counter()
    assert (await gql(client, sim, "{ shop { name } }", shop=OTHER, token=OTHER_TOKEN)).status_code == 200
    assert time.perf_counter() - started < 0.15


# -- mutations -----------------------------------------------------------------------------------

CREATE = f"""
mutation Create($metaobject: MetaobjectCreateInput!) {{
  metaobjectCreate(metaobject: $metaobject) {{
    metaobject {{ id handle type fields {{ key value }} }}
    {USER_ERRORS}
  }}
}}
"""
UPDATE = f"""
mutation Update($id: ID!, $metaobject: MetaobjectUpdateInput!) {{
  metaobjectUpdate(id: $id, metaobject: $metaobject) {{
    metaobject {{ id handle fields {{ key value }} }}
    {USER_ERRORS}
  }}
}}
"""
UPSERT = f"""
mutation Upsert($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) {{
  metaobjectUpsert(handle: $handle, metaobject: $metaobject) {{ metaobject {{ id handle }} {USER_ERRORS} }}
}}
"""
DELETE = f"mutation Delete($id: ID!) {{ metaobjectDelete(id: $id) {{ deletedId {USER_ERRORS} }} }}"


def bundle_fields(**overrides: str) -> list[dict[str, str]]:
    """A complete, valid set of `product-bundles` fields (as the legacy app writes them)."""
    values = {
        "bundle_name": "Summer",
        "bundle_title": "Summer set",
        "description": "Two things that go together",
        "created_at": "2024-05-01T10:00:00Z",
        "discount": "10",
        "products": '["gid://shopify/Product/1","gid://shopify/Product/2"]',
        **overrides,
    }
    return [{"key": k, "value": v} for k, v in values.items()]


async def test_metaobject_mutations(sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient) -> None:
    fields = bundle_fields()
    created = (
        await gql(client, sim, CREATE, {"metaobject": {"type": BUNDLE, "handle": "summer", "fields": fields}})
    ).json()
    result = created["data"]["metaobjectCreate"]
    assert result["userErrors"] == []
    mo = result["metaobject"]
    assert (mo["handle"], mo["type"], mo["fields"]) == ("summer", BUNDLE, fields)
    assert mo["id"].startswith("gid://shopify/Metaobject/")

    taken = (
        await gql(client, sim, CREATE, {"metaobject": {"type": BUNDLE, "handle": "summer", "fields": fields}})
    ).json()
    assert taken["data"]["metaobjectCreate"]["metaobject"] is None
    assert taken["data"]["metaobjectCreate"]["userErrors"][0]["code"] == "TAKEN"

    updated = (
        await gql(
            client,
            sim,
            UPDATE,
            {"id": mo["id"], "metaobject": {"fields": [{"key": "discount", "value": "20"}]}},
        )
    ).json()["data"]["metaobjectUpdate"]
    assert updated["userErrors"] == []
    assert updated["metaobject"]["fields"] == bundle_fields(discount="20")

    missing = await gql(client, sim, UPDATE, {"id": "gid://shopify/Metaobject/999999", "metaobject": {"fields": []}})
    assert missing.status_code == 200
    assert missing.json()["data"]["metaobjectUpdate"] == {
        "metaobject": None,
        "userErrors": [{"field": ["id"], "message": "Record not found", "code": "RECORD_NOT_FOUND"}],
    }

    upsert_new = (
        await gql(
            client,
            sim,
            UPSERT,
            {"handle": {"type": BUNDLE, "handle": "winter"}, "metaobject": {"fields": fields}},
        )
    ).json()["data"]["metaobjectUpsert"]
    assert upsert_new["userErrors"] == []
    assert upsert_new["metaobject"]["handle"] == "winter"
    upsert_old = (
        await gql(
            client,
            sim,
            UPSERT,
            {"handle": {"type": BUNDLE, "handle": "summer"}, "metaobject": {"fields": []}},
        )
    ).json()["data"]["metaobjectUpsert"]
    assert upsert_old["metaobject"]["id"] == mo["id"]

    stored = {item["handle"] for item in await control.list_metaobjects(SHOP, BUNDLE)}
    assert stored == {"summer", "winter"}

    deleted = (await gql(client, sim, DELETE, {"id": mo["id"]})).json()["data"]["metaobjectDelete"]
    assert deleted == {"deletedId": mo["id"], "userErrors": []}
    again = (await gql(client, sim, DELETE, {"id": mo["id"]})).json()["data"]["metaobjectDelete"]
    assert again["deletedId"] is None
    assert again["userErrors"][0]["code"] == "RECORD_NOT_FOUND"

    bad_id = (await gql(client, sim, DELETE, {"id": "gid://shopify/Metaobject/[object Object]"})).json()
    assert bad_id["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"


DISCOUNT_CREATE = f"""
mutation($d: DiscountAutomaticBasicInput!) {{
  discountAutomaticBasicCreate(automaticBasicDiscount: $d) {{ automaticDiscountNode {{ id }} {USER_ERRORS} }}
}}
"""
DISCOUNT_UPDATE = f"""
mutation($id: ID!, $d: DiscountAutomaticBasicInput!) {{
  discountAutomaticBasicUpdate(id: $id, automaticBasicDiscount: $d) {{
    automaticDiscountNode {{ id }}
    {USER_ERRORS}
  }}
}}
"""
DISCOUNT_DELETE = f"""
mutation($id: ID!) {{ discountAutomaticDelete(id: $id) {{ deletedAutomaticDiscountId {USER_ERRORS} }} }}
"""


def discount_input(title: str, percentage: float) -> dict[str, Any]:
    return {
        "title": title,
        "startsAt": "2026-01-01T00:00:00Z",
        "customerGets": {
            "value": {"percentage": percentage},
            "items": {"products": {"productsToAdd": ["gid://shopify/Product/1", "gid://shopify/Product/2"]}},
        },
    }


async def test_discount_mutations(sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient) -> None:
    created = (await gql(client, sim, DISCOUNT_CREATE, {"d": discount_input("Bundle 15%", 0.15)})).json()
    result = created["data"]["discountAutomaticBasicCreate"]
    assert result["userErrors"] == []
    discount_id = result["automaticDiscountNode"]["id"]
    assert discount_id.startswith("gid://shopify/DiscountAutomaticNode/")

    [stored] = await control.list_discounts(SHOP)
    assert (stored["id"], stored["title"], stored["percentage"]) == (discount_id, "Bundle 15%", 0.15)
    assert stored["productIds"] == ["gid://shopify/Product/1", "gid://shopify/Product/2"]
    assert stored["input"]["startsAt"] == "2026-01-01T00:00:00Z"

    updated = (
        await gql(client, sim, DISCOUNT_UPDATE, {"id": discount_id, "d": discount_input("Bundle 20%", 0.2)})
    ).json()["data"]["discountAutomaticBasicUpdate"]
    assert updated["userErrors"] == []
    assert updated["automaticDiscountNode"]["id"] == discount_id
    [stored] = await control.list_discounts(SHOP)
    assert (stored["title"], stored["percentage"]) == ("Bundle 20%", 0.2)

    unknown = "gid://shopify/DiscountAutomaticNode/999999"
    missing = (await gql(client, sim, DISCOUNT_UPDATE, {"id": unknown, "d": discount_input("x", 0.1)})).json()
    assert missing["data"]["discountAutomaticBasicUpdate"]["automaticDiscountNode"] is None
    # DiscountErrorCode (2025-01 schema) has no NOT_FOUND; an unknown id is INVALID on `id`.
    assert missing["data"]["discountAutomaticBasicUpdate"]["userErrors"][0]["code"] == "INVALID"
    assert missing["data"]["discountAutomaticBasicUpdate"]["userErrors"][0]["field"] == ["id"]

    invalid = (await gql(client, sim, DISCOUNT_CREATE, {"d": discount_input("", 1.5)})).json()
    codes = {e["code"] for e in invalid["data"]["discountAutomaticBasicCreate"]["userErrors"]}
    assert codes == {"BLANK", "VALUE_OUTSIDE_RANGE"}

    deleted = (await gql(client, sim, DISCOUNT_DELETE, {"id": discount_id})).json()["data"]
    assert deleted == {"discountAutomaticDelete": {"deletedAutomaticDiscountId": discount_id, "userErrors": []}}
    assert await control.list_discounts(SHOP) == []
    again = (await gql(client, sim, DISCOUNT_DELETE, {"id": discount_id})).json()["data"]["discountAutomaticDelete"]
    assert again["deletedAutomaticDiscountId"] is None
    assert (again["userErrors"][0]["code"], again["userErrors"][0]["field"]) == ("INVALID", ["id"])


# -- control API ---------------------------------------------------------------------------------


async def test_bulk_seeding_is_fast_and_listable(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    started = time.perf_counter()
    items = await seed_bundles(control, 10_000)
    assert time.perf_counter() - started < 3.0
    assert len({item["id"] for item in items}) == 10_000
    assert len(await control.list_metaobjects(SHOP)) == 10_000

    explicit = await control.add_metaobjects(
        SHOP, [{"id": "gid://shopify/Metaobject/5000000", "handle": "x", "type": BUNDLE, "fields": []}]
    )
    assert explicit[0]["id"] == "gid://shopify/Metaobject/5000000"
    [after] = await control.add_metaobjects(SHOP, [{"handle": "y", "type": BUNDLE}])
    assert int(after["id"].rsplit("/", 1)[1]) > 5_000_000  # never collides with explicit ids

    with pytest.raises(httpx.HTTPStatusError):  # a handle is unique per type
        await control.add_metaobjects(SHOP, [{"handle": "x", "type": BUNDLE}])
    with pytest.raises(httpx.HTTPStatusError):
        await control.add_metaobjects("nobody.myshopify.com", [{"handle": "x", "type": BUNDLE}])

    await control.reset_stats()
    assert (await control.stats())["requests"] == {}


# -- schema validation and the product-bundles definition -------------------------------------------

CREATE_WITH_STATUS = """
mutation Create($metaobject: MetaobjectCreateInput!) {
  metaobjectCreate(metaobject: $metaobject) {
    metaobject { id capabilities { publishable { status } } }
    userErrors { field message code elementKey elementIndex }
  }
}
"""
STATUS_QUERY = "query One($id: ID!) { metaobject(id: $id) { id capabilities { publishable { status } } } }"


async def test_bad_variable_type_is_invalid_variable_and_nothing_runs(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    variables = {
        "metaobject": {
            "type": BUNDLE,
            "fields": [{"key": "discount", "value": 15}],
            "capabilities": {"publishable": {"status": "LIVE"}},
            "status": "ACTIVE",
        }
    }
    response = await gql(client, sim, CREATE, variables)

    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == (
        "Variable $metaobject of type MetaobjectCreateInput! was provided invalid value for "
        "status (Field is not defined on MetaobjectCreateInput), "
        "fields.0.value (Could not coerce value 15 to String), "
        'capabilities.publishable.status (Expected "LIVE" to be one of: DRAFT, ACTIVE)'
    )
    assert error["locations"] == [{"line": 2, "column": 17}]
    assert error["extensions"]["code"] == "INVALID_VARIABLE"
    assert error["extensions"]["value"] == variables["metaobject"]
    assert [p["path"] for p in error["extensions"]["problems"]] == [
        ["status"],
        ["fields", 0, "value"],
        ["capabilities", "publishable", "status"],
    ]
    assert await control.list_metaobjects(SHOP, BUNDLE) == []

    missing = (await gql(client, sim, CREATE, {})).json()
    assert (
        missing["errors"][0]["message"]
        == "Variable $metaobject of type MetaobjectCreateInput! was provided invalid value"
    )
    assert missing["errors"][0]["extensions"]["problems"] == [
        {"path": [], "explanation": "Expected value to not be null"}
    ]


@pytest.mark.parametrize(
    ("document", "code", "message"),
    [
        (
            '{ metaobject(id: "gid://shopify/Metaobject/1", first: 1) { id } }',
            "argumentNotAccepted",
            "Field 'metaobject' doesn't accept argument 'first'",
        ),
        ("{ metaobject { id } }", "missingRequiredArguments", "Field 'metaobject' is missing required arguments: id"),
        (
            '{ metaobject(id: "gid://shopify/Metaobject/1") { id colour } }',
            "undefinedField",
            "Field 'colour' doesn't exist on type 'Metaobject'",
        ),
        ("query Q($id: ID!) { shop { name } }", "variableNotUsed", "Variable $id is declared by Q but not used"),
        (
            "query Q($id: String!) { metaobject(id: $id) { id } }",
            "variableMismatch",
            "Type mismatch on variable $id and argument id (String! / ID!)",
        ),
    ],
)
async def test_malformed_documents_are_refused_as_shopify_does(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient, document: str, code: str, message: str
) -> None:
    response = await gql(client, sim, document, {"id": f"{METAOBJECT}1"} if "$id" in document else None)
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body and "extensions" not in body  # refused before it is costed
    [error] = body["errors"]
    assert (error["message"], error["extensions"]["code"]) == (message, code)
    assert error["locations"] and error["path"][0] in ("query", "query Q")


async def test_publishable_status_defaults_to_draft_and_follows_capabilities(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    draft = await gql(client, sim, CREATE_WITH_STATUS, {"metaobject": {"type": BUNDLE, "fields": bundle_fields()}})
    created = draft.json()["data"]["metaobjectCreate"]
    assert created["userErrors"] == []
    assert created["metaobject"]["capabilities"] == {"publishable": {"status": "DRAFT"}}

    active_input = {"type": BUNDLE, "fields": bundle_fields(), "capabilities": {"publishable": {"status": "ACTIVE"}}}
    active = (await gql(client, sim, CREATE_WITH_STATUS, {"metaobject": active_input})).json()
    active_id = active["data"]["metaobjectCreate"]["metaobject"]["id"]
    assert active["data"]["metaobjectCreate"]["metaobject"]["capabilities"]["publishable"]["status"] == "ACTIVE"

    read = (await gql(client, sim, STATUS_QUERY, {"id": active_id})).json()["data"]["metaobject"]
    assert read == {"id": active_id, "capabilities": {"publishable": {"status": "ACTIVE"}}}

    # An update without capabilities keeps the status; with them, moves it.
    await gql(client, sim, UPDATE, {"id": active_id, "metaobject": {"fields": [{"key": "discount", "value": "5"}]}})
    assert (await control.get_metaobject(SHOP, active_id))["capabilities"]["publishable"]["status"] == "ACTIVE"
    to_draft = {"capabilities": {"publishable": {"status": "DRAFT"}}}
    await gql(client, sim, UPDATE, {"id": active_id, "metaobject": to_draft})
    assert (await control.get_metaobject(SHOP, active_id))["capabilities"]["publishable"]["status"] == "DRAFT"

    # Seeded legacy bundles stand for what the legacy app wrote: ACTIVE.
    [seeded] = await seed_bundles(control, 1)
    assert seeded["capabilities"] == {"publishable": {"status": "ACTIVE"}, "onlineStore": None}


def _error(field: list[str], code: str, key: str, index: int | None = None) -> dict[str, Any]:
    return {"field": field, "code": code, "elementKey": key, "elementIndex": index}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            bundle_fields(products='[{"productId": "gid://shopify/Product/1", "quantity": 2}]'),
            _error(["metaobject", "fields", "5"], "INVALID_VALUE", "products", 0),
        ),
        (
            bundle_fields(products='["gid://shopify/Product/1", "gid://shopify/ProductVariant/7"]'),
            _error(["metaobject", "fields", "5"], "INVALID_VALUE", "products", 1),
        ),
        (
            bundle_fields(products="gid://shopify/Product/1"),
            _error(["metaobject", "fields", "5"], "INVALID_VALUE", "products"),
        ),
        (bundle_fields(products="[]"), _error(["metaobject", "fields", "5"], "BLANK", "products")),
        (bundle_fields(discount="12.5"), _error(["metaobject", "fields", "4"], "INVALID_VALUE", "discount")),
        (bundle_fields(discount="15%"), _error(["metaobject", "fields", "4"], "INVALID_VALUE", "discount")),
        (bundle_fields(discount=""), _error(["metaobject", "fields", "4"], "BLANK", "discount")),
        (bundle_fields(created_at="yesterday"), _error(["metaobject", "fields", "3"], "INVALID_VALUE", "created_at")),
        (
            bundle_fields(created_at="2024-13-40T10:00:00Z"),
            _error(["metaobject", "fields", "3"], "INVALID_VALUE", "created_at"),
        ),
        (bundle_fields(description="  "), _error(["metaobject", "fields", "2"], "BLANK", "description")),
        (
            bundle_fields(bundle_title="Two\nlines"),
            _error(["metaobject", "fields", "1"], "INVALID_VALUE", "bundle_title"),
        ),
        (
            [*bundle_fields(), {"key": "variants", "value": "[]"}],
            _error(["metaobject", "fields", "6"], "UNDEFINED_OBJECT_FIELD", "variants"),
        ),
        (
            [*bundle_fields(), {"key": "discount", "value": "5"}],
            _error(["metaobject", "fields", "6"], "DUPLICATE_FIELD_INPUT", "discount"),
        ),
        (bundle_fields()[1:], _error(["metaobject", "fields"], "OBJECT_FIELD_REQUIRED", "bundle_name")),
    ],
)
async def test_product_bundles_definition_is_enforced_and_nothing_is_stored(
    sim: SimulatorServer,
    control: SimulatorControl,
    client: httpx.AsyncClient,
    fields: list[dict[str, str]],
    expected: dict[str, Any],
) -> None:
    for document, variables, payload in (
        (CREATE_WITH_STATUS, {"metaobject": {"type": BUNDLE, "handle": "x", "fields": fields}}, "metaobjectCreate"),
        (
            UPSERT_FULL,
            {"handle": {"type": BUNDLE, "handle": "x"}, "metaobject": {"fields": fields}},
            "metaobjectUpsert",
        ),
    ):
        answer = (await gql(client, sim, document, variables)).json()["data"][payload]
        assert answer["metaobject"] is None
        [error] = answer["userErrors"]
        assert {k: error[k] for k in expected} == expected
        assert error["message"]
        assert await control.list_metaobjects(SHOP, BUNDLE) == []

    # An update is checked the same way (but only the keys it sends) and changes nothing on error.
    [seeded] = await seed_bundles(control, 1)
    sent = (
        [f for f in fields if f["key"] == expected["elementKey"]][-1:]
        if expected["code"] != "OBJECT_FIELD_REQUIRED"
        else []
    )
    if expected["code"] == "DUPLICATE_FIELD_INPUT":
        sent = [{"key": "discount", "value": "5"}, {"key": "discount", "value": "6"}]
    if sent:
        update = (await gql(client, sim, UPDATE_FULL, {"id": seeded["id"], "metaobject": {"fields": sent}})).json()
        errors = update["data"]["metaobjectUpdate"]["userErrors"]
        assert [e["code"] for e in errors] == [expected["code"]]
        assert errors[0]["elementKey"] == expected["elementKey"]
        assert (await control.get_metaobject(SHOP, seeded["id"]))["fields"] == seeded["fields"]


UPSERT_FULL = """
mutation Upsert($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) {
  metaobjectUpsert(handle: $handle, metaobject: $metaobject) {
    metaobject { id }
    userErrors { field message code elementKey elementIndex }
  }
}
"""
UPDATE_FULL = """
mutation Update($id: ID!, $metaobject: MetaobjectUpdateInput!) {
  metaobjectUpdate(id: $id, metaobject: $metaobject) {
    metaobject { id }
    userErrors { field message code elementKey elementIndex }
  }
}
"""


async def test_messy_legacy_values_seeded_through_the_control_api_stay_readable(
    sim: SimulatorServer, control: SimulatorControl, client: httpx.AsyncClient
) -> None:
    messy = {
        "bundle_name": "Old",
        "discount": "12.5%",
        "products": [{"productId": "gid://shopify/Product/1", "variantId": None, "quantity": 2}],
    }
    [seeded] = await control.add_metaobjects(SHOP, [{"type": BUNDLE, "handle": "old", "fields": messy}])
    body = (await gql(client, sim, METAOBJECT_QUERY, {"id": seeded["id"]})).json()
    values = {f["key"]: f["value"] for f in body["data"]["metaobject"]["fields"]}
    assert values["discount"] == "12.5%"
    assert json.loads(values["products"])[0]["quantity"] == 2
