"""Alembic environment for config_sync.

Two ways in: `core_voice_config_sync.db.migrate` hands over an open (sync-facing)
connection in ``config.attributes["connection"]``; the ``alembic`` CLI (with
``services/config_sync/alembic.ini``) connects to ``CONFIG_SYNC_DATABASE_URL`` itself.
"""

import asyncio
import os

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from core_voice_config_sync.models import Base
from core_voice_config_sync.settings import default_database_url

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def _offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


config = context.config
shared = config.attributes.get("connection")
if shared is not None:
    _run(shared)
else:
    url = os.environ.get("CONFIG_SYNC_DATABASE_URL") or default_database_url()
    if context.is_offline_mode():
        _offline(url)
    else:
        asyncio.run(_run_with_own_engine(url))
