"""All tables, imported together so `SQLModel.metadata` is complete for Alembic."""

from app.models import consistency as consistency  # the rollout's evidence (registered with the metadata)
from app.models import legacy, service, v2
from app.models import outbox as outbox  # the write-through outbox (registered with the metadata)
from app.models import rollouts as rollouts  # guarded rollouts (registered with the metadata)
from app.models.base import metadata

__all__ = ["legacy", "metadata", "service", "v2"]
