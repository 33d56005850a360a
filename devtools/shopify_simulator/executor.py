"""The GraphQL side of the Shopify Admin simulator: a tiny parser and an executor for a fixed subset.

Requests reach this module only after ``validation`` has checked the document and its
variables against Shopify's Admin schema. The parser here reads only as much of a document as the
executor needs: the root fields of the first operation, their aliases and arguments (literals and
``$variables``, including inline lists and objects) and the raw text of each root field's selection
set. Each supported root field is computed as a full object and then projected onto its selection
set (aliases, ``__typename``, inline fragments and fragment spreads by type condition), so a client
gets exactly the keys it asked for; the query cost is derived from the selection text. Parsed
documents are cached, so a benchmark sending the same ``nodes`` query 40 times parses it once.

Metaobject writes of a type with a definition (``product-bundles``) are checked as Shopify checks
them: value types, required fields, unknown and duplicate keys, the publishable capability (DRAFT
unless ``capabilities.publishable.status`` says otherwise); any ``userErrors`` means nothing is
stored. See ``validate_metaobject_fields`` for the codes and ``field`` paths.

Supported root fields. Queries: ``nodes(ids:)`` (Metaobject, Product, ProductVariant and
DiscountAutomaticNode ids), ``node(id:)``, ``metaobject(id:)``, ``metaobjectByHandle(handle:)``,
``metaobjects(type:, first:, after:)`` (``nodes`` + ``pageInfo`` only), ``automaticDiscountNodes(query:,
first:)`` (``nodes`` only; the query understands ``title:'...'``, matched whole and case-insensitively),
``shop``. Mutations:
``metaobjectCreate/Update/Upsert/Delete``, ``discountAutomaticBasicCreate/Update``,
``discountAutomaticDelete``. Any other field of the schema is refused with ``SIMULATOR_UNSUPPORTED``
(a field the schema lacks never gets this far: it is an ``undefinedField`` validation error).

Whole-request errors (invalid ids, too many ids, unknown fields) are raised as ``GraphQLRequestError``
before anything executes, as Shopify validates before it runs or charges a query.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLObjectType,
    InlineFragmentNode,
    SelectionSetNode,
    is_abstract_type,
    parse,
)

from devtools.shopify_simulator.state import (
    DISCOUNT_GID,
    METAOBJECT_DEFINITIONS,
    Discount,
    Metaobject,
    MetaobjectDefinition,
    ShopState,
    SimulatorInputError,
    SimulatorState,
    default_status,
    now_iso,
)
from devtools.shopify_simulator.validation import simulator_schema

MAX_INPUT_SIZE = 250
"""Shopify's maximum length of list arguments such as ``nodes(ids:)``."""

MUTATION_COST = 10

_GID_RE = re.compile(r"^gid://shopify/([A-Za-z][A-Za-z0-9]*)/([A-Za-z0-9_\-.~%]+)(?:\?[^\s#]*)?$")

