"""OpenAPI documentation of responses, spelt once: RFC 9457 problems and success examples.

Routers say *which* responses an operation can give (`responses=` on the decorator); this module says
*what they look like*, so the shapes and examples stay the same everywhere:

* `problem_responses(401, 404, 422)`: each status as `application/problem+json`, with the `Problem`
  schema (`ValidationProblem` for 422: `errors[]` with each field path) and a realistic example.
* `problem(404, "No such job", noSuchJob=problem_example(404, "No migration job c0a1..."))`: one status
  said more precisely by the endpoint (its own description and named examples).
* `ADMIN_ERRORS`, `SHOP_ERRORS`, `PROXY_ERRORS`, `BODY_ERRORS`, ...: the sets that repeat.
* `example_response(example, 201, headers=...)`: the example (and headers) of a JSON (or text) response,
  in practice the success response. Request bodies carry their examples on their pydantic model
  (`model_config = ConfigDict(json_schema_extra={"examples": [...]})`).
* `install(app)`: adds the problem schemas to `components.schemas` (FastAPI only collects the models
  routes return, and no route returns a problem: the error handlers do).

Merge the pieces with `{**a, **b}`: a later entry for the same status replaces an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from app.core.errors import (
    PROBLEM_JSON,
    PROBLEM_TYPE_BASE,
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    NotReady,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "ADMIN_AUTH",
    "ADMIN_ERRORS",
    "BODY_ERRORS",
    "DATABASE_UNAVAILABLE",
    "DB_ERRORS",
    "FLAGS_NOT_READY",
    "INVALID_CURSOR",
    "INVALID_LIMIT",
    "INVALID_SHOP",
    "PAGINATION_ERRORS",
    "PROXY_ERRORS",
    "SHOPIFY_ERROR",
    "SHOPIFY_UNAVAILABLE",
    "SHOP_ERRORS",
    "SHOP_NOT_CONNECTED",
    "UNEXPECTED_ERROR",
    "Problem",
    "ProblemFieldError",
    "Responses",
    "ValidationProblem",
    "api_routes",
    "example_response",
    "install",
    "problem",
    "problem_example",
    "problem_responses",
]

JSON = "application/json"
Responses = dict[int | str, dict[str, Any]]


# --------------------------------------------------------------------------------------------
# The problem shape (what app.core.errors.problem_response writes)
# --------------------------------------------------------------------------------------------


class ProblemFieldError(BaseModel):
    """One invalid input of a 422."""

    field: str = Field(
        description="Path of the input: `body.components.0.quantity`, `query.cursor`, `path.shop`.",
        examples=["body.components.0.quantity"],
    )
    message: str = Field(description="What is wrong with it.")
    type: str | SkipJsonSchema[None] = Field(
        default=None, description="The schema rule that failed (`greater_than_equal`, ...), when one did."
    )


class Problem(BaseModel):
    """An error (RFC 9457). Extension members carry machine-readable details where an endpoint has
    them: `reason` (a stable code, e.g. on Shopify failures), `retryable`, `slug`, `conflictingJobId`,
    `archivedTables`, `userErrors`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description=f"`{PROBLEM_TYPE_BASE}<slug>`, or `about:blank` for an unexpected error.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What happened in this occurrence, for a human.")


class ValidationProblem(Problem):
    """A 422: `errors` names every invalid input."""

    errors: list[ProblemFieldError] = Field(min_length=1)


_PROBLEM_MODELS: tuple[type[BaseModel], ...] = (ProblemFieldError, Problem, ValidationProblem)
_SCHEMA_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _SCHEMA_REF.format(model=model.__name__)}


# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------

#: (title, type slug) per status, as the service's error classes define them.
_KINDS: dict[int, tuple[str, str]] = {
    cls.status: (cls.title, cls.type_slug)
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        ValidationFailed,
        NotReady,
    )
}
_KINDS[400] = ("Malformed JSON", "bad-json")  # what a client gets for an unparsable body
_KINDS[500] = ("Internal error", "about:blank")
_KINDS[502] = ("Shopify error", "shopify-error")


