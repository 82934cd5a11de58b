"""Alembic migrations of the config_sync database (applied by `db.migrate` at startup)."""
