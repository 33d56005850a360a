"""The cutover: the migration stage (`stage`), rollbacks (`rollback`), the Phase 5 cleanup and its
restore (`cleanup`), the flag writes they share (`flag_writes`) and the legacy-tables guard (`guard`)."""
