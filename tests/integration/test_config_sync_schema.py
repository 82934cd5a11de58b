"""The Alembic migrations on both backends: they build the models' schema, run twice,
and go down and up again (a real SQLite file and a real PostgreSQL server)."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core_voice_config_sync.db import alembic_config, create_engine, migrate
from core_voice_config_sync.models import Base

pytestmark = pytest.mark.integration


async def test_migrations_match_models_and_round_trip(database_url: str, tmp_path: Path) -> None:
    db_file = None
    if database_url.startswith("sqlite"):
        db_file = tmp_path / "nested" / "dir" / "cs.db"  # migrate makes the directories
        database_url = f"sqlite+aiosqlite:///{db_file}"
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # every start runs it; the second run must be a no-op
        if db_file is not None:
            assert db_file.exists()

        def diff(connection: sa.Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []

        def down_and_up(connection: sa.Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
            command.upgrade(config, "head")

        async with engine.begin() as conn:
            await conn.run_sync(down_and_up)
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
