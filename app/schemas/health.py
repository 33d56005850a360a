"""Readiness report schema (`/readyz`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SchemaState(BaseModel):
    current: str | None = Field(None, description="The database's Alembic revision (absent when unreachable).")
    head: str | None = Field(description="This code's Alembic head.")
    status: Literal["current", "behind"] | None = None


class Readiness(BaseModel):
    """The readiness report, the same body with 200 and 503 (so a probe's log says why)."""

    ready: bool
    database: Literal["ok", "unreachable"]
    detail: str | None = Field(None, description="Why the database is unreachable (at most 200 characters).")
    schema_: SchemaState = Field(alias="schema")
