"""Checks on a bundle request that pydantic cannot make per field: rules across fields, the bundle
reference in the URL, the Idempotency-Key header.

They run before any transaction opens, so a bad request costs no connection. Errors use the
`{field, message}` shape and the dotted paths of pydantic's own 422s (app.schemas.bundles), so a
client reads one format whichever check refused it. One cross-row rule is not here: an
`ai_bundle_id` that must name an existing AI bundle is checked by `legacy_sync.sync_legacy`, under
the lock of that row.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import NotFound, ValidationFailed
from app.schemas.bundles import ComponentIn, DiscountIn, PricingRuleIn, check_text


def field_error(field: str, message: str) -> dict[str, str]:
    """One entry of a 422's `errors`."""
    return {"field": field, "message": message}


def semantic_errors(
    *,
    components: list[ComponentIn] | None,
    rules: list[PricingRuleIn] | None,
    discounts: list[DiscountIn] | None,
    metadata: dict[str, Any] | None,
    prefix: str = "body",
) -> list[dict[str, str]]:
    """Rules pydantic cannot express per field; paths use pydantic's dotted style."""
    errors: list[dict[str, str]] = []
    for i, component in enumerate(components or []):
        where = f"{prefix}.components.{i}"
        if component.minQuantity > component.maxQuantity:
            errors.append(field_error(f"{where}.minQuantity", "must be <= maxQuantity"))
        if component.priceAdjustmentType != "NONE" and component.priceAdjustment is None:
            errors.append(
                field_error(
                    f"{where}.priceAdjustment", f"required when priceAdjustmentType is {component.priceAdjustmentType}"
                )
            )
        if component.priceAdjustmentType == "PERCENTAGE" and (component.priceAdjustment or 0) > 100:
            errors.append(field_error(f"{where}.priceAdjustment", "a percentage must be <= 100"))
    for i, rule in enumerate(rules or []):
        where = f"{prefix}.pricingRules.{i}"
        if rule.discountType == "PERCENTAGE" and rule.discountValue > 100:
            errors.append(field_error(f"{where}.discountValue", "a percentage must be <= 100"))
        if rule.startsAt and rule.endsAt and rule.endsAt <= rule.startsAt:
            errors.append(field_error(f"{where}.endsAt", "must be after startsAt"))
    seen: set[str] = set()
    for i, discount in enumerate(discounts or []):
        where = f"{prefix}.discounts.{i}"
        if discount.shopifyDiscountId in seen:
            errors.append(field_error(f"{where}.shopifyDiscountId", "duplicate discount in this bundle"))
        seen.add(discount.shopifyDiscountId)
        if discount.discountType == "code" and not discount.discountCode:
            errors.append(field_error(f"{where}.discountCode", "required when discountType is code"))
    if metadata is not None:
        if "source" in metadata and not isinstance(metadata["source"], str):
            errors.append(field_error(f"{prefix}.metadata.source", "must be a string"))
        ai_id = metadata.get("ai_bundle_id")
        if "ai_bundle_id" in metadata and ai_id is not None:
            if not isinstance(ai_id, str) or not ai_id.strip() or len(ai_id) > 255:
                errors.append(
                    field_error(f"{prefix}.metadata.ai_bundle_id", "must be a non-empty string (<= 255 chars)")
                )
            else:
                try:
                    check_text(ai_id)
                except ValueError as exc:
                    errors.append(field_error(f"{prefix}.metadata.ai_bundle_id", str(exc)))
    return errors


def refuse_invalid(errors: list[dict[str, str]]) -> None:
    """422 with every cross-field error at once (the client fixes them in one round trip)."""
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors=errors)


def check_ref(bundle_ref: str) -> str:
    """A bundle reference from the URL. Text PostgreSQL cannot even compare (NUL, lone surrogates, absurd
    length) names no bundle: 404 like any other unknown id, instead of a driver error."""
    if not bundle_ref or len(bundle_ref) > 255:
        raise NotFound("Bundle not found.")
    try:
        check_text(bundle_ref)
    except ValueError:
        raise NotFound("Bundle not found.") from None
    return bundle_ref


def check_idempotency_key(key: str) -> None:
    """The Idempotency-Key header: 1-255 visible ASCII characters (it is stored as the record's key)."""
    if not (1 <= len(key) <= 255) or not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValidationFailed(
            "Invalid Idempotency-Key.",
            errors=[field_error("header.Idempotency-Key", "must be 1-255 visible ASCII characters")],
        )