def problem_example(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    errors: list[dict[str, str]] | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """A problem body exactly as `app.core.errors.problem_response` writes it."""
    default_title, default_slug = _KINDS.get(status, (DomainError.title, DomainError.type_slug))
    slug = slug or default_slug
    body: dict[str, Any] = {
        "type": slug if slug == "about:blank" else PROBLEM_TYPE_BASE + slug,
        "title": title or default_title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extensions)
    return body


SHOPIFY_UNAVAILABLE = problem_example(
    503,
    "Shopify did not answer; the legacy store cannot be read right now. Retry later.",
    title="Shopify unavailable",
    slug="shopify-unavailable",
    reason="shopify_unavailable",
)
SHOPIFY_ERROR = problem_example(
    502, "Shopify refused the request needed to read the legacy bundle.", reason="shopify_bad_response"
)
#: Shopify refused because of the shop's state (`reason`: shop_unauthorized, shop_frozen, shop_locked,
#: shop_not_found): a 409, since nothing upstream is broken and a retry cannot help.
SHOP_NOT_CONNECTED = problem_example(
    409,
    "Shopify refused the request needed to read the legacy bundle.",
    title="Shop not connected",
    slug="shop-not-connected",
    reason="shop_unauthorized",
)
DATABASE_UNAVAILABLE = problem_example(
    503, "The database is unavailable; nothing was changed. Retry the request.", retryable=True
)
FLAGS_NOT_READY = problem_example(503, "Feature flags are not loaded yet.")
INVALID_LIMIT = problem_example(
    422,
    "The request has invalid fields.",
    errors=[
        {"field": "query.limit", "message": "Input should be less than or equal to 200", "type": "less_than_equal"}
    ],
)
INVALID_CURSOR = problem_example(
    422, "Invalid cursor.", errors=[{"field": "query.cursor", "message": "not a cursor this endpoint issued"}]
)
INVALID_SHOP = problem_example(
    422,
    "Invalid shop domain.",
    errors=[{"field": "path.shop", "message": "must match ^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$"}],
)

_DEFAULTS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Malformed JSON body", problem_example(400, "The request body is not valid JSON.")),
    401: ("Missing or invalid credentials", problem_example(401, "Missing bearer token.")),
    403: (
        "Valid session token, but for another shop",
        problem_example(403, "The session token belongs to another shop."),
    ),
    404: (
        "Unknown resource (also another shop's)",
        problem_example(404, "The resource does not exist, or belongs to another shop."),
    ),
    409: ("Conflict with the current state", problem_example(409, "slug taken", slug="summer-set")),
    412: (
        "`If-Match` does not match the current ETag",
        problem_example(412, "The bundle changed since you read it (If-Match does not match the ETag)."),
    ),
    413: ("Body over 1 MiB", problem_example(413, "The body exceeds 1048576 bytes.")),
    422: ("Validation failed; `errors[]` names each invalid field", INVALID_LIMIT),
    500: ("Unexpected error (logged)", problem_example(500, "An unexpected error occurred; it has been logged.")),
    502: ("Shopify refused the request; `reason` says why", SHOPIFY_ERROR),
    503: ("Not ready, or a dependency is unavailable; retry", DATABASE_UNAVAILABLE),
}


# --------------------------------------------------------------------------------------------
# Response builders
# --------------------------------------------------------------------------------------------


def _summary(body: Mapping[str, Any]) -> str:
    """What Swagger UI lists in its example picker: the first invalid field, else the detail's first sentence."""
    if body.get("errors"):
        first = body["errors"][0]
        return f"{first['field']}: {first['message']}"
    return str(body["detail"]).split(". ")[0].split("; ")[0].rstrip(".")


def problem(status: int, description: str | None = None, **examples: Mapping[str, Any]) -> Responses:
    """`{status: ...}`: one documented error. Named `examples` (problem bodies) replace the default one."""
    default_description, default_example = _DEFAULTS.get(status, ("Error", problem_example(status, "Error.")))
    media: dict[str, Any] = {"schema": _ref(ValidationProblem if status == 422 else Problem)}
    if not examples:
        media["example"] = default_example
    elif len(examples) == 1:
        media["example"] = dict(next(iter(examples.values())))
    else:
        media["examples"] = {name: {"summary": _summary(body), "value": dict(body)} for name, body in examples.items()}
    return {status: {"description": description or default_description, "content": {PROBLEM_JSON: media}}}


def problem_responses(*statuses: int) -> Responses:
    """Each status with its standard description and example (see `problem` to be more specific)."""
    out: Responses = {}
    for status in statuses:
        out.update(problem(status))
    return out


