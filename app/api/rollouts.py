"""`/admin/rollouts` and `GET /admin/shops/{shop}/stage`: thin HTTP over `app.services.rollouts` (internal token).

A rollout is started here and then moved by the driver on every replica; pause, resume and abort
answer 202 because the driver acts on them at its next tick (within `ROLLOUT_INTERVAL_S`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from app.api.deps import AdminDep, ContainerDep, FlagsDep, validate_shop
from app.api.openapi_docs import (
    ADMIN_ERRORS,
    BODY_ERRORS,
    INVALID_SHOP,
    PAGINATION_ERRORS,
    UNEXPECTED_ERROR,
    example_response,
    problem,
    problem_example,
)
from app.schemas.rollouts import (
    CREATED_EXAMPLE,
    DRY_RUN_EXAMPLE,
    EXAMPLE_ROLLOUT_ID,
    ROLLOUT_EXAMPLE,
    ROLLOUT_PAGE_EXAMPLE,
    SHOP_STAGE_EXAMPLE,
    CreateRolloutIn,
    RolloutCreated,
    RolloutOut,
    RolloutPage,
    RolloutPlan,
    ShopStageOut,
)
from app.services.rollouts import operations as service
from app.services.rollouts import stages as stage_service

router = APIRouter(tags=["rollouts"], responses=UNEXPECTED_ERROR)

ROLLOUTS = "/admin/rollouts"
RolloutId = Annotated[str, Path(min_length=1, max_length=64, description="Rollout id")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=500)]

_NOT_FOUND = problem(404, "Unknown rollout", noSuchRollout=problem_example(404, f"No rollout '{EXAMPLE_ROLLOUT_ID}'."))
_LOCATION = {"Location": {"description": "The rollout's statusUrl", "schema": {"type": "string"}}}


def _transition(action: str) -> dict[int | str, dict[str, object]]:
    return problem(
        409,
        "The rollout's status does not allow this",
        notAllowed=problem_example(409, f"Rollout {EXAMPLE_ROLLOUT_ID} is completed: it cannot be {action}d."),
    )


@router.post(
    ROLLOUTS,
    status_code=201,
    response_model=RolloutCreated,
    summary="Start a guarded rollout (or dry-run it); 409 if an unfinished rollout covers a shop",
    responses={
        **example_response(CREATED_EXAMPLE, 201, "Stored; the driver starts moving shops", headers=_LOCATION),
        **example_response(DRY_RUN_EXAMPLE, 200, "Dry run: the plan, nothing written", model=RolloutPlan),
        **ADMIN_ERRORS,
        **BODY_ERRORS,
        **problem(
            409,
            "An unfinished rollout covers a shop, or the legacy tables are archived",
            covered=problem_example(
                409,
                f"An unfinished rollout already covers demo-cafe.myshopify.com ({EXAMPLE_ROLLOUT_ID}): pause/abort "
                "it or leave these shops out.",
                coveredShops=[{"shop": "demo-cafe.myshopify.com", "rolloutId": EXAMPLE_ROLLOUT_ID}],
            ),
        ),
    },
)
async def create_rollout(
    body: CreateRolloutIn, actor: AdminDep, container: ContainerDep, store: FlagsDep, response: Response
) -> RolloutCreated | JSONResponse:
    result = await service.create_rollout(
        container,
        store,
        body,
        actor=actor,
    )
    if result.get("dryRun"):  # a second JSON status: its schema is documented above
        return JSONResponse(jsonable_encoder(RolloutPlan.model_validate(result)), status_code=200)
    response.headers["Location"] = result["statusUrl"]
    return RolloutCreated.model_validate(result)


@router.get(
    ROLLOUTS,
    summary="Rollouts, newest first, with every shop's stage, state and guards",
    responses={**example_response(ROLLOUT_PAGE_EXAMPLE), **ADMIN_ERRORS, **PAGINATION_ERRORS},
)
async def list_rollouts(_: AdminDep, container: ContainerDep, limit: Limit = 50, cursor: Cursor = None) -> RolloutPage:
    return RolloutPage.model_validate(await service.list_rollouts(container, limit=limit, cursor=cursor))


@router.get(
    ROLLOUTS + "/{rollout_id}",
    summary="One rollout: status, and per shop its stage, state, guard values and last transition",
    responses={**example_response(ROLLOUT_EXAMPLE), **ADMIN_ERRORS, **_NOT_FOUND},
)
async def get_rollout(rollout_id: RolloutId, _: AdminDep, container: ContainerDep) -> RolloutOut:
    return RolloutOut.model_validate(await service.get_rollout(container, rollout_id))


@router.post(
    ROLLOUTS + "/{rollout_id}/pause",
    status_code=202,
    summary="Pause: no shop advances; step-backs stay armed",
    responses={**example_response(ROLLOUT_EXAMPLE, 202), **ADMIN_ERRORS, **_NOT_FOUND, **_transition("pause")},
)
async def pause_rollout(rollout_id: RolloutId, actor: AdminDep, container: ContainerDep) -> RolloutOut:
    return RolloutOut.model_validate(await service.pause_rollout(container, rollout_id, actor=actor))


@router.post(
    ROLLOUTS + "/{rollout_id}/resume",
    status_code=202,
    summary="Resume: shops advance again; rolled-back shops observe again from now",
    responses={**example_response(ROLLOUT_EXAMPLE, 202), **ADMIN_ERRORS, **_NOT_FOUND, **_transition("resume")},
)
async def resume_rollout(rollout_id: RolloutId, actor: AdminDep, container: ContainerDep) -> RolloutOut:
    return RolloutOut.model_validate(await service.resume_rollout(container, rollout_id, actor=actor))


@router.post(
    ROLLOUTS + "/{rollout_id}/abort",
    status_code=202,
    summary="Abort: nothing moves any more; each shop keeps its stage; its shops are free again",
    responses={**example_response(ROLLOUT_EXAMPLE, 202), **ADMIN_ERRORS, **_NOT_FOUND, **_transition("abort")},
)
async def abort_rollout(rollout_id: RolloutId, actor: AdminDep, container: ContainerDep) -> RolloutOut:
    return RolloutOut.model_validate(await service.abort_rollout(container, rollout_id, actor=actor))


@router.get(
    "/admin/shops/{shop}/stage",
    summary="A shop's effective stage and where it comes from (global, percent, override, rollout, env)",
    responses={
        **example_response(SHOP_STAGE_EXAMPLE),
        **ADMIN_ERRORS,
        **problem(422, "Invalid shop domain", invalidShop=INVALID_SHOP),
    },
)
async def get_shop_stage(shop: str, _: AdminDep, container: ContainerDep, store: FlagsDep) -> ShopStageOut:
    validate_shop(shop)
    return ShopStageOut.model_validate(await stage_service.shop_stage(container, store, shop))
