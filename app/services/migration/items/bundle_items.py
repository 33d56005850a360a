"""The state a batch of bundle_discount_id rows carries from its preparation to its writers.

Its own module so that the preparation (`bundle_preparation`) and the writers (`manual_bundles`,
`linked_rows`) depend on these two types and not on one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.repos import migration as repo
from app.rules.legacy_parsing import LegacyProductRef, LegacyRowKind, ParsedLegacyBundle
from app.services.migration.items.common import ItemOutcome
from app.shopify.objects import Metaobject


@dataclass(slots=True)
class BundleItem:
    """One bundle_discount_id row on its way through the batch."""

    legacy_id: str
    kind: LegacyRowKind
    row: repo.LegacyBundleRow
    handle: str | None = None
    ai_id: str | None = None
    metaobject: Metaobject | None = None
    parsed: ParsedLegacyBundle | None = None


@dataclass
class BundleBatchState:
    """The batch's rows still without an outcome (`items`) and the outcomes so far.

    `done` records an outcome and drops the row from `items`, so each later phase sees only the rows
    still to be worked on; `ids` is the batch's order, which the writers follow.
    """

    ids: list[str]
    outcomes: dict[str, ItemOutcome]
    items: dict[str, BundleItem] = field(default_factory=dict)
    ai_refs: dict[str, list[LegacyProductRef]] = field(default_factory=dict)  # AI bundles this batch may create

    def done(self, outcome: ItemOutcome) -> None:
        self.outcomes[outcome.legacy_id] = outcome
        self.items.pop(outcome.legacy_id, None)
