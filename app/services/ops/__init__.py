"""Readiness and the status page."""
