"""All reads and writes of the config_sync database.

Every committed change writes its `ConfigChanged` event to the outbox in the same
transaction, so an edit and its announcement are never separated. Concurrent edits of
one agent are resolved optimistically (the version bump only applies if the version
read is still current) and retried; that is portable across SQLite and PostgreSQL.
SQLite allows a single writer, so on SQLite writes from this process are serialised
by a lock instead of failing on a busy database.
"""

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core_voice_config_sync.errors import (
    AgentExistsError,
    AgentNotFoundError,
    ConcurrentEditError,
)
from core_voice_config_sync.models import (
    Agent,
    AgentConfig,
    OutboxRow,
    Tenant,
    utcnow,
)
from core_voice_config_sync.records import AgentRecord
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentCreate, AgentPatch
from core_voice_contracts.events import ChangeKind, ConfigChanged
from core_voice_contracts.runtime_config import ProviderSpec, RuntimeConfig

ACTIVE = "active"
EDIT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox row not yet acknowledged by JetStream."""

    id: int
    subject: str
    payload: bytes
    msg_id: str


class _VersionMoved(Exception):
    """The agent's version changed between our read and our write."""


def new_agent_id() -> str:
    return f"agent-{uuid.uuid4().hex[:16]}"


def _spec_to_json(spec: ProviderSpec) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(spec)
    return data


def _spec_from_json(data: dict[str, Any]) -> ProviderSpec:
    return msgspec.convert(data, ProviderSpec)


