"""Pure rules: no I/O, no database, no HTTP; importable from every layer (docs/architecture.md)."""