def example_response(
    example: Any,
    status: int = 200,
    description: str | None = None,
    *,
    headers: Mapping[str, Any] | None = None,
    model: Any = None,
    media_type: str = JSON,
) -> Responses:
    """`{status: ...}`: a non-problem response's example, plus its headers, and a schema `model` where
    FastAPI cannot infer one (a route returning a prebuilt `Response`, or a second JSON status)."""
    entry: dict[str, Any] = {"content": {media_type: {"example": example}}}
    if description:
        entry["description"] = description
    if headers:
        entry["headers"] = dict(headers)
    if model is not None:
        entry["model"] = model
    return {status: entry}


#: Every router (`APIRouter(responses=UNEXPECTED_ERROR)`): anything undocumented is still a problem; an
#: unexpected failure is a logged 500. Declaring it also keeps FastAPI from inventing its own 422 shape.
UNEXPECTED_ERROR: Responses = {
    "default": problem(500, "Any other error, still a problem+json (an unexpected failure is a logged 500)")[500]
}
#: `/admin/*` with input (query, path or body): the internal token and validation.
ADMIN_ERRORS: Responses = problem_responses(401, 422)
#: `/admin/*` without input: only the token can be wrong.
ADMIN_AUTH: Responses = problem_responses(401)
#: `/api/v2/shops/{shop}/*`: internal or session token, the shop's own, a valid shop domain.
SHOP_ERRORS: Responses = {
    **problem_responses(401, 403),
    **problem(422, "Invalid shop domain (or another input)", invalidShop=INVALID_SHOP),
}
#: `/proxy/*`: app proxy signature, then the product id.
PROXY_ERRORS: Responses = {
    **problem(
        401,
        "Missing, invalid or stale app proxy signature",
        staleSignature=problem_example(401, "Invalid app proxy signature: stale timestamp"),
    ),
    **problem(
        422,
        "Missing or invalid product id",
        invalidProductId=problem_example(
            422,
            "Invalid product id.",
            errors=[
                {"field": "query.product_id", "message": "must be a numeric product id or gid://shopify/Product/<id>"}
            ],
        ),
    ),
}
#: Cursor-paginated lists: `limit` out of 1-200, or a cursor this endpoint did not issue.
PAGINATION_ERRORS: Responses = problem(
    422, "Invalid `limit` or `cursor` (or another input)", invalidLimit=INVALID_LIMIT, invalidCursor=INVALID_CURSOR
)
#: Operations whose database access maps a lost database to a retryable 503.
DB_ERRORS: Responses = problem(503, "Database unavailable; retry", databaseUnavailable=DATABASE_UNAVAILABLE)
#: Any operation with a JSON body: unparsable, or too large.
BODY_ERRORS: Responses = problem_responses(400, 413)


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


def problem_schemas() -> dict[str, Any]:
    """`components.schemas` entries of the problem models."""
    _, schema = models_json_schema([(m, "serialization") for m in _PROBLEM_MODELS], ref_template=_SCHEMA_REF)
    defs: dict[str, Any] = schema["$defs"]
    return defs


def install(app: FastAPI) -> None:
    """Make `app.openapi()` publish the problem schemas the responses above refer to, and the response
    examples exactly as written (see `restore_example_nulls`). FastAPI regenerates the document when
    routes change; each new document is completed once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        components = document.setdefault("components", {})
        if Problem.__name__ not in components.get("schemas", {}):
            components["schemas"] = dict(sorted({**components.get("schemas", {}), **problem_schemas()}.items()))
            restore_example_nulls(app, document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's API routes as OpenAPI sees them (routes of included routers, with their context)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = contexts(app.routes) if contexts is not None else app.routes
    for route in routes:
        if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema:
            yield route


def restore_example_nulls(app: FastAPI, document: dict[str, Any]) -> None:
    """FastAPI drops every `null` inside examples when it serialises the document (fastapi#5559), so a
    nullable required field (`envOverride: null`) would vanish from a response example. Put each route's
    response examples back as declared. Request examples (model `json_schema_extra`) are not restored:
    keep nulls out of them (the OpenAPI test checks that every request example still validates)."""
    for route in api_routes(app):
        operations = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            responses = operations.get(method.lower(), {}).get("responses", {})
            for status, declared in route.responses.items():
                documented = responses.get(str(status).lower() if str(status).lower() == "default" else str(status))
                for media_type, media in (declared.get("content") or {}).items():
                    target = (documented or {}).get("content", {}).get(media_type)
                    for key in ("example", "examples"):
                        if target is not None and key in media:
                            target[key] = jsonable_encoder(media[key])
