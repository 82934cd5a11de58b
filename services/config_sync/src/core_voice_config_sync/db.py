"""Database engine, sessions, schema migration and health check.

The same code runs on SQLite (embedded default, one file) and PostgreSQL; only the
connection set-up differs. `Database` turns "the database did not answer" into
`DatabaseUnavailableError` (HTTP 503) in one place, so every write fails the same clear
way during an outage and reads know when to fall back to the cache.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core_voice_config_sync.errors import DatabaseUnavailableError

MIGRATIONS = files("core_voice_config_sync") / "migrations"
CONNECT_TIMEOUT_S = 3.0
STATEMENT_TIMEOUT_S = 10.0
SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(url: str) -> AsyncEngine:
    """An async engine; for SQLite, also the file's directory and sane pragmas.

    WAL lets readers (health checks, runtime-config reads) proceed during a write;
    ``busy_timeout`` makes a concurrent writer wait instead of failing.
    Statement parameters never appear in SQLAlchemy's error messages
    (``hide_parameters``): the only secrets stored are sealed, but an error text has no
    business carrying row data into a log line.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=CONNECT_TIMEOUT_S,
            hide_parameters=True,
            connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S},
        )

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, hide_parameters=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if parsed.database and parsed.database != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent; run at every start)."""

    def _upgrade(connection: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)
"""Failures that mean "no answer from the database", as opposed to a bad statement."""


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, UNAVAILABLE):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


class Database:
    """Sessions for reads and writes. SQLite allows one writer, so on SQLite this
    process's writes are serialised by a lock instead of failing on a busy file."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.dialect = engine.dialect.name
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self.sessions() as session:
                yield session
        except Exception as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailableError from None
            raise

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on any exception."""
        lock = self._write_lock or contextlib.nullcontext()
        try:
            async with lock, self.sessions() as session, session.begin():
                yield session
        except Exception as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailableError from None
            raise
