"""Schema revision 0003 on data made before it, on both backends: numbers move onto a
placeholder trunk per tenant (they stop routing until an operator assigns the real
trunk), and legacy worker names in use are put on their tenant's list."""

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from core_voice_config_sync.db import alembic_config, create_engine, migrate
from tests.harness.config_sync import fresh_database

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)


async def test_numbers_move_to_placeholder_trunks_and_legacy_names_are_kept(
    database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    postgres = (
        None if database_url.startswith("sqlite") else request.getfixturevalue("postgres_server")
    )
    engine = create_engine(fresh_database(database_url, postgres, tmp_path))
    try:
        await migrate(engine, "0002")
        async with engine.begin() as conn:
            for statement in (
                "INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'T1', :now)",
                "INSERT INTO tenants (id, name, created_at) VALUES ('t2', 'T2', :now)",
                "INSERT INTO agents (id, tenant_id, name, status, current_version, created_at,"
                " updated_at, legacy_agent_name, legacy_percent) VALUES"
                " ('a1', 't1', 'A', 'active', 1, :now, :now, 'old-worker', 30)",
                "INSERT INTO phone_numbers (number, tenant_id, agent_id, created_at, updated_at)"
                " VALUES ('+15550000001', 't1', 'a1', :now, :now)",
            ):
                await conn.execute(sa.text(statement), {"now": NOW})
        await migrate(engine)
        async with engine.connect() as conn:
            trunks = (await conn.execute(sa.text("SELECT id, tenant_id FROM sip_trunks"))).all()
            numbers = (
                await conn.execute(sa.text("SELECT trunk_id, number, tenant_id FROM phone_numbers"))
            ).all()
            names = (await conn.execute(sa.text("SELECT * FROM tenant_legacy_agents"))).all()
        assert [(t[0].startswith("unassigned-"), t[1]) for t in trunks] == [(True, "t1")]
        assert [tuple(n) for n in numbers] == [(trunks[0][0], "+15550000001", "t1")]
        assert [tuple(n) for n in names] == [("t1", "old-worker")]

        def down(connection: sa.Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")

        async with engine.begin() as conn:  # and back: one row per number again
            await conn.run_sync(down)
        async with engine.connect() as conn:
            back = (await conn.execute(sa.text("SELECT number, agent_id FROM phone_numbers"))).all()
        assert [tuple(n) for n in back] == [("+15550000001", "a1")]
    finally:
        await engine.dispose()
