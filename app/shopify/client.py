"""Async client for Shopify's Admin GraphQL API (generic: it knows nothing about bundles).

The client adds typed reads and mutations to the request loop (`transport.py`: per-shop pacing,
the global bound on in-flight requests, retries). Its reads are batched: the migration reads
many thousands of metaobjects per shop through `nodes(ids:)`, 250 ids per request, with
graceful handling of invalid ids, which Shopify answers by rejecting the *whole* request. Each
batch's cost estimate follows what Shopify reported for the previous one (`_learn_cost`), so
the shop's bucket is asked for what a batch really costs.

Entry points: `ShopifyClient.graphql` / `graphql_result` (one query, with retries),
`fetch_metaobjects` / `fetch_metaobject` / `fetch_metaobject_by_handle` / `fetch_products`
(batched reads returning the values of `objects.py`), `mutate` (writes, `userErrors` raised as
`ShopifyUserErrors`). How an answer is classified is `responses.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, Unpack

import httpx

from app.shopify.documents import (
    METAOBJECT_BY_HANDLE_QUERY,
    METAOBJECT_NODES_QUERY,
    METAOBJECT_QUERY,
    PRODUCT_NODES_QUERY,
)
from app.shopify.errors import (
    ShopifyBadResponse,
    ShopifyGraphQLError,
    ShopifyInvalidId,
    ShopifyUnavailable,
    ShopifyUserErrors,
    graphql_error_for,
)
from app.shopify.objects import Metaobject, NodesResult, Product, is_gid, parse_metaobject, parse_product
from app.shopify.responses import RETRYABLE_GRAPHQL_CODES, error_code, failed_node_positions, messages, quoted_ids
from app.shopify.throttle import QueryCost
from app.shopify.transport import ClientStats, GraphQLResult, GraphQLTransport, TokenProvider, TransportOptions

__all__ = ["MAX_NODES_PER_QUERY", "ShopifyClient"]

#: Shopify's limit on `nodes(ids:)`.
MAX_NODES_PER_QUERY = 250

MAX_COST_EXCEEDED_CODE = "MAX_COST_EXCEEDED"

# Initial per-id cost guesses for batched reads; replaced by what Shopify reports (see _learn_cost).
_INITIAL_COST_PER_ID = {"metaobject": 2.0, "product": 4.0}
# Cost guess for one-object queries and for mutations (Shopify charges 10 per mutation).
_SINGLE_OBJECT_COST = 2
_MUTATION_COST = 10

T = TypeVar("T")


class ShopifyClient:
    """Shopify Admin GraphQL client shared by the whole process (one per `httpx.AsyncClient`).

    It takes the arguments of `GraphQLTransport` (token lookup and its cache, pacing, retries,
    injectable sleep/clock/rng, the `on_call` and `on_throttle_wait` hooks) and owns that one
    transport; every request of every read and mutation goes through it.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        url_template: str,
        api_version: str,
        token_provider: TokenProvider,
        **options: Unpack[TransportOptions],
    ) -> None:
        self._transport = GraphQLTransport(http, url_template, api_version, token_provider, **options)
        self._cost_per_id: dict[str, float] = dict(_INITIAL_COST_PER_ID)

    @property
    def stats(self) -> ClientStats:
        """The transport's counters (requests, retries, waits, statuses)."""
        return self._transport.stats

    def batched_read_delay(self, shop: str, kind: str, count: int) -> float:
        """Seconds until a batched read of `count` ids of `kind` ("metaobject", "product") would be
        sent without waiting for the shop's bucket (0 when it fits now or the bucket is unknown), so
        a scheduler can let the shop wait without holding a slot other shops could use."""
        return self._transport.throttle_for(shop).delay_for(self._estimate_cost(kind, count))

    # ------------------------------------------------------------------ one query

    async def graphql(
        self, shop: str, query: str, variables: Mapping[str, Any] | None = None, *, estimated_cost: int
    ) -> dict[str, Any]:
        """Run a query and return its `data` (partial-response errors are logged and counted)."""
        return (await self.graphql_result(shop, query, variables, estimated_cost=estimated_cost)).data

    async def graphql_result(
        self,
        shop: str,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        estimated_cost: int,
        retry_ambiguous: bool = True,
    ) -> GraphQLResult:
        """Run a query with pacing and retries; return data, partial errors and cost.

        See `GraphQLTransport.graphql_result` for `estimated_cost` and `retry_ambiguous`.
        """
        return await self._transport.graphql_result(
            shop, query, variables, estimated_cost=estimated_cost, retry_ambiguous=retry_ambiguous
        )

    # ------------------------------------------------------------------ reads

    async def fetch_metaobject(self, shop: str, id: str) -> Metaobject | None:
        """One metaobject by GID; None when it does not exist.

        Raises `ShopifyInvalidId` without calling Shopify when `id` is not a metaobject GID
        (e.g. a handle stored where the id belongs: use `fetch_metaobject_by_handle`).
        """
        if not is_gid(id, "Metaobject"):
            raise ShopifyInvalidId(shop, ids=[id])
        data = await self.graphql(shop, METAOBJECT_QUERY, {"id": id}, estimated_cost=_SINGLE_OBJECT_COST)
        return parse_metaobject(data.get("metaobject"))

    async def fetch_metaobject_by_handle(self, shop: str, type_: str, handle: str) -> Metaobject | None:
        """One metaobject by `(type, handle)`; None when no such handle exists.

        A null answer that comes *with* an error is Shopify failing, not an absent handle: it raises
        `ShopifyUnavailable` (transient), so no caller mistakes it for "not found".
        """
        answer = await self.graphql_result(
            shop,
            METAOBJECT_BY_HANDLE_QUERY,
            {"handle": {"type": type_, "handle": handle}},
            estimated_cost=_SINGLE_OBJECT_COST,
        )
        found = parse_metaobject(answer.data.get("metaobjectByHandle"))
        if found is None and answer.errors:
            raise ShopifyUnavailable(shop, "; ".join(str(e.get("message", "")) for e in answer.errors)[:500])
        return found

    async def fetch_metaobjects(self, shop: str, ids: Sequence[str]) -> dict[str, Metaobject | None]:
        """Metaobjects by GID, batched 250 per request; every input id maps to an object or None.

        Invalid ids map to None too; use `fetch_metaobjects_detailed` to tell them apart.
        """
        return (await self.fetch_metaobjects_detailed(shop, ids)).nodes

    async def fetch_metaobjects_detailed(self, shop: str, ids: Sequence[str]) -> NodesResult[Metaobject]:
        return await self._fetch_nodes(
            shop,
            ids,
            query=METAOBJECT_NODES_QUERY,
            gid_type="Metaobject",
            parse=parse_metaobject,
            kind="metaobject",
        )

    async def fetch_products(self, shop: str, ids: Sequence[str]) -> dict[str, Product | None]:
        """Products by GID (title, image, first variant), batched like `fetch_metaobjects`."""
        return (await self.fetch_products_detailed(shop, ids)).nodes

    async def fetch_products_detailed(self, shop: str, ids: Sequence[str]) -> NodesResult[Product]:
        return await self._fetch_nodes(
            shop, ids, query=PRODUCT_NODES_QUERY, gid_type="Product", parse=parse_product, kind="product"
        )

    async def _fetch_nodes(
        self,
        shop: str,
        ids: Sequence[str],
        *,
        query: str,
        gid_type: str,
        parse: Callable[[Any], T | None],
        kind: str,
    ) -> NodesResult[T]:
        """Batched `nodes(ids:)`: dedupe, drop malformed ids up front, one request per 250.

        Batches of one shop run sequentially: the shop's bucket is the bottleneck anyway, and
        shops run in parallel at the caller's level.
        """
        unique = list(dict.fromkeys(ids))
        result: NodesResult[T] = NodesResult(nodes={})
        valid: list[str] = []
        for id_ in unique:
            (valid if is_gid(id_, gid_type) else result.invalid).append(id_)
        found: dict[str, T | None] = {}
        for start in range(0, len(valid), MAX_NODES_PER_QUERY):
            await self._fetch_node_batch(
                shop, valid[start : start + MAX_NODES_PER_QUERY], query, parse, kind, found, result
            )
        result.nodes = {id_: found.get(id_) for id_ in ids}
        return result

    async def _fetch_node_batch(
        self,
        shop: str,
        batch: list[str],
        query: str,
        parse: Callable[[Any], T | None],
        kind: str,
        found: dict[str, T | None],
        result: NodesResult[T],
    ) -> None:
        """Fetch one batch; on "invalid id" drop the ids Shopify names, else bisect.

        Bisecting costs about log2(250) ≈ 8 extra requests per bad id, which only happens when
        an id passed the shape check yet Shopify still refuses it. MAX_COST_EXCEEDED (a batch
        dearer than the bucket) is also answered by splitting.
        """
        pending = [batch]
        while pending:
            chunk = pending.pop()
            try:
                answer = await self.graphql_result(
                    shop, query, {"ids": chunk}, estimated_cost=self._estimate_cost(kind, len(chunk))
                )
            except ShopifyInvalidId as exc:
                if len(chunk) == 1:
                    result.invalid.append(chunk[0])
                    continue
                named = quoted_ids(exc) & set(chunk)
                if named:
                    result.invalid.extend(id_ for id_ in chunk if id_ in named)
                    rest = [id_ for id_ in chunk if id_ not in named]
                    if rest:
                        pending.append(rest)
                    continue
                middle = len(chunk) // 2
                pending.extend([chunk[middle:], chunk[:middle]])
                continue
            except ShopifyGraphQLError as exc:
                if exc.code == MAX_COST_EXCEEDED_CODE and len(chunk) > 1:
                    middle = len(chunk) // 2
                    pending.extend([chunk[middle:], chunk[:middle]])
                    continue
                raise
            self._learn_cost(kind, len(chunk), answer.cost)
            nodes = answer.data.get("nodes")
            if not isinstance(nodes, list) or len(nodes) != len(chunk):
                got = len(nodes) if isinstance(nodes, list) else type(nodes).__name__
                raise ShopifyBadResponse(shop, f"nodes: expected {len(chunk)} entries, got {got}")
            failed_positions = failed_node_positions(answer.errors)
            for position, (id_, node) in enumerate(zip(chunk, nodes, strict=True)):
                parsed = parse(node)
                found[id_] = parsed
                if parsed is None and position in failed_positions:
                    result.failed[id_] = failed_positions[position]

    def _estimate_cost(self, kind: str, count: int) -> int:
        return max(1, math.ceil(self._cost_per_id.get(kind, 2.0) * count))

    def _learn_cost(self, kind: str, count: int, cost: QueryCost | None) -> None:
        """Adopt the per-id cost Shopify reported, so estimates track the real schema costs."""
        if cost is not None and cost.requested and count > 0:
            self._cost_per_id[kind] = cost.requested / count

    # ------------------------------------------------------------------ writes

    async def mutate(
        self,
        shop: str,
        mutation: str,
        variables: Mapping[str, Any] | None,
        payload_key: str,
        *,
        estimated_cost: int = _MUTATION_COST,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Run a mutation and return its payload (`data[payload_key]`).

        Raises `ShopifyUserErrors` when `userErrors` is non-empty (HTTP 200 yet nothing
        written). Pass `idempotent=False` for creates, so an ambiguous failure (timeout after
        sending) is not retried into a duplicate.
        """
        answer = await self.graphql_result(
            shop, mutation, variables, estimated_cost=estimated_cost, retry_ambiguous=idempotent
        )
        payload = answer.data.get(payload_key)
        if not isinstance(payload, dict):
            if any(error_code(e) in RETRYABLE_GRAPHQL_CODES for e in answer.errors):
                # Shopify failed on its side at this mutation (INTERNAL_SERVER_ERROR at its path):
                # transient like a 5xx, so the outbox retries it later instead of dead-lettering it.
                raise ShopifyBadResponse(shop, f"mutation {payload_key!r} failed: {messages(answer.errors)}")
            if answer.errors:
                raise graphql_error_for(shop, answer.errors)
            raise ShopifyBadResponse(shop, f"mutation payload {payload_key!r} missing")
        user_errors = payload.get("userErrors") or []
        if user_errors:
            raise ShopifyUserErrors(user_errors, shop=shop, payload_key=payload_key)
        return payload
