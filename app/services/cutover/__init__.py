"""Stage changes, rollbacks, the Phase 5 cleanup and restore, the legacy-tables guard."""