# -- parsing ------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
      (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
    | (?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\")
    | (?P<string>"(?:[^"\\\n\r]|\\.)*")
    | (?P<spread>\.\.\.)
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    | (?P<punct>[!$&():=@\[\]{|}])
    """,
    re.VERBOSE,
)


class GraphQLSyntaxError(ValueError):
    """The document could not be tokenised or does not have the shape the simulator reads."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Variable:
    """A ``$name`` reference inside an argument value, resolved per request."""

    name: str


@dataclass(frozen=True, slots=True)
class RootField:
    alias: str
    name: str
    args: Mapping[str, Any]
    selection: str


@dataclass(frozen=True, slots=True)
class ParsedOperation:
    kind: str
    fields: tuple[RootField, ...]
    fragments: str
    """Text of the document's fragment definitions, searched together with a selection for costing."""


def _tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, end = 0, len(source)
    match = _TOKEN_RE.match
    while pos < end:
        m = match(source, pos)
        if m is None:
            raise GraphQLSyntaxError(f"Parse error on {source[pos : pos + 10]!r} at offset {pos}")
        kind = m.lastgroup or ""
        if kind != "skip":
            tokens.append(Token(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def peek_is(self, value: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.value == value and tok.kind in ("punct", "name", "spread")

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise GraphQLSyntaxError("Parse error: unexpected end of document")
        self.i += 1
        return tok

    def expect(self, value: str | None = None, kind: str | None = None) -> Token:
        tok = self.take()
        if (value is not None and tok.value != value) or (kind is not None and tok.kind != kind):
            raise GraphQLSyntaxError(f"Parse error on {tok.value!r} at offset {tok.start}")
        return tok

    def skip_balanced(self, open_: str, close: str) -> int:
        """Skip from an opening token to its matching closer; return the closer's end offset."""
        self.expect(open_)
        depth = 1
        while True:
            tok = self.take()
            if tok.kind == "punct":
                if tok.value == open_:
                    depth += 1
                elif tok.value == close:
                    depth -= 1
                    if depth == 0:
                        return tok.end

    def skip_directives(self) -> None:
        while self.peek_is("@"):
            self.take()
            self.expect(kind="name")
            if self.peek_is("("):
                self.skip_balanced("(", ")")

    def parse_document(self) -> ParsedOperation:
        fragments: list[str] = []
        operation: ParsedOperation | None = None
        while self.peek() is not None:
            tok = self.peek()
            assert tok is not None
            if tok.kind == "name" and tok.value == "fragment":
                start = tok.start
                self.take()
                self.expect(kind="name")
                self.expect("on")
                self.expect(kind="name")
                self.skip_directives()
                fragments.append(self.source[start : self.skip_balanced("{", "}")])
            elif tok.value == "{" or tok.value in ("query", "mutation", "subscription"):
                if operation is None:
                    operation = self.parse_operation()
                else:  # later operations are ignored: the simulator runs the first one
                    while not self.peek_is("{"):
                        self.take()
                    self.skip_balanced("{", "}")
            else:
                raise GraphQLSyntaxError(f"Parse error on {tok.value!r} at offset {tok.start}")
        if operation is None:
            raise GraphQLSyntaxError("Parse error: the document has no operation")
        return ParsedOperation(operation.kind, operation.fields, "\n".join(fragments))

    def parse_operation(self) -> ParsedOperation:
        kind = "query"
        if not self.peek_is("{"):
            kind = self.take().value
            tok = self.peek()
            if tok is not None and tok.kind == "name":
                self.take()
            if self.peek_is("("):
                self.skip_balanced("(", ")")
            self.skip_directives()
        self.expect("{")
        return ParsedOperation(kind, tuple(self.parse_root_selection()), "")

    def parse_root_selection(self) -> list[RootField]:
        fields: list[RootField] = []
        while True:
            tok = self.take()
            if tok.value == "}" and tok.kind == "punct":
                return fields
            if tok.kind == "spread":
                if self.peek_is("on"):
                    self.take()
                    self.expect(kind="name")
                elif (nxt := self.peek()) is not None and nxt.kind == "name":
                    self.take()  # a named fragment spread at the root: not supported, ignored
                    self.skip_directives()
                    continue
                self.skip_directives()
                self.expect("{")
                fields.extend(self.parse_root_selection())
                continue
            if tok.kind != "name":
                raise GraphQLSyntaxError(f"Parse error on {tok.value!r} at offset {tok.start}")
            alias = name = tok.value
            if self.peek_is(":"):
                self.take()
                name = self.expect(kind="name").value
            args: dict[str, Any] = {}
            if self.peek_is("("):
                self.take()
                while not self.peek_is(")"):
                    arg = self.expect(kind="name").value
                    self.expect(":")
                    args[arg] = self.parse_value()
                self.take()
            self.skip_directives()
            selection = ""
            nxt = self.peek()
            if nxt is not None and nxt.value == "{" and nxt.kind == "punct":
                selection = self.source[nxt.start : self.skip_balanced("{", "}")]
            fields.append(RootField(alias, name, args, selection))

    def parse_value(self) -> Any:
        tok = self.take()
        if tok.kind == "punct":
            if tok.value == "$":
                return Variable(self.expect(kind="name").value)
            if tok.value == "[":
                items = []
                while not self.peek_is("]"):
                    items.append(self.parse_value())
                self.take()
                return items
            if tok.value == "{":
                obj: dict[str, Any] = {}
                while not self.peek_is("}"):
                    key = self.expect(kind="name").value
                    self.expect(":")
                    obj[key] = self.parse_value()
                self.take()
                return obj
        elif tok.kind == "string":
            try:
                return orjson.loads(tok.value)
            except orjson.JSONDecodeError as exc:
                raise GraphQLSyntaxError(f"Parse error: bad string literal at offset {tok.start}") from exc
        elif tok.kind == "block":
            return tok.value[3:-3].replace('\\"""', '"""').strip()
        elif tok.kind == "number":
            return float(tok.value) if any(c in tok.value for c in ".eE") else int(tok.value)
        elif tok.kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok.value, tok.value)
        raise GraphQLSyntaxError(f"Parse error on {tok.value!r} at offset {tok.start}")


@functools.lru_cache(maxsize=1024)
def parse_operation(query: str) -> ParsedOperation:
    """Parse (and cache) a GraphQL document down to its first operation's root fields."""
    return _Parser(query).parse_document()


def resolve(value: Any, variables: Mapping[str, Any]) -> Any:
    """Substitute ``$variables`` in an argument value; a missing variable is null, as in GraphQL."""
    if isinstance(value, Variable):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value


# -- errors -------------------------------------------------------------------------------------


class GraphQLRequestError(Exception):
    """An error that fails the whole request; ``body`` is the JSON answer (HTTP 200, like Shopify)."""

    def __init__(self, errors: list[dict[str, Any]], *, data_null: bool = False) -> None:
        super().__init__(errors[0]["message"] if errors else "GraphQL error")
        self.errors = errors
        self.data_null = data_null

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errors": self.errors}
        if self.data_null:
            body["data"] = None
        return body


def invalid_id_error(value: Any) -> dict[str, Any]:
    shown = value if isinstance(value, str) else orjson.dumps(value).decode()
    return {"message": f"Invalid global id '{shown}'", "extensions": {"code": "argumentLiteralsIncompatible"}}


def gid_type(value: Any) -> str | None:
    """The resource type of a well-formed Shopify GID, or None when the id is malformed.

    Only URI-safe characters are accepted in the id segment: ``gid://shopify/Metaobject/my-handle``
    is well formed (and simply not found), ``gid://shopify/Metaobject/[object Object]`` is not.
    """
    if not isinstance(value, str):
        return None
    m = _GID_RE.match(value)
    return m.group(1) if m else None


#: `DiscountErrorCode` has no NOT_FOUND: an unknown discount id is reported as INVALID on `id`.
DISCOUNT_MISSING_CODE = "INVALID"


def _user_error(field: list[str], message: str, code: str) -> dict[str, Any]:
    return {"field": field, "message": message, "code": code}


# -- execution ----------------------------------------------------------------------------------


@dataclass(slots=True)
class PreparedField:
    """A root field with resolved arguments, validated and costed, ready to execute."""

    alias: str
    name: str
    args: dict[str, Any]
    selection: str
    requested_cost: int


@dataclass(slots=True)
class Cost:
    per_metaobject: int
    per_product: int

    @classmethod
    def of(cls, selection: str) -> Cost:
        """Per-object cost from the selection text: object 1, ``fields`` list 1, product image/variants 1."""
        mo = 1 + (1 if re.search(r"\bfields\b", selection) else 0)
        product = 1 + (1 if "featuredImage" in selection else 0) + (1 if "variants" in selection else 0)
        return cls(mo, product)

    @property
    def per_node(self) -> int:
        # Shopify costs a fragment union by its most expensive member.
        return max(self.per_metaobject, self.per_product)


class Executor:
    """Validates, costs and runs the supported root fields against one shop's state."""

    QUERY_FIELDS = frozenset(
        {
            "nodes",
            "node",
            "metaobject",
            "metaobjectByHandle",
            "metaobjects",
            "automaticDiscountNodes",
            "shop",
            "__typename",
        }
    )
    MUTATION_FIELDS = frozenset(
        {
            "metaobjectCreate",
            "metaobjectUpdate",
            "metaobjectUpsert",
            "metaobjectDelete",
            "discountAutomaticBasicCreate",
            "discountAutomaticBasicUpdate",
            "discountAutomaticDelete",
        }
    )

    def __init__(self, state: SimulatorState, shop: ShopState) -> None:
        self.state = state
        self.shop = shop

    # -- preparation ---------------------------------------------------------------------------

    def prepare(self, op: ParsedOperation, variables: Mapping[str, Any]) -> list[PreparedField]:
        """Resolve arguments and validate every root field; raise one error listing all problems."""
        errors: list[dict[str, Any]] = []
        prepared: list[PreparedField] = []
        data_null = False
        root_type = "Mutation" if op.kind == "mutation" else "QueryRoot"
        allowed = self.MUTATION_FIELDS if op.kind == "mutation" else self.QUERY_FIELDS
        for f in op.fields:
            if f.name not in allowed:
                errors.append(
                    {
                        "message": f"Field '{f.name}' on type '{root_type}' is not implemented by the Shopify "
                        "simulator",
                        "path": [op.kind, f.alias],
                        "extensions": {"code": "SIMULATOR_UNSUPPORTED", "typeName": root_type, "fieldName": f.name},
                    }
                )
                continue
            args = {k: resolve(v, variables) for k, v in f.args.items()}
            selection = f"{f.selection}\n{op.fragments}" if op.fragments else f.selection
            problems = self._validate(f.name, args)
            if problems:
                errors.extend(problems)
                # Shopify adds `"data": null` to argument errors, but not to input-size errors.
                data_null = data_null or any(
                    p["extensions"]["code"] == "argumentLiteralsIncompatible" for p in problems
                )
                continue
            cost = self._requested(f.name, args, selection)
            prepared.append(PreparedField(f.alias, f.name, args, selection, cost))
        if errors:
            raise GraphQLRequestError(errors, data_null=data_null)
        return prepared

    def _validate(self, name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        def missing(arg: str, expected: str) -> dict[str, Any]:
            return {
                "message": f"Argument '{arg}' on Field '{name}' has an invalid value (null). "
                f"Expected type '{expected}'.",
                "extensions": {"code": "argumentLiteralsIncompatible", "argumentName": arg},
            }

        if name == "nodes":
            ids = args.get("ids")
            if not isinstance(ids, list):
                return [missing("ids", "[ID!]!")]
            if len(ids) > MAX_INPUT_SIZE:
                return [
                    {
                        "message": f"The input array size of {len(ids)} is greater than the maximum "
                        f"allowed of {MAX_INPUT_SIZE}.",
                        "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
                    }
                ]
            return [invalid_id_error(i) for i in ids if gid_type(i) is None]
        if name in (
            "node",
            "metaobject",
            "metaobjectUpdate",
            "metaobjectDelete",
            "discountAutomaticBasicUpdate",
            "discountAutomaticDelete",
        ):
            gid = args.get("id")
            if gid is None:
                return [missing("id", "ID!")]
            if gid_type(gid) is None:
                return [invalid_id_error(gid)]
        if name in ("metaobjectByHandle", "metaobjectUpsert"):
            handle = args.get("handle")
            if (
                not isinstance(handle, Mapping)
                or not isinstance(handle.get("type"), str)
                or not isinstance(handle.get("handle"), str)
            ):
                return [missing("handle", "MetaobjectHandleInput!")]
        if name == "metaobjects" and not isinstance(args.get("type"), str):
            return [missing("type", "String!")]
        if name in ("metaobjectCreate", "metaobjectUpdate", "metaobjectUpsert") and not isinstance(
            args.get("metaobject"), Mapping
        ):
            return [missing("metaobject", "MetaobjectInput!")]
        if name in ("discountAutomaticBasicCreate", "discountAutomaticBasicUpdate") and not isinstance(
            args.get("automaticBasicDiscount"), Mapping
        ):
            return [missing("automaticBasicDiscount", "DiscountAutomaticBasicInput!")]
        return []

    def _requested(self, name: str, args: dict[str, Any], selection: str) -> int:
        if name in self.MUTATION_FIELDS:
            return MUTATION_COST
        cost = Cost.of(selection)
        if name == "nodes":
            return len(args["ids"]) * cost.per_node
        if name == "node":
            return cost.per_node
        if name in ("metaobject", "metaobjectByHandle"):
            return cost.per_metaobject
        if name == "metaobjects":
            return 2 + _first(args) * cost.per_metaobject
        if name == "automaticDiscountNodes":
            return 2 + _first(args)
        return 1 if name == "shop" else 0

    # -- running -------------------------------------------------------------------------------

    def run(self, fields: list[PreparedField]) -> tuple[dict[str, Any], int]:
        """Execute prepared fields; return ``data`` and the actual cost (what was really returned)."""
        data: dict[str, Any] = {}
        actual = 0
        for f in fields:
            handler: Callable[[PreparedField], tuple[Any, int]] = getattr(self, f"_do_{f.name.lstrip('_')}")
            value, cost = handler(f)
            data[f.alias] = project(value, f.selection)
            actual += cost
        return data, actual

    def _node(self, gid: Any, cost: Cost) -> tuple[dict[str, Any] | None, int]:
        kind = gid_type(gid)
        shop = self.shop
        if kind == "Metaobject":
            mo = shop.metaobjects.get(gid)
            return (mo.to_graphql(), cost.per_metaobject) if mo else (None, 0)
        if kind == "Product":
            product = shop.products.get(gid)
            return (product.to_graphql(), cost.per_product) if product else (None, 0)
        if kind == "ProductVariant":
            pid = shop.variants.get(gid)
            if pid is None:
                return None, 0
            p = shop.products[pid]
            variant = {
                **p.variant_graphql(),
                "title": "Default Title",
                "product": {"id": p.id, "title": p.title},
            }
            return variant, 2
        if kind == "DiscountAutomaticNode":
            d = shop.discounts.get(gid)
            return (_discount_node(d), 1) if d else (None, 0)
        return None, 0

    def _do_nodes(self, f: PreparedField) -> tuple[Any, int]:
        cost = Cost.of(f.selection)
        out: list[dict[str, Any] | None] = []
        actual = 0
        node = self._node
        for gid in f.args["ids"]:
            value, c = node(gid, cost)
            out.append(value)
            actual += c
        return out, actual

    def _do_node(self, f: PreparedField) -> tuple[Any, int]:
        value, c = self._node(f.args["id"], Cost.of(f.selection))
        return value, max(c, 1)

    def _do_metaobject(self, f: PreparedField) -> tuple[Any, int]:
        mo = self.shop.metaobjects.get(f.args["id"]) if gid_type(f.args["id"]) == "Metaobject" else None
        return (mo.to_graphql(), f.requested_cost) if mo else (None, 1)

    def _do_metaobjectByHandle(self, f: PreparedField) -> tuple[Any, int]:
        h = f.args["handle"]
        mo = self.shop.metaobject_by_handle(h["type"], h["handle"])
        return (mo.to_graphql(), f.requested_cost) if mo else (None, 1)

    def _do_metaobjects(self, f: PreparedField) -> tuple[Any, int]:
        type_ = f.args["type"]
        first = _first(f.args)
        after = f.args.get("after")
        matching = [mo for mo in self.shop.metaobjects.values() if mo.type == type_]
        start = int(after) if isinstance(after, str) and after.isdigit() else 0
        page = matching[start : start + first]
        end = start + len(page)
        return (
            {
                "nodes": [mo.to_graphql() for mo in page],
                "pageInfo": {"hasNextPage": end < len(matching), "endCursor": str(end) if page else None},
            },
            2 + len(page) * Cost.of(f.selection).per_metaobject,
        )

    def _do_automaticDiscountNodes(self, f: PreparedField) -> tuple[Any, int]:
        wanted = _title_filter(f.args.get("query"))
        matching = [
            d for d in self.shop.discounts.values() if wanted is None or d.title.casefold() == wanted.casefold()
        ][: _first(f.args)]
        nodes = [_discount_node(d) for d in matching]
        return {"nodes": nodes, "pageInfo": {"hasNextPage": False, "endCursor": None}}, 2 + len(nodes)

    def _do_shop(self, f: PreparedField) -> tuple[Any, int]:
        shop = self.shop
        return {"name": shop.name, "myshopifyDomain": shop.name, "plan": {"displayName": shop.plan}}, 1

    def _do_typename(self, f: PreparedField) -> tuple[Any, int]:
        return ("Mutation" if f.name in self.MUTATION_FIELDS else "QueryRoot"), 0

    # -- metaobject mutations ------------------------------------------------------------------

    def _check_input(
        self, type_: str, inp: Mapping[str, Any], *, creating: bool, status: str | None
    ) -> tuple[dict[str, str | None], str | None, list[dict[str, Any]]]:
        """Fields, resulting status and userErrors of a metaobject input, checked against its definition."""
        raw = inp.get("fields") or []
        ok = isinstance(raw, list) and all(
            isinstance(i, Mapping) and isinstance(i.get("key"), str) and isinstance(i.get("value"), str) for i in raw
        )
        if not ok:  # unreachable through a schema-validated request; kept for direct callers
            message = "Fields must be a list of {key, value} strings"
            return {}, status, [_user_error(["metaobject", "fields"], message, "INVALID_VALUE")]
        entries = [(str(i["key"]), str(i["value"])) for i in raw]
        definition = METAOBJECT_DEFINITIONS.get(type_)
        errors = validate_metaobject_fields(definition, entries, creating=creating) if definition else []
        status, capability_errors = _publishable_status(definition, inp.get("capabilities"), status)
        return dict(entries), status, errors + capability_errors

    def _write_metaobject(
        self, gid: str | None, type_: str, handle: str | None, fields: dict[str, str | None], status: str | None
    ) -> tuple[Metaobject | None, list[dict[str, Any]]]:
        try:
            return self.state.put_metaobject(self.shop, type_, handle, fields, gid, status), []
        except SimulatorInputError as exc:
            code = "TAKEN" if "taken" in str(exc) else "INVALID"
            field = ["metaobject", "handle"] if code == "TAKEN" else ["metaobject", "type"]
            message = "Value is already assigned to another metaobject" if code == "TAKEN" else str(exc)
            return None, [_user_error(field, message, code)]

    def _mutation_result(self, mo: Metaobject | None, errors: list[dict[str, Any]]) -> tuple[Any, int]:
        node = mo.to_graphql() if mo and not errors else None
        return {"metaobject": node, "userErrors": errors}, MUTATION_COST

    def _create(self, type_: str, handle: str | None, inp: Mapping[str, Any]) -> tuple[Any, int]:
        fields, status, errors = self._check_input(type_, inp, creating=True, status=default_status(type_))
        if errors:
            return self._mutation_result(None, errors)
        return self._mutation_result(*self._write_metaobject(None, type_, handle, fields, status))

    def _do_metaobjectCreate(self, f: PreparedField) -> tuple[Any, int]:
        inp = f.args["metaobject"]
        type_ = inp.get("type")
        if not isinstance(type_, str) or not type_:
            blank = _user_error(["metaobject", "type"], "Type can't be blank", "BLANK")
            return self._mutation_result(None, [blank])
        handle = inp.get("handle")
        return self._create(type_, handle and str(handle), inp)

    def _update(self, mo: Metaobject, inp: Mapping[str, Any]) -> tuple[Any, int]:
        fields, status, errors = self._check_input(mo.type, inp, creating=False, status=mo.status)
        if errors:
            return self._mutation_result(None, errors)
        handle = inp.get("handle") or mo.handle
        merged = {**mo.fields, **fields}
        result, errors = self._write_metaobject(mo.id, mo.type, str(handle), merged, status)
        if result is not None:
            result.updated_at = now_iso()
        return self._mutation_result(result, errors)

    def _do_metaobjectUpdate(self, f: PreparedField) -> tuple[Any, int]:
        mo = self.shop.metaobjects.get(f.args["id"])
        if mo is None:
            return self._mutation_result(None, [_user_error(["id"], "Record not found", "RECORD_NOT_FOUND")])
        return self._update(mo, f.args["metaobject"])

    def _do_metaobjectUpsert(self, f: PreparedField) -> tuple[Any, int]:
        h = f.args["handle"]
        inp = f.args["metaobject"]
        mo = self.shop.metaobject_by_handle(h["type"], h["handle"])
        if mo is not None:
            return self._update(mo, inp)
        handle = inp.get("handle") or h["handle"]
        return self._create(h["type"], str(handle), inp)

    def _do_metaobjectDelete(self, f: PreparedField) -> tuple[Any, int]:
        gid = f.args["id"]
        if self.state.remove_metaobject(self.shop, gid) is None:
            errors = [_user_error(["id"], "Record not found", "RECORD_NOT_FOUND")]
            return {"deletedId": None, "userErrors": errors}, MUTATION_COST
        return {"deletedId": gid, "userErrors": []}, MUTATION_COST

    # -- discount mutations --------------------------------------------------------------------

    def _discount_errors(self, raw: Mapping[str, Any], *, creating: bool) -> list[dict[str, Any]]:
        errors = []
        if creating or "title" in raw:
            title = raw.get("title")
            if not isinstance(title, str) or not title.strip():
                field = ["automaticBasicDiscount", "title"]
                errors.append(_user_error(field, "Title can't be blank", "BLANK"))
        pct = _percentage(raw)
        if pct is not None and not 0.0 <= pct <= 1.0:
            errors.append(
                _user_error(
                    ["automaticBasicDiscount", "customerGets", "value", "percentage"],
                    "Value must be between 0.0 and 1.0",
                    "VALUE_OUTSIDE_RANGE",
                )
            )
        return errors

    def _do_discountAutomaticBasicCreate(self, f: PreparedField) -> tuple[Any, int]:
        raw = dict(f.args["automaticBasicDiscount"])
        errors = self._discount_errors(raw, creating=True)
        if errors:
            return {"automaticDiscountNode": None, "userErrors": errors}, MUTATION_COST
        discount = Discount(
            id=self.state.new_discount_id(),
            title=str(raw["title"]),
            percentage=_percentage(raw),
            product_ids=_product_ids(raw),
            raw=raw,
        )
        self.shop.discounts[discount.id] = discount
        return {"automaticDiscountNode": _discount_node(discount), "userErrors": []}, MUTATION_COST

    def _do_discountAutomaticBasicUpdate(self, f: PreparedField) -> tuple[Any, int]:
        discount = self.shop.discounts.get(f.args["id"])
        if discount is None:
            return {
                "automaticDiscountNode": None,
                "userErrors": [_user_error(["id"], "Discount does not exist", DISCOUNT_MISSING_CODE)],
            }, MUTATION_COST
        patch = dict(f.args["automaticBasicDiscount"])
        errors = self._discount_errors(patch, creating=False)
        if errors:
            return {"automaticDiscountNode": None, "userErrors": errors}, MUTATION_COST
        raw = {**discount.raw, **patch}
        discount.raw = raw
        discount.title = str(raw.get("title", discount.title))
        discount.percentage = _percentage(raw)
        discount.product_ids = _product_ids(raw)
        discount.updated_at = now_iso()
        return {"automaticDiscountNode": _discount_node(discount), "userErrors": []}, MUTATION_COST

    def _do_discountAutomaticDelete(self, f: PreparedField) -> tuple[Any, int]:
        gid = f.args["id"]
        if self.shop.discounts.pop(gid, None) is None:
            return {
                "deletedAutomaticDiscountId": None,
                "userErrors": [_user_error(["id"], "Discount does not exist", DISCOUNT_MISSING_CODE)],
            }, MUTATION_COST
        return {"deletedAutomaticDiscountId": gid, "userErrors": []}, MUTATION_COST


# -- metaobject definitions ----------------------------------------------------------------------

_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_PRODUCT_GID_RE = re.compile(r"^gid://shopify/Product/\d+$")
_INTEGER_LIMIT = 9_007_199_254_740_991
"""Shopify's ``number_integer`` range is ±(2^53 - 1)."""


def _field_error(
    field: list[str], message: str, code: str, key: str | None, element_index: int | None = None
) -> dict[str, Any]:
    """A ``MetaobjectUserError``: ``elementKey`` names the field definition, ``elementIndex`` a list element."""
    return {"field": field, "message": message, "code": code, "elementKey": key, "elementIndex": element_index}


def validate_metaobject_fields(
    definition: MetaobjectDefinition, entries: list[tuple[str, str]], *, creating: bool
) -> list[dict[str, Any]]:
    """The ``userErrors`` Shopify answers for ``fields`` written to a metaobject of ``definition``.

    ``field`` paths (what Shopify's ``MetaobjectUserError.field`` holds, with list indices as strings):
    ``["metaobject", "fields", "<i>"]`` for an input entry (unknown key ``UNDEFINED_OBJECT_FIELD``,
    repeated key ``DUPLICATE_FIELD_INPUT``, blank required value ``BLANK``, value not of the field's
    type ``INVALID_VALUE`` with ``elementIndex`` set for a bad list element); ``["metaobject",
    "fields"]`` for a required key missing from a create (``OBJECT_FIELD_REQUIRED``). ``elementKey``
    always names the field's key. An update only checks the entries it sends: missing keys keep
    their stored value.
    """
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, (key, value) in enumerate(entries):
        path = ["metaobject", "fields", str(i)]
        if key in seen:
            errors.append(_field_error(path, f'Field "{key}" duplicates other inputs', "DUPLICATE_FIELD_INPUT", key))
            continue
        seen.add(key)
        spec = definition.fields.get(key)
        if spec is None:
            message = f'Field definition "{key}" does not exist for type "{definition.type}"'
            errors.append(_field_error(path, message, "UNDEFINED_OBJECT_FIELD", key))
            continue
        if _blank(spec.type, value):
            if spec.required:
                errors.append(_field_error(path, f"{spec.name} can't be blank", "BLANK", key))
            continue
        problem = _value_problem(spec.type, value)
        if problem is not None:
            message, element_index = problem
            errors.append(_field_error(path, message, "INVALID_VALUE", key, element_index))
    if creating:
        for key, spec in definition.fields.items():
            if spec.required and key not in seen:
                message = f"{spec.name} can't be blank"
                errors.append(_field_error(["metaobject", "fields"], message, "OBJECT_FIELD_REQUIRED", key))
    return errors


def _blank(field_type: str, value: str) -> bool:
    if not value.strip():
        return True
    if field_type.startswith("list."):
        try:
            return orjson.loads(value) == []
        except orjson.JSONDecodeError:
            return False
    return False


def _value_problem(field_type: str, value: str) -> tuple[str, int | None] | None:
    """Why ``value`` is not a valid ``field_type`` value (message, failing list index), or None."""
    if field_type in ("single_line_text_field", "multi_line_text_field"):
        if field_type == "single_line_text_field" and ("\n" in value or "\r" in value):
            return "Value must be a single line of text.", None
        return None
    if field_type == "number_integer":
        if not _INTEGER_RE.match(value):
            return "Value must be an integer.", None
        if abs(int(value)) > _INTEGER_LIMIT:
            return f"Value must be between -{_INTEGER_LIMIT} and {_INTEGER_LIMIT}.", None
        return None
    if field_type == "date_time":
        ok = _DATE_TIME_RE.match(value) is not None
        if ok:
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                ok = False
        return None if ok else ("Value must be in ISO 8601 date and time format (YYYY-MM-DDTHH:MM:SS).", None)
    if field_type == "list.product_reference":
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError:
            return "Value must be a JSON array of product references.", None
        if not isinstance(items, list):
            return "Value must be a JSON array of product references.", None
        for index, item in enumerate(items):
            if not isinstance(item, str) or not _PRODUCT_GID_RE.match(item):
                return "Value must be a product reference (gid://shopify/Product/<id>).", index
        return None
    return None


def _publishable_status(
    definition: MetaobjectDefinition | None, capabilities: Any, status: str | None
) -> tuple[str | None, list[dict[str, Any]]]:
    """The status after applying ``capabilities.publishable``; CAPABILITY_NOT_ENABLED when not publishable."""
    publishable = capabilities.get("publishable") if isinstance(capabilities, Mapping) else None
    if not isinstance(publishable, Mapping):
        return status, []
    if definition is not None and not definition.publishable:
        path = ["metaobject", "capabilities", "publishable"]
        message = "Publishable capability is not enabled on this definition"
        return status, [_field_error(path, message, "CAPABILITY_NOT_ENABLED", None)]
    return str(publishable["status"]), []


# -- projection ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2048)
def _selection_ast(selection: str) -> tuple[SelectionSetNode, dict[str, FragmentDefinitionNode]]:
    """A root field's selection text (plus the document's fragments) as a graphql-core AST."""
    document = parse("query " + selection)
    operation = document.definitions[0]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    selection_set = operation.selection_set  # type: ignore[attr-defined]
    return selection_set, fragments


def project(value: Any, selection: str) -> Any:
    """Keep only what the selection asks for, under its aliases, as a GraphQL server answers."""
    if not selection.strip():
        return value
    selection_set, fragments = _selection_ast(selection)
    return _project(value, selection_set, fragments)


def _project(value: Any, selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> Any:
    if isinstance(value, list):
        return [_project(item, selection_set, fragments) for item in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    _collect(value, selection_set, fragments, out)
    return out


def _collect(
    value: Mapping[str, Any],
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    out: dict[str, Any],
) -> None:
    typename = value.get("__typename")
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            key = (node.alias or node.name).value
            name = node.name.value
            raw = typename if name == "__typename" else value.get(name)
            projected = _project(raw, node.selection_set, fragments) if node.selection_set else raw
            out[key] = _merge(out[key], projected) if key in out else projected
        elif isinstance(node, InlineFragmentNode):
            condition = node.type_condition.name.value if node.type_condition else None
            if _applies(condition, typename):
                _collect(value, node.selection_set, fragments, out)
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments.get(node.name.value)
            if fragment is not None and _applies(fragment.type_condition.name.value, typename):
                _collect(value, fragment.selection_set, fragments, out)


def _merge(left: Any, right: Any) -> Any:
    if isinstance(left, dict) and isinstance(right, dict):
        merged = dict(left)
        for key, value in right.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [_merge(a, b) for a, b in zip(left, right, strict=True)]
    return right


@functools.lru_cache(maxsize=512)
def _applies(condition: str | None, typename: str | None) -> bool:
    """Whether a fragment on ``condition`` applies to an object of type ``typename``."""
    if condition is None or typename is None or condition == typename:
        return True
    schema = simulator_schema()
    abstract = schema.get_type(condition)
    concrete = schema.get_type(typename)
    if not is_abstract_type(abstract) or not isinstance(concrete, GraphQLObjectType):
        return False
    return schema.is_sub_type(cast(GraphQLAbstractType, abstract), concrete)


def _first(args: Mapping[str, Any]) -> int:
    first = args.get("first")
    return max(0, min(int(first), MAX_INPUT_SIZE)) if isinstance(first, int) else 50


_TITLE_QUERY = re.compile(r"""title:(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(\S+))""")


def _title_filter(query: Any) -> str | None:
    """The title of a ``title:'...'`` search (quotes escaped with a backslash); None: no title filter."""
    match = _TITLE_QUERY.search(query) if isinstance(query, str) else None
    if match is None:
        return None
    raw = next(g for g in match.groups() if g is not None)
    return re.sub(r"\\(.)", r"\1", raw)


def _discount_node(d: Discount) -> dict[str, Any]:
    value = {"__typename": "DiscountPercentage", "percentage": d.percentage} if d.percentage is not None else None
    return {
        "__typename": "DiscountAutomaticNode",
        "id": d.id,
        "automaticDiscount": {
            "__typename": "DiscountAutomaticBasic",
            "title": d.title,
            "status": "ACTIVE",
            "startsAt": d.raw.get("startsAt"),
            "customerGets": {"value": value},
        },
    }


def _percentage(raw: Mapping[str, Any]) -> float | None:
    """``customerGets.value.percentage`` (a fraction 0..1, as Shopify takes it), if present."""
    gets = raw.get("customerGets")
    value = gets.get("value") if isinstance(gets, Mapping) else None
    pct = value.get("percentage") if isinstance(value, Mapping) else None
    return float(pct) if isinstance(pct, int | float) and not isinstance(pct, bool) else None


def _product_ids(raw: Mapping[str, Any]) -> list[str]:
    """Products (and variants) the discount applies to, from ``customerGets.items.products``."""
    gets = raw.get("customerGets")
    items = gets.get("items") if isinstance(gets, Mapping) else None
    products = items.get("products") if isinstance(items, Mapping) else None
    if not isinstance(products, Mapping):
        return []
    ids: list[str] = []
    for key in ("productsToAdd", "productVariantsToAdd"):
        values = products.get(key)
        if isinstance(values, list):
            ids.extend(str(v) for v in values)
    return ids


__all__ = [
    "DISCOUNT_GID",
    "MAX_INPUT_SIZE",
    "MUTATION_COST",
    "Executor",
    "GraphQLRequestError",
    "GraphQLSyntaxError",
    "ParsedOperation",
    "PreparedField",
    "RootField",
    "Variable",
    "gid_type",
    "invalid_id_error",
    "parse_operation",
    "project",
    "resolve",
    "validate_metaobject_fields",
]
