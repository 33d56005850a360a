"""The rollout's evidence: a shop's consistency figures, dual-write verification, the report.

`shop_figures` is what the rollout guards read; `verify_shop` re-reads every dual-written bundle
of a shop from both stores before it goes live. The comparisons themselves run in
app.services.bundles.shadow. docs/feature-flags.md, "Evidence".
"""

from app.services.consistency.figures import consistency_report, shop_figures
from app.services.consistency.verification import verify_bundle, verify_shop

__all__ = ["consistency_report", "shop_figures", "verify_bundle", "verify_shop"]
