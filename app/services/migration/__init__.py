"""Phase 3 migration jobs (planning, worker, item migration) and the validation report."""
