"""Background parts of the service started and stopped with it (flag listener, job worker, ...)."""

from __future__ import annotations

from app.core.container import Container


async def start(container: Container) -> None:
    """Start background services; each later feature registers itself here."""


async def stop(container: Container) -> None:
    """Stop background services before the pools close."""
