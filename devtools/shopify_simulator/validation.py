"""Validation of every simulator request against Shopify's published Admin schema, answered as Shopify does.

Shopify runs graphql-ruby: a document that does not parse, names a field or argument the schema lacks,
or is sent with variables that do not fit their declared types is refused as a whole with HTTP 200
and ``{"errors": [...]}`` (no ``data``), before anything executes or is charged. This module checks a
request with graphql-core against the 2025-01 Admin schema (``devtools.shopify_schema``; the schema
is the same whatever API version the URL names) and renders the errors in graphql-ruby's shapes, as
seen in Shopify answers:

- parse error: ``Parse error on "}" (RCURLY) at [1, 10]`` with ``locations`` and no ``extensions``
  (``Unexpected end of document`` at the end of the text);
- static validation: graphql-ruby's messages, ``locations``, ``path`` (``["query Name", "field",
  ...]``) and ``extensions.code`` such as ``undefinedField``, ``argumentNotAccepted``,
  ``missingRequiredArguments``, ``selectionMismatch``, ``variableNotUsed``, ``variableMismatch``,
  ``argumentLiteralsIncompatible``;
- variables: ``Variable $input of type ProductInput! was provided invalid value for variants (Field
  is not defined on ProductInput)`` with ``extensions: {code: INVALID_VARIABLE, value, problems:
  [{path, explanation}]}``. Global ids are checked when coerced, as Shopify does: a malformed one
  is ``Invalid global id `...```.

A graphql-core rule with no graphql-ruby counterpart known to the simulator keeps graphql-core's
message under the code ``validationFailed``.

Parsing and static validation are cached per document text (clients send a handful of documents
many times); variables are checked per request.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
    ValueNode,
    VariableDefinitionNode,
    get_location,
    parse,
    print_ast,
    type_from_ast,
    validate,
)
from graphql.language import Lexer
from graphql.pyutils import Undefined

from devtools.shopify_schema import admin_schema

JsonError = dict[str, Any]

_GID_RE = re.compile(r"^gid://shopify/([A-Za-z][A-Za-z0-9]*)/([A-Za-z0-9_\-.~%]+)(?:\?[^\s#]*)?$")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_STRING_SCALARS = frozenset({"String", "DateTime", "Date", "URL", "HTML", "FormattedString", "Color"})

_TOKEN_NAMES = {
    TokenKind.BANG: "BANG",
    TokenKind.DOLLAR: "VAR_SIGN",
    TokenKind.AMP: "AMP",
    TokenKind.PAREN_L: "LPAREN",
    TokenKind.PAREN_R: "RPAREN",
    TokenKind.SPREAD: "ELLIPSIS",
    TokenKind.COLON: "COLON",
    TokenKind.EQUALS: "EQUALS",
    TokenKind.AT: "DIR_SIGN",
    TokenKind.BRACKET_L: "LBRACKET",
    TokenKind.BRACKET_R: "RBRACKET",
    TokenKind.BRACE_L: "LCURLY",
    TokenKind.PIPE: "PIPE",
    TokenKind.BRACE_R: "RCURLY",
    TokenKind.INT: "INT",
    TokenKind.FLOAT: "FLOAT",
    TokenKind.STRING: "STRING",
    TokenKind.BLOCK_STRING: "STRING",
}
_KEYWORDS = frozenset(
    {"query", "mutation", "subscription", "fragment", "on", "true", "false", "null", "schema", "type", "input"}
)


def is_global_id(value: Any) -> bool:
    """A well-formed Shopify GID (the id segment may be non-numeric: a handle stored as an id is
    well formed and simply not found; ``[object Object]`` is not)."""
    return isinstance(value, str) and _GID_RE.match(value) is not None


# -- documents ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedDocument:
    """A parsed document and its static errors (empty when the document is valid)."""

    document: DocumentNode | None
    errors: tuple[JsonError, ...]

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        if self.document is None:
            return None
        operations = [d for d in self.document.definitions if isinstance(d, OperationDefinitionNode)]
        if name:
            return next((op for op in operations if op.name and op.name.value == name), None)
        return operations[0] if operations else None


@functools.lru_cache(maxsize=1024)
def check_document(query: str) -> CheckedDocument:
    """Parse and statically validate ``query`` against the Admin schema (cached per text)."""
    try:
        document = parse(Source(query))
    except GraphQLSyntaxError as exc:
        return CheckedDocument(None, (_parse_error(query, exc),))
    schema = admin_schema()
    errors = validate(schema, document)
    if not errors:
        return CheckedDocument(document, ())
    index = _NodeIndex(document)
    rendered: list[JsonError] = []
    for error in errors:
        shaped = _shape_validation_error(error, index)
        if shaped is not None and shaped not in rendered:
            rendered.append(shaped)
    return CheckedDocument(document, tuple(rendered))


def check_request(query: str, variables: Mapping[str, Any], operation_name: str | None = None) -> list[JsonError]:
    """All errors Shopify would answer for this request instead of executing it; empty when valid."""
    checked = check_document(query)
    if checked.errors:
        return list(checked.errors)
    operation = checked.operation(operation_name)
    if operation is None:
        return [{"message": f'No operation named "{operation_name}"', "extensions": {"code": "operationNotFound"}}]
    return check_variables(operation, variables, query)


def _parse_error(query: str, exc: GraphQLSyntaxError) -> JsonError:
    position = next(iter(exc.positions), len(query)) if exc.positions else len(query)
    token = _token_at(query, position)
    if token is None:
        return {"message": "Unexpected end of document", "locations": []}
    text, kind = token
    location = get_location(Source(query), position)
    return {
        "message": f"Parse error on {_ruby_str(text)} ({kind}) at [{location.line}, {location.column}]",
        "locations": [{"line": location.line, "column": location.column}],
    }


def _token_at(query: str, position: int) -> tuple[str, str] | None:
    """The token starting at ``position`` as graphql-ruby names it; None at the end of the document."""
    lexer = Lexer(Source(query))
    try:
        token = lexer.advance()
        while token.kind != TokenKind.EOF and token.start < position:
            token = lexer.advance()
    except GraphQLSyntaxError:
        char = query[position : position + 1]
        return (char, "UNKNOWN_CHAR") if char else None
    if token.kind == TokenKind.EOF:
        return None
    if token.kind == TokenKind.NAME:
        value = token.value or ""
        return value, value.upper() if value in _KEYWORDS else "IDENTIFIER"
    text = token.value if token.value is not None else query[token.start : token.end]
    return text, _TOKEN_NAMES.get(token.kind, token.kind.name)


class _NodeIndex:
    """Where each node of a document sits, for graphql-ruby's ``path`` and argument-level messages."""

    def __init__(self, document: DocumentNode) -> None:
        self.paths: dict[int, list[str]] = {}
        self.values: dict[int, tuple[FieldNode, str, ValueNode]] = {}
        self.operations: dict[int, str] = {}
        # Per field: the operation kind and the field names / type conditions leading to it.
        self.chains: dict[int, tuple[str, tuple[tuple[str, str], ...]]] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                kind = definition.operation.value
                key = f"{kind} {definition.name.value}" if definition.name else kind
                self.paths[id(definition)] = [key]
                self.operations[id(definition)] = definition.name.value if definition.name else f"anonymous {kind}"
                for var in definition.variable_definitions or ():
                    self.paths[id(var)] = [key]
                    self.operations[id(var)] = self.operations[id(definition)]
                self._selections(definition.selection_set, [key], (kind, ()))
            elif isinstance(definition, FragmentDefinitionNode):
                key = f"fragment {definition.name.value}"
                self.paths[id(definition)] = [key]
                start = (("t", definition.type_condition.name.value),)
                self._selections(definition.selection_set, [key], ("query", start))

    def _selections(
        self,
        selection_set: SelectionSetNode | None,
        prefix: list[str],
        chain: tuple[str, tuple[tuple[str, str], ...]],
    ) -> None:
        if selection_set is None:
            return
        self.paths[id(selection_set)] = prefix
        kind, steps = chain
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                path = [*prefix, (selection.alias or selection.name).value]
                self.paths[id(selection)] = path
                here = (kind, (*steps, ("f", selection.name.value)))
                self.chains[id(selection)] = here
                for argument in selection.arguments or ():
                    self.paths[id(argument)] = [*path, argument.name.value]
                    self._values(argument.value, selection, argument.name.value, argument.value)
                for directive in selection.directives or ():
                    self.paths[id(directive)] = path
                self._selections(selection.selection_set, path, here)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                path = [*prefix, f"... on {condition.name.value}" if condition else "..."]
                self.paths[id(selection)] = path
                inner = (kind, (*steps, ("t", condition.name.value))) if condition else chain
                self._selections(selection.selection_set, path, inner)
            elif isinstance(selection, FragmentSpreadNode):
                self.paths[id(selection)] = [*prefix, f"... {selection.name.value}"]
                self.paths[id(selection.name)] = self.paths[id(selection)]

    def _values(self, value: ValueNode, field: FieldNode, argument: str, top: ValueNode) -> None:
        self.values[id(value)] = (field, argument, top)
        if isinstance(value, ListValueNode):
            for item in value.values:
                self._values(item, field, argument, top)
        elif isinstance(value, ObjectValueNode):
            for object_field in value.fields:
                self.values[id(object_field)] = (field, argument, top)
                self._values(object_field.value, field, argument, top)

    def path(self, node: Node | None) -> list[str] | None:
        return self.paths.get(id(node)) if node is not None else None


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], GraphQLError, _NodeIndex], JsonError | None]]


