"""`openapi.yaml` at the root is exactly what the app generates, and documents what api.md fixes.

Beyond equality, the document must be *useful*: every operation shows an example of its success
response and of its request body, every error is an RFC 9457 problem with an example, the auth and
validation errors of every protected operation are there, and every example is a valid instance of
what it illustrates (checked against the published schema, and against the pydantic model behind it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pydantic import TypeAdapter

from app.api.openapi_docs import Problem, ValidationProblem, api_routes
from app.core.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE
from app.core.security import SHOP_DOMAIN_RE
from app.main import create_app
from app.openapi_export import render

ROOT = Path(__file__).resolve().parents[2]
JSON = "application/json"
METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}
PROTECTED_PREFIXES = ("/admin/", "/api/v2/", "/proxy/")
#: Path parameters that accept any value (an unknown flag name is a 404): no 422 can come from them.
OPAQUE_PATH_PARAMS = {"name"}
#: Error responses that are deliberately not problems: /readyz answers its readiness report with 503.
NON_PROBLEM_ERRORS = {("get", "/readyz", "503")}
GID_RE = re.compile(r"^gid://shopify/[A-Za-z]+/[0-9]+$")
#: Operations whose examples are being added by the change that owns them (app/api/cutover.py). Strict
#: xfail: once their examples exist these cases XPASS and fail, so delete the entries then.
PENDING_EXAMPLES: set[str] = set()


@cache
def _app() -> Any:
    return create_app()


def _doc() -> dict[str, Any]:
    document: dict[str, Any] = _app().openapi()
    return document


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in _doc()["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def _op_ids() -> list[str]:
    return [f"{method.upper()} {path}" for path, method, _ in _operations()]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = _doc()["components"]["schemas"][name]
    return schema


def _media_examples(media: dict[str, Any]) -> list[Any]:
    """The examples of one media type object: `example`, or every value of `examples`."""
    found = [media["example"]] if "example" in media else []
    found += [entry["value"] for entry in media.get("examples", {}).values()]
    return found


def _schema_examples(schema: dict[str, Any]) -> list[Any]:
    """Examples carried by a (referenced) schema, looking into `anyOf`/`oneOf` branches (Optional bodies)."""
    schema = _resolve(schema)
    found = list(schema.get("examples", [])) + ([schema["example"]] if "example" in schema else [])
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        found += _schema_examples(branch)
    return found


def _example_cases(*, with_body: bool = False) -> list[Any]:
    pending = pytest.mark.xfail(strict=True, reason="examples pending in app/api/cutover.py")
    return [
        pytest.param(
            path, method, op, id=f"{method.upper()} {path}", marks=[pending] if path in PENDING_EXAMPLES else []
        )
        for path, method, op in _operations()
        if "requestBody" in op or not with_body
    ]


def _takes_input(path: str, op: dict[str, Any]) -> bool:
    if "requestBody" in op or path.startswith(("/api/v2/", "/proxy/")):  # shop / product id always checked
        return True
    return any(p["in"] != "path" or p["name"] not in OPAQUE_PATH_PARAMS for p in op.get("parameters", []))


# --------------------------------------------------------------------------------------------
# A light JSON Schema check (the subset pydantic emits): enough to catch a wrong or missing field
# --------------------------------------------------------------------------------------------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _problems(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    schema = _resolve(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [_problems(branch, value, where) for branch in schema[key]]
            if all(branches):
                return [f"{where}: matches no branch of {key} ({min(branches, key=len)[0]})"]
    errors = [e for branch in schema.get("allOf", []) for e in _problems(branch, value, where)]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_TYPES[name](value) for name in names):
            return [*errors, f"{where}: {value!r} is not of type {types}"]
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                errors.append(f"{where}: {value!r} is not a date-time")
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: length of {value!r} out of bounds")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            errors.append(f"{where}: {value} out of [{schema.get('minimum')}, {schema.get('maximum')}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name!r} missing")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors += _problems(properties[name], item, f"{where}.{name}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors += _problems(extra, item, f"{where}.{name}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for index, item in enumerate(value):
                errors += _problems(schema["items"], item, f"{where}[{index}]")
    return errors


def _walk(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _walk(child)


# --------------------------------------------------------------------------------------------
# The committed file and the contract's paths
# --------------------------------------------------------------------------------------------


def test_committed_openapi_equals_generated() -> None:
    committed = (ROOT / "openapi.yaml").read_text()
    assert yaml.safe_load(committed) == yaml.safe_load(render()), "run `make openapi` and commit openapi.yaml"


def test_contract_paths_are_documented() -> None:
    paths = _doc()["paths"]
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v2/shops/{shop}/bundles",
        "/proxy/bundles-for-product",
        "/proxy/v2/bundles",
        "/proxy/ai-bundles-for-product",
        "/admin/flags",
        "/admin/flags/{name}",
        "/admin/flags/{name}/evaluate",
        "/admin/flags/audit",
        "/admin/migration-stage",
        "/admin/migrations/jobs",
        "/admin/migrations/jobs/{job_id}",
        "/admin/migrations/validation",
        "/admin/shadow-mismatches",
    ]:
        assert any(p == path or p.replace("{bundle_id}", "{bundleId}") == path for p in paths), path


def test_every_operation_documents_errors() -> None:
    for path, method, op in _operations():
        if path in ("/healthz",):
            continue
        codes = set(op.get("responses", {}))
        assert codes - {"200", "201", "202", "204"}, f"{method.upper()} {path} documents no error response"


# --------------------------------------------------------------------------------------------
# Examples everywhere
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "op"), _example_cases())
def test_success_response_has_an_example(path: str, method: str, op: dict[str, Any]) -> None:
    successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
    assert successes, "no success response documented"
    for code, response in successes.items():
        if code == "204":
            assert not response.get("content"), "204 has no body"
            continue
        assert response.get("content"), f"{code} documents no body"
        for media_type, media in response["content"].items():
            assert _media_examples(media), f"{code} {media_type} has no example"


@pytest.mark.parametrize(("path", "method", "op"), _example_cases(with_body=True))
def test_request_body_has_an_example(path: str, method: str, op: dict[str, Any]) -> None:
    for media_type, media in op["requestBody"]["content"].items():
        examples = _media_examples(media) + _schema_examples(media.get("schema", {}))
        assert examples, f"request body {media_type} has no example (give the model json_schema_extra examples)"


def test_examples_match_their_schemas() -> None:
    """Every response, request and problem example against the published schema it illustrates."""
    checked = 0
    for path, method, op in _operations():
        where = f"{method.upper()} {path}"
        for code, response in op["responses"].items():
            for media_type, media in response.get("content", {}).items():
                for example in _media_examples(media):
                    if "schema" not in media:
                        assert media_type.startswith("text/") and isinstance(example, str) and example, where
                        continue
                    assert not _problems(media["schema"], example), (where, code, _problems(media["schema"], example))
                    checked += 1
        for media in op.get("requestBody", {}).get("content", {}).values():
            for example in _media_examples(media) + _schema_examples(media.get("schema", {})):
                assert not _problems(media["schema"], example), (where, "body", _problems(media["schema"], example))
                checked += 1
    assert checked > 100


def test_examples_are_valid_instances_of_their_models() -> None:
    """Stronger than the schema check: each example parses as the pydantic model behind it (JSON mode),
    so an example can neither drift from the code nor lose a null on its way into the document."""
    document = _doc()
    checked = 0
    for route in api_routes(_app()):
        for method in route.methods:
            op = document["paths"][route.path_format][method.lower()]
            where = f"{method} {route.path_format}"
            for code, spec in route.responses.items():
                model = spec.get("model")
                if model is None and code == (route.status_code or 200):
                    model = route.response_model
                media = op["responses"][str(code)].get("content", {}).get(JSON)
                if model is None or media is None:
                    continue
                for example in _media_examples(media):
                    TypeAdapter(model).validate_json(orjson.dumps(example))
                    checked += 1
            if route.body_field is not None:
                adapter = TypeAdapter(route.body_field.field_info.annotation)
                for media in op["requestBody"]["content"].values():
                    for example in _media_examples(media) + _schema_examples(media["schema"]):
                        try:
                            adapter.validate_json(orjson.dumps(example))
                        except ValueError as exc:
                            pytest.fail(f"{where}: request example does not validate: {exc}")
                        checked += 1
    assert checked > 30


def test_examples_use_realistic_shopify_values() -> None:
    """Shop domains and GIDs in examples look like the real ones (api.md's shop rule, Shopify's GID form)."""
    for path, method, op in _operations():
        media_objects = [m for r in op["responses"].values() for m in r.get("content", {}).values()]
        media_objects += list(op.get("requestBody", {}).get("content", {}).values())
        examples = [e for m in media_objects for e in _media_examples(m) + _schema_examples(m.get("schema", {}))]
        nodes = [node for example in examples for node in _walk(example)]
        keys = [key for node in nodes if isinstance(node, dict) for key in node]  # shopOverrides: shop → bool
        for value in nodes + keys:
            if isinstance(value, str) and value.endswith(".myshopify.com"):
                assert SHOP_DOMAIN_RE.fullmatch(value), f"{method.upper()} {path}: bad shop {value!r}"
            if isinstance(value, str) and value.startswith("gid://"):
                assert GID_RE.fullmatch(value), f"{method.upper()} {path}: bad GID {value!r}"


# --------------------------------------------------------------------------------------------
# Errors: problem+json, with the auth and validation errors of every protected operation
# --------------------------------------------------------------------------------------------


def test_problem_schemas_are_published() -> None:
    schemas = _doc()["components"]["schemas"]
    assert {"Problem", "ValidationProblem", "ProblemFieldError"} <= set(schemas)
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    assert "errors" in schemas["ValidationProblem"]["required"]
    assert set(schemas["ProblemFieldError"]["required"]) == {"field", "message"}
    assert "HTTPValidationError" not in schemas, "FastAPI's own 422 shape is not what the service answers"


@pytest.mark.parametrize(("path", "method", "op"), list(_operations()), ids=_op_ids())
def test_error_responses_are_problems_with_examples(path: str, method: str, op: dict[str, Any]) -> None:
    for code, response in op["responses"].items():
        if code.startswith(("1", "2", "3")) or (method, path, code) in NON_PROBLEM_ERRORS:
            continue
        content = response.get("content", {})
        assert set(content) == {PROBLEM_JSON}, f"{code} is not documented as {PROBLEM_JSON}: {set(content)}"
        media = content[PROBLEM_JSON]
        expected = "ValidationProblem" if code == "422" else "Problem"
        assert media.get("schema") == {"$ref": f"#/components/schemas/{expected}"}, code
        examples = _media_examples(media)
        assert examples, f"{code} has no example"
        status = 500 if code == "default" else int(code)
        for example in examples:
            (ValidationProblem if status == 422 else Problem).model_validate(example)
            assert example["status"] == status, (code, example)
            assert example["type"] == "about:blank" or example["type"].startswith(PROBLEM_TYPE_BASE), example


@pytest.mark.parametrize(
    ("path", "method", "op"),
    [(p, m, o) for p, m, o in _operations() if p.startswith(PROTECTED_PREFIXES)],
    ids=[f"{m.upper()} {p}" for p, m, o in _operations() if p.startswith(PROTECTED_PREFIXES)],
)
def test_protected_operations_document_401_and_422(path: str, method: str, op: dict[str, Any]) -> None:
    responses = op["responses"]
    assert PROBLEM_JSON in responses.get("401", {}).get("content", {}), "401 (credentials) not documented"
    if _takes_input(path, op):
        assert PROBLEM_JSON in responses.get("422", {}).get("content", {}), "takes input but documents no 422"
        for example in _media_examples(responses["422"]["content"][PROBLEM_JSON]):
            assert all(e["field"].split(".")[0] in {"body", "query", "path", "header"} for e in example["errors"])
    else:
        assert "422" not in responses, "no input, so no 422 can happen"


@pytest.mark.parametrize(
    ("path", "method", "op"),
    [(p, m, o) for p, m, o in _operations() if "requestBody" in o],
    ids=[f"{m.upper()} {p}" for p, m, o in _operations() if "requestBody" in o],
)
def test_operations_with_a_body_document_400_413_and_422(path: str, method: str, op: dict[str, Any]) -> None:
    for code in ("400", "413", "422"):
        assert code in op["responses"], f"takes a JSON body but does not document {code}"


def test_shop_scoped_operations_document_403() -> None:
    for path, method, op in _operations():
        if path.startswith("/api/v2/shops/{shop}/"):
            assert "403" in op["responses"], f"{method.upper()} {path}: session token of another shop"
