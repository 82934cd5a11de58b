"""The Alembic migrations build exactly the schema the models describe, and run twice."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core_voice_config_sync.db import alembic_config, create_engine, migrate
from core_voice_config_sync.models import Base

pytestmark = pytest.mark.unit


async def test_migrations_match_models_and_are_idempotent(tmp_path: Path) -> None:
    db_file = tmp_path / "nested" / "dir" / "cs.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    try:
        await migrate(engine)
        await migrate(engine)  # every start runs it; the second run must be a no-op
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
    finally:
        await engine.dispose()