def _record(agent: Agent, config: AgentConfig) -> AgentRecord:
    return AgentRecord(
        id=agent.id,
        tenant_id=agent.tenant_id,
        name=config.name,
        status=agent.status,
        version=config.version,
        instructions=config.instructions,
        greeting=config.greeting,
        llm=_spec_from_json(config.llm),
        stt=_spec_from_json(config.stt),
        tts=_spec_from_json(config.tts),
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def _outbox_row(agent_id: str, tenant_id: str, version: int, kind: ChangeKind) -> OutboxRow:
    event = ConfigChanged(agent_id=agent_id, tenant_id=tenant_id, version=version, kind=kind)
    return OutboxRow(
        subject=subjects.config_changed(agent_id),
        payload=codec.encode(event),
        msg_id=f"outbox-{uuid.uuid4().hex}",
    )


class AgentRepository:
    """Agents, their config versions and the outbox, behind one async session factory."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        single_writer = engine.dialect.name == "sqlite"
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if single_writer else None

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on success (serialised on SQLite)."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._sessions() as session, session.begin():
            yield session

    async def ensure_tenant(self, tenant_id: str, name: str | None = None) -> None:
        async with self._write() as session:
            if await session.get(Tenant, tenant_id) is None:
                session.add(Tenant(id=tenant_id, name=name or tenant_id))

    async def create(self, tenant_id: str, data: AgentCreate, *, author: str) -> AgentRecord:
        """Insert an agent at version 1; raise `AgentExistsError` if the id is taken."""
        agent_id = data.id or new_agent_id()
        now = utcnow()
        agent = Agent(
            id=agent_id,
            tenant_id=tenant_id,
            name=data.name,
            status=ACTIVE,
            current_version=1,
            created_at=now,
            updated_at=now,
        )
        config = AgentConfig(
            agent_id=agent_id,
            version=1,
            name=data.name,
            instructions=data.instructions,
            greeting=data.greeting,
            llm=_spec_to_json(data.llm.spec()),
            stt=_spec_to_json(data.stt.spec()),
            tts=_spec_to_json(data.tts.spec()),
            created_at=now,
            author=author,
        )
        try:
            async with self._write() as session:
                if await session.get(Agent, agent_id) is not None:
                    raise AgentExistsError(agent_id)
                session.add(agent)
                await session.flush()  # the agent row must exist before its config's FK
                session.add(config)
                session.add(_outbox_row(agent_id, tenant_id, 1, ChangeKind.CREATED))
        except IntegrityError:
            if await self.get(agent_id) is None:
                raise
            raise AgentExistsError(agent_id) from None  # lost a race with a concurrent create
        return _record(agent, config)

    async def get(self, agent_id: str, *, tenant_id: str | None = None) -> AgentRecord | None:
        """The agent at its current version; ``tenant_id=None`` means any tenant."""
        query = (
            sa.select(Agent, AgentConfig)
            .join(
                AgentConfig,
                sa.and_(
                    AgentConfig.agent_id == Agent.id,
                    AgentConfig.version == Agent.current_version,
                ),
            )
            .where(Agent.id == agent_id)
        )
        if tenant_id is not None:
            query = query.where(Agent.tenant_id == tenant_id)
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        return None if row is None else _record(row[0], row[1])

    async def runtime_config(self, agent_id: str) -> RuntimeConfig | None:
        """The runtime config of the agent's current version (any tenant)."""
        record = await self.get(agent_id)
        return None if record is None else record.runtime()

    async def patch(
        self, agent_id: str, data: AgentPatch, *, tenant_id: str | None, author: str
    ) -> tuple[AgentRecord, bool]:
        """Apply ``data`` as a new version; return the record and whether anything changed.

        A patch whose values equal the current ones is a no-op: versions mark real
        changes, and re-applying the same config (e.g. from a sync job) stays idempotent.
        """
        for _ in range(EDIT_ATTEMPTS):
            try:
                return await self._patch_once(agent_id, data, tenant_id=tenant_id, author=author)
            except (_VersionMoved, IntegrityError):
                continue
        raise ConcurrentEditError(agent_id)

    async def _patch_once(
        self, agent_id: str, data: AgentPatch, *, tenant_id: str | None, author: str
    ) -> tuple[AgentRecord, bool]:
        async with self._write() as session:
            query = sa.select(Agent).where(Agent.id == agent_id).with_for_update()
            if tenant_id is not None:
                query = query.where(Agent.tenant_id == tenant_id)
            agent = (await session.execute(query)).scalar_one_or_none()
            if agent is None:
                raise AgentNotFoundError(agent_id)
            current = await session.get(AgentConfig, (agent_id, agent.current_version))
            if current is None:  # the FK and the version bump make this impossible
                raise AgentNotFoundError(agent_id)

            fields = {
                "name": data.name if data.name is not None else current.name,
                "instructions": (
                    data.instructions if data.instructions is not None else current.instructions
                ),
                "greeting": data.greeting if data.greeting is not None else current.greeting,
                "llm": _spec_to_json(data.llm.spec()) if data.llm is not None else current.llm,
                "stt": _spec_to_json(data.stt.spec()) if data.stt is not None else current.stt,
                "tts": _spec_to_json(data.tts.spec()) if data.tts is not None else current.tts,
            }
            if all(getattr(current, key) == value for key, value in fields.items()):
                return _record(agent, current), False

            old_version = agent.current_version
            new_version = old_version + 1
            now = utcnow()
            moved = await session.execute(
                sa.update(Agent)
                .where(Agent.id == agent_id, Agent.current_version == old_version)
                .values(current_version=new_version, name=fields["name"], updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(moved, "rowcount", 0) != 1:
                raise _VersionMoved
            config = AgentConfig(
                agent_id=agent_id, version=new_version, created_at=now, author=author, **fields
            )
            session.add(config)
            session.add(_outbox_row(agent_id, agent.tenant_id, new_version, ChangeKind.UPDATED))
            await session.flush()
            return replace(_record(agent, config), updated_at=now), True

    # --- outbox -----------------------------------------------------------------------

    async def pending_events(self, limit: int = 100) -> list[PendingEvent]:
        """Unpublished events, oldest first (the relay must keep this order)."""
        query = (
            sa.select(OutboxRow.id, OutboxRow.subject, OutboxRow.payload, OutboxRow.msg_id)
            .where(OutboxRow.published_at.is_(None))
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [PendingEvent(id=r[0], subject=r[1], payload=r[2], msg_id=r[3]) for r in rows]

    async def mark_published(self, ids: Sequence[int], at: dt.datetime | None = None) -> None:
        if not ids:
            return
        async with self._write() as session:
            await session.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(published_at=at or utcnow())
                .execution_options(synchronize_session=False)
            )

    async def mark_unpublished(self, ids: Sequence[int]) -> None:
        """Put events back in the queue (re-announce them; JetStream drops duplicates)."""
        async with self._write() as session:
            await session.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(published_at=None)
                .execution_options(synchronize_session=False)
            )

    async def prune_published(self, older_than: dt.datetime) -> int:
        async with self._write() as session:
            result = await session.execute(
                sa.delete(OutboxRow).where(OutboxRow.published_at < older_than)
            )
        return int(getattr(result, "rowcount", 0) or 0)
