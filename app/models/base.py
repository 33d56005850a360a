"""Column helpers that spell Prisma's conventions once (TIMESTAMP(3), TEXT[], cascade FKs)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata
metadata.naming_convention = {}

TS3 = postgresql.TIMESTAMP(precision=3)
TEXT_ARRAY = postgresql.ARRAY(sa.Text())
NOW = sa.text("CURRENT_TIMESTAMP")


def pk() -> Any:
    return Field(sa_column=sa.Column(sa.Text(), primary_key=True))


def text(*, nullable: bool = True, default: str | None = None, index: bool = False) -> Any:
    server_default = sa.text(f"'{default}'") if default is not None else None
    return Field(
        default=default,
        sa_column=sa.Column(sa.Text(), nullable=nullable, server_default=server_default),
    )


def integer(*, nullable: bool = False, default: int | None = None) -> Any:
    server_default = sa.text(str(default)) if default is not None else None
    return Field(
        default=default,
        sa_column=sa.Column(sa.Integer(), nullable=nullable, server_default=server_default),
    )


def boolean(*, nullable: bool = False, default: bool | None = None) -> Any:
    server_default = sa.text("true" if default else "false") if default is not None else None
    return Field(
        default=default,
        sa_column=sa.Column(sa.Boolean(), nullable=nullable, server_default=server_default),
    )


def double(*, nullable: bool = False, default: float | None = None) -> Any:
    server_default = sa.text(repr(default)) if default is not None else None
    return Field(
        default=default,
        sa_column=sa.Column(sa.Double(), nullable=nullable, server_default=server_default),
    )


def decimal(p: int, s: int, *, nullable: bool = True, default: int | None = None) -> Any:
    server_default = sa.text(str(default)) if default is not None else None
    return Field(
        default=default,
        sa_column=sa.Column(sa.Numeric(p, s), nullable=nullable, server_default=server_default),
    )


def timestamp(*, nullable: bool = True, now_default: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(TS3, nullable=nullable, server_default=NOW if now_default else None),
    )


def text_array() -> Any:
    return Field(default=None, sa_column=sa.Column(TEXT_ARRAY, nullable=True))


def jsonb(*, nullable: bool = True, default_sql: str | None = None, name: str | None = None) -> Any:
    """A JSONB column; `name` lets a Python attribute avoid SQLAlchemy's reserved `metadata`."""
    server_default = sa.text(default_sql) if default_sql is not None else None
    args: list[Any] = [name] if name else []  # a positional name, then the type
    return Field(
        default=None,
        sa_column=sa.Column(*args, postgresql.JSONB(), nullable=nullable, server_default=server_default),  # type: ignore[arg-type]
    )


def enum(type_: sa.Enum, *, nullable: bool = False, default: str | None = None) -> Any:
    server_default = sa.text(f"'{default}'::\"{type_.name}\"") if default is not None else None
    return Field(
        default=default,
        sa_column=sa.Column(type_, nullable=nullable, server_default=server_default),
    )


def bundle_fk(table: str) -> Any:
    """`bundleId` → "Bundle"(id), ON DELETE/UPDATE CASCADE, named as Prisma names it."""
    return Field(
        sa_column=sa.Column(
            sa.Text(),
            sa.ForeignKey("Bundle.id", name=f"{table}_bundleId_fkey", ondelete="CASCADE", onupdate="CASCADE"),
            nullable=False,
        )
    )