def _undefined_field(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    field, type_name = m.group(1), m.group(2)
    return {
        "message": f"Field '{field}' doesn't exist on type '{type_name}'",
        "extensions": {"code": "undefinedField", "typeName": type_name, "fieldName": field},
    }


def _argument_not_accepted(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    argument, owner = m.group(1), m.group(2).rsplit(".", 1)[-1]
    return {
        "message": f"Field '{owner}' doesn't accept argument '{argument}'",
        "extensions": {"code": "argumentNotAccepted", "name": owner, "typeName": "Field", "argumentName": argument},
    }


def _missing_arguments(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    owner, argument = m.group(1).rsplit(".", 1)[-1], m.group(2)
    return {
        "message": f"Field '{owner}' is missing required arguments: {argument}",
        "extensions": {"code": "missingRequiredArguments", "className": "Field", "name": owner, "arguments": argument},
    }


def _needs_selections(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    field, type_name = m.group(1), m.group(2)
    return {
        "message": f"Field must have selections (field '{field}' returns {type_name} but has no selections. "
        f"Did you mean '{field} {{ ... }}'?)",
        "extensions": {"code": "selectionMismatch", "nodeName": f"field '{field}'"},
    }


def _scalar_selections(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    field, type_name = m.group(1), m.group(2).rstrip("!")
    selection = error.nodes[0] if error.nodes else None
    names = (
        [s.name.value for s in selection.selections if isinstance(s, FieldNode)]
        if isinstance(selection, SelectionSetNode)
        else []
    )
    return {
        "message": f"Selections can't be made on scalars (field '{field}' returns {type_name} but has selections "
        f"[{', '.join(names)}])",
        "extensions": {"code": "selectionMismatch", "nodeName": f"field '{field}'"},
    }


def _variable_not_used(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    variable = m.group(1)
    node = error.nodes[0] if error.nodes else None
    operation = index.operations.get(id(node), "anonymous query") if node is not None else "anonymous query"
    return {
        "message": f"Variable ${variable} is declared by {operation} but not used",
        "extensions": {"code": "variableNotUsed", "variableName": variable},
    }


def _variable_not_defined(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    variable, operation = m.group(1), m.group(2) or "anonymous query"
    return {
        "message": f"Variable ${variable} is used by {operation} but not declared",
        "extensions": {"code": "variableNotDefined", "variableName": variable},
    }


def _unknown_type(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    type_name = m.group(1)
    return {
        "message": f"No such type {type_name}, so it can't be a fragment condition or variable type",
        "extensions": {"code": "undefinedType", "typeName": type_name},
    }


def _variable_mismatch(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    variable, given, expected = m.group(1), m.group(2), m.group(3)
    kind = "Nullability mismatch" if given.rstrip("!") == expected.rstrip("!") else "Type mismatch"
    usage = next((index.values[id(n)] for n in error.nodes or () if id(n) in index.values), None)
    argument = f"argument {usage[1]}" if usage else "argument"
    return {
        "message": f"{kind} on variable ${variable} and {argument} ({given} / {expected})",
        "extensions": {"code": "variableMismatch", "variableName": variable, "typeName": given},
    }


def _non_input_variable(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    variable, type_name = m.group(1), m.group(2)
    return {
        "message": f"{type_name} isn't a valid input type (on ${variable})",
        "extensions": {"code": "variableRequiresValidType", "typeName": type_name, "variableName": variable},
    }


def _cannot_spread(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    parent, fragment_type = m.group(1), m.group(2)
    return {
        "message": f"Fragment on {fragment_type} can't be spread inside {parent}",
        "extensions": {"code": "cannotSpreadFragment", "typeName": fragment_type, "parentName": parent},
    }


def _unknown_directive(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    return {
        "message": f"Directive @{m.group(1)} is not defined",
        "extensions": {"code": "undefinedDirective", "directiveName": m.group(1)},
    }


def _unknown_fragment(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    return {
        "message": f"Fragment {m.group(1)} was used, but not defined",
        "extensions": {"code": "useAndDefineFragment", "fragmentName": m.group(1)},
    }


def _unused_fragment(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    return {
        "message": f"Fragment {m.group(1)} was defined, but not used",
        "extensions": {"code": "useAndDefineFragment", "fragmentName": m.group(1)},
    }


def _duplicate_operation(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    return {
        "message": f'Operation name "{m.group(1)}" must be unique',
        "extensions": {"code": "uniquelyNamedOperations", "operationName": m.group(1)},
    }


def _field_conflict(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError:
    return {
        "message": f"Field '{m.group(1)}' has a field conflict: {m.group(2)}",
        "extensions": {"code": "fieldConflict", "fieldName": m.group(1)},
    }


def _literal_incompatible(m: re.Match[str], error: GraphQLError, index: _NodeIndex) -> JsonError | None:
    node = error.nodes[0] if error.nodes else None
    owner = index.values.get(id(node)) if node is not None else None
    if owner is None:
        return None
    field, argument, top = owner
    expected = _argument_type(field, argument, index)
    return {
        "message": f"Argument '{argument}' on Field '{field.name.value}' has an invalid value ({print_ast(top)}). "
        f"Expected type '{expected}'.",
        "extensions": {"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": argument},
    }


def _argument_type(field: FieldNode, argument: str, index: _NodeIndex) -> str:
    """The declared type of ``argument``, found by walking the field's chain from the root type."""
    schema = admin_schema()
    kind, steps = index.chains.get(id(field), ("query", ()))
    parent: Any = schema.mutation_type if kind == "mutation" else schema.query_type
    field_def: Any = None
    for step, name in steps:
        if step == "t":
            parent = schema.get_type(name)
            continue
        field_def = getattr(parent, "fields", {}).get(name)
        if field_def is None:
            return "?"
        parent = _named(field_def.type)
    if field_def is None or argument not in field_def.args:
        return "?"
    return str(field_def.args[argument].type)


def _named(type_: Any) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


_RULES: tuple[_Rule, ...] = (
    (re.compile(r"^Cannot query field '([^']+)' on type '([^']+)'\."), _undefined_field),
    (re.compile(r"^Unknown argument '([^']+)' on field '([^']+)'\."), _argument_not_accepted),
    (re.compile(r"^Argument '([^'(]+)\(([^:]+):\)' of type '[^']+' is required"), _missing_arguments),
    (re.compile(r"^Field '([^']+)' of type '([^']+)' must have a selection of subfields"), _needs_selections),
    (re.compile(r"^Field '([^']+)' must not have a selection since type '([^']+)'"), _scalar_selections),
    (re.compile(r"^Variable '\$([^']+)' is never used"), _variable_not_used),
    (re.compile(r"^Variable '\$([^']+)' is not defined(?: by operation '([^']+)')?"), _variable_not_defined),
    (re.compile(r"^Unknown type '([^']+)'\."), _unknown_type),
    (
        re.compile(r"^Variable '\$([^']+)' of type '([^']+)' used in position expecting type '([^']+)'"),
        _variable_mismatch,
    ),
    (re.compile(r"^Variable '\$([^']+)' cannot be non-input type '([^']+)'"), _non_input_variable),
    (
        re.compile(
            r"^Fragment (?:'[^']+' )?cannot be spread here as objects of type '([^']+)' can never be of type "
            r"'([^']+)'"
        ),
        _cannot_spread,
    ),
    (re.compile(r"^Unknown directive '@([^']+)'"), _unknown_directive),
    (re.compile(r"^Unknown fragment '([^']+)'"), _unknown_fragment),
    (re.compile(r"^Fragment '([^']+)' is never used"), _unused_fragment),
    (re.compile(r"^There can be only one operation named '([^']+)'"), _duplicate_operation),
    (re.compile(r"^Fields '([^']+)' conflict because (.*?)\.? Use different aliases"), _field_conflict),
    (
        re.compile(r"^(Expected value of type|.* cannot represent|Enum '|Value '|Int cannot|Float cannot)"),
        _literal_incompatible,
    ),
)


def _shape_validation_error(error: GraphQLError, index: _NodeIndex) -> JsonError | None:
    shaped: JsonError | None = None
    for pattern, render in _RULES:
        match = pattern.match(error.message)
        if match:
            shaped = render(match, error, index)
            break
    if shaped is None:
        shaped = {"message": error.message, "extensions": {"code": "validationFailed"}}
    node = error.nodes[0] if error.nodes else None
    out: JsonError = {"message": shaped["message"]}
    if error.locations:
        first = error.locations[0]
        out["locations"] = [{"line": first.line, "column": first.column}]
    path = index.path(node)
    if path is None and node is not None and id(node) in index.values:
        field, argument, _ = index.values[id(node)]
        field_path = index.path(field)
        path = [*field_path, argument] if field_path else None
    if path is not None:
        out["path"] = path
    out["extensions"] = shaped["extensions"]
    return out


# -- variables ------------------------------------------------------------------------------------


def check_variables(operation: OperationDefinitionNode, variables: Mapping[str, Any], query: str) -> list[JsonError]:
    """Coerce each declared variable as graphql-ruby does; one INVALID_VARIABLE error per bad variable."""
    schema = admin_schema()
    errors: list[JsonError] = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(schema, definition.type)
        if type_ is None:  # reported by static validation
            continue
        if name not in variables:
            if definition.default_value is not None or not isinstance(type_, GraphQLNonNull):
                continue
            value: Any = None
        else:
            value = variables[name]
        problems: list[tuple[list[str | int], str]] = []
        _coerce(value, type_, [], problems)  # type: ignore[arg-type]
        if problems:
            errors.append(_variable_error(definition, name, str(type_), value, problems, query))
    return errors


def _variable_error(
    definition: VariableDefinitionNode,
    name: str,
    type_name: str,
    value: Any,
    problems: list[tuple[list[str | int], str]],
    query: str,
) -> JsonError:
    message = f"Variable ${name} of type {type_name} was provided invalid value"
    located = [f"{'.'.join(str(p) for p in path)} ({explanation})" for path, explanation in problems if path]
    if located:
        message += " for " + ", ".join(located)
    error: JsonError = {"message": message}
    if definition.loc is not None:
        location = get_location(Source(query), definition.loc.start)
        error["locations"] = [{"line": location.line, "column": location.column}]
    error["extensions"] = {
        "code": "INVALID_VARIABLE",
        "value": value,
        "problems": [{"path": path, "explanation": explanation} for path, explanation in problems],
    }
    return error


def _coerce(
    value: Any, type_: GraphQLInputType, path: list[str | int], problems: list[tuple[list[str | int], str]]
) -> None:
    if isinstance(type_, GraphQLNonNull):
        if value is None:
            problems.append((path, "Expected value to not be null"))
            return
        _coerce(value, type_.of_type, path, problems)
        return
    if value is None:
        return
    if isinstance(type_, GraphQLList):
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            _coerce(item, type_.of_type, [*path, i] if isinstance(value, list) else path, problems)
        return
    if isinstance(type_, GraphQLInputObjectType):
        if not isinstance(value, Mapping):
            problems.append((path, f"Expected {_ruby_inspect(value)} to be a key-value object."))
            return
        fields = type_.fields
        for key in value:
            if key not in fields:
                problems.append(([*path, key], f"Field is not defined on {type_.name}"))
        for key, field in fields.items():
            if key in value:
                _coerce(value[key], field.type, [*path, key], problems)
            elif isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined:
                problems.append(([*path, key], "Expected value to not be null"))
        return
    if isinstance(type_, GraphQLEnumType):
        if not isinstance(value, str) or value not in type_.values:
            problems.append((path, f"Expected {_ruby_inspect(value)} to be one of: {', '.join(type_.values)}"))
        return
    if isinstance(type_, GraphQLScalarType):
        explanation = _scalar_problem(value, type_.name)
        if explanation:
            problems.append((path, explanation))


def _scalar_problem(value: Any, name: str) -> str | None:
    could_not = f"Could not coerce value {_ruby_inspect(value)} to {name}"
    if name == "ID":
        if isinstance(value, bool) or not isinstance(value, str | int):
            return could_not
        return None if is_global_id(value) else f"Invalid global id `{value}`"
    if name == "Int":
        ok = isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value <= _INT_MAX
        return None if ok else could_not
    if name == "Float":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else could_not
    if name == "Boolean":
        return None if isinstance(value, bool) else could_not
    if name in _STRING_SCALARS:
        return None if isinstance(value, str) else could_not
    return None  # other custom scalars (JSON, Decimal, Money, ...) accept any JSON value here


def _ruby_inspect(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, str):
        return _ruby_str(value)
    return orjson.dumps(value).decode()


def _ruby_str(text: str) -> str:
    return orjson.dumps(text).decode()


def simulator_schema() -> GraphQLSchema:
    """The schema requests are validated against (exposed for the projection of answers)."""
    return admin_schema()


__all__ = ["CheckedDocument", "check_document", "check_request", "check_variables", "is_global_id", "simulator_schema"]
