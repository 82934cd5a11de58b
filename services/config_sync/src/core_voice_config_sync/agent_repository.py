"""Reads and writes of tenants, agents and their config versions.

An edit locks the agent row (``FOR UPDATE`` on PostgreSQL; SQLite has one writer
anyway), lets the caller decide the change from the locked current state (validation,
key sealing) and writes it with `changes.apply_change`, retrying a few times if another
writer moved the version meanwhile. Several agents are always locked in id order, so
concurrent campaign edits cannot deadlock.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core_voice_config_sync.changes import Change, VersionMovedError, apply_change
from core_voice_config_sync.db import Database
from core_voice_config_sync.errors import (
    AgentExistsError,
    AgentNotFoundError,
    ConcurrentEditError,
    InUseError,
    VersionNotFoundError,
)
from core_voice_config_sync.models import (
    Agent,
    AgentConfig,
    CampaignAgent,
    PhoneNumber,
    Tenant,
    utcnow,
)
from core_voice_config_sync.outbox import outbox_row
from core_voice_config_sync.persistence import (
    EDIT_ATTEMPTS,
    agent_record,
    alive,
    check_legacy_name,
    config_row,
    keyset_page,
    link_record,
    lock_agents,
    version_cursor,
    version_record,
)
from core_voice_config_sync.records import (
    AgentRecord,
    ConfigFields,
    KeysState,
    LinkRecord,
    VersionRecord,
)
from core_voice_contracts.admin_api import AgentStatus
from core_voice_contracts.events import ChangeKind

Decide = Callable[[AgentRecord, list[LinkRecord]], Change]
"""Turns the locked agent and its campaign links into a `Change`, or raises to refuse.

A pure function of what it is given (no I/O): the edit reads, decides and writes in one
transaction, and nothing calls back out of it."""


@dataclass(frozen=True, slots=True)
class Edited:
    """An edit's outcome: the agent as written, the links it was checked against, and
    whether anything changed."""

    record: AgentRecord
    links: list[LinkRecord]
    changed: bool


async def links_of(session: AsyncSession, agent_id: str) -> list[LinkRecord]:
    rows = await session.scalars(
        sa.select(CampaignAgent)
        .where(CampaignAgent.agent_id == agent_id)
        .order_by(CampaignAgent.campaign_id)
    )
    return [link_record(r) for r in rows]


class AgentRepository:
    """Tenants, agents and their config versions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def ensure_tenant(self, tenant_id: str, name: str | None = None) -> bool:
        """Create the tenant unless it exists; return whether it was created."""
        async with self.db.write() as session:
            if await session.get(Tenant, tenant_id) is not None:
                return False
            session.add(Tenant(id=tenant_id, name=name or tenant_id, created_at=utcnow()))
            return True

    async def tenant_exists(self, tenant_id: str) -> bool:
        async with self.db.read() as session:
            return await session.get(Tenant, tenant_id) is not None

    async def create(
        self,
        tenant_id: str,
        agent_id: str,
        fields: ConfigFields,
        keys: KeysState,
        *,
        status: AgentStatus,
        legacy: tuple[str | None, int],
        author: str,
    ) -> AgentRecord:
        """Insert an agent at version 1; raise `AgentExistsError` if the id was ever used."""
        now = utcnow()
        agent = Agent(
            id=agent_id,
            tenant_id=tenant_id,
            name=fields.name,
            status=status.value,
            current_version=1,
            created_at=now,
            updated_at=now,
            legacy_agent_name=legacy[0],
            legacy_percent=legacy[1],
        )
        config = config_row(agent_id, 1, fields, keys, author=author, note="", at=now)
        try:
            async with self.db.write() as session:
                if await session.get(Agent, agent_id) is not None:
                    raise AgentExistsError(agent_id)
                if legacy[0] is not None:
                    await check_legacy_name(session, tenant_id, legacy[0])
                session.add(agent)
                await session.flush()  # the agent row must exist before its config's FK
                session.add(config)
                session.add(outbox_row(agent_id, tenant_id, 1, ChangeKind.CREATED))
        except IntegrityError:
            raise AgentExistsError(agent_id) from None  # lost a race with a concurrent create
        return agent_record(agent, config)

    def _current(self) -> Any:
        return alive(
            sa.select(Agent, AgentConfig).join(
                AgentConfig,
                sa.and_(
                    AgentConfig.agent_id == Agent.id,
                    AgentConfig.version == Agent.current_version,
                ),
            )
        )

    async def get(self, agent_id: str, *, tenant_id: str | None = None) -> AgentRecord | None:
        """The live agent at its current version; ``tenant_id=None`` means any tenant."""
        query = self._current().where(Agent.id == agent_id)
        if tenant_id is not None:
            query = query.where(Agent.tenant_id == tenant_id)
        async with self.db.read() as session:
            row = (await session.execute(query)).first()
        return None if row is None else agent_record(row[0], row[1])

    async def with_links(self, agent_id: str) -> tuple[AgentRecord, list[LinkRecord]] | None:
        """The agent and its campaign links in one read: what the runtime cache holds."""
        async with self.db.read() as session:
            row = (await session.execute(self._current().where(Agent.id == agent_id))).first()
            if row is None:
                return None
            return agent_record(row[0], row[1]), await links_of(session, agent_id)

    async def page(
        self, tenant_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[AgentRecord], str | None]:
        query = self._current().where(Agent.tenant_id == tenant_id)
        async with self.db.read() as session:
            return await keyset_page(
                session, query, Agent.id, agent_record, limit=limit, cursor=cursor
            )

    async def edit(
        self, agent_id: str, decide: Decide, *, tenant_id: str | None, author: str
    ) -> Edited:
        """Lock the agent, let ``decide`` turn its current state into a `Change`, write it.

        ``decide`` may raise to refuse (nothing is written). Retried if another writer
        moved the version meanwhile.
        """
        for _ in range(EDIT_ATTEMPTS):
            try:
                async with self.db.write() as session:
                    agent, current, links = await self._locked_state(session, agent_id, tenant_id)
                    change = decide(agent_record(agent, current), links)
                    record, changed = await apply_change(
                        session, agent, change, author=author, current=current
                    )
                    return Edited(record, links, changed)
            except (VersionMovedError, IntegrityError):
                continue
        raise ConcurrentEditError(agent_id)

    async def _locked_state(
        self, session: AsyncSession, agent_id: str, tenant_id: str | None
    ) -> tuple[Agent, AgentConfig, list[LinkRecord]]:
        """The agent (locked), its current version and its links, in as few round trips
        as the backend allows: every round trip is a large part of an edit's latency.

        PostgreSQL: lock the agent row alone, then read version and links in one query (it
        re-checks a locked row's join conditions against the *old* joined row after
        waiting, so a locking join would lose the row). SQLite: one query; its single
        writer is already serialised by `Database.write`, which is the lock.
        """
        links_join = CampaignAgent.agent_id == AgentConfig.agent_id
        if self.db.dialect == "sqlite":
            query = (
                self._current()
                .add_columns(CampaignAgent)
                .outerjoin(CampaignAgent, links_join)
                .where(Agent.id == agent_id)
            )
            if tenant_id is not None:
                query = query.where(Agent.tenant_id == tenant_id)
            rows = (await session.execute(query.order_by(CampaignAgent.campaign_id))).all()
            if not rows:
                raise AgentNotFoundError(agent_id)
            links = [link_record(r[2]) for r in rows if r[2] is not None]
            return rows[0][0], rows[0][1], links

        agent = (await lock_agents(session, [agent_id], tenant_id=tenant_id)).get(agent_id)
        if agent is None:
            raise AgentNotFoundError(agent_id)
        versioned = (
            sa.select(AgentConfig, CampaignAgent)
            .outerjoin(CampaignAgent, links_join)
            .where(AgentConfig.agent_id == agent_id, AgentConfig.version == agent.current_version)
            .order_by(CampaignAgent.campaign_id)
        )
        found = (await session.execute(versioned)).all()
        if not found:
            raise AgentNotFoundError(agent_id)
        return agent, found[0][0], [link_record(r[1]) for r in found if r[1] is not None]

    async def delete(self, agent_id: str, *, tenant_id: str) -> AgentRecord:
        """Mark the agent deleted and announce it (version + 1, kind ``deleted``).

        Refused while a campaign or a number still routes to it: unlink first, so that
        no route silently stops working.
        """
        async with self.db.write() as session:
            agent = (await lock_agents(session, [agent_id], tenant_id=tenant_id)).get(agent_id)
            if agent is None:
                raise AgentNotFoundError(agent_id)
            campaigns = list(
                await session.scalars(
                    sa.select(CampaignAgent.campaign_id)
                    .where(CampaignAgent.agent_id == agent_id)
                    .order_by(CampaignAgent.campaign_id)
                )
            )
            numbers = list(
                await session.scalars(
                    sa.select(PhoneNumber.number)
                    .where(PhoneNumber.agent_id == agent_id)
                    .order_by(PhoneNumber.number)
                )
            )
            if campaigns or numbers:
                uses = [f"campaign {c}" for c in campaigns] + [f"number {n}" for n in numbers]
                raise InUseError(f"agent {agent_id!r} is still routed to by: {', '.join(uses)}")
            current = await session.get(AgentConfig, (agent_id, agent.current_version))
            assert current is not None
            record = agent_record(agent, current)
            now = utcnow()
            agent.deleted_at = now
            agent.updated_at = now
            session.add(
                outbox_row(agent_id, agent.tenant_id, agent.current_version + 1, ChangeKind.DELETED)
            )
        return record

    async def versions(
        self, agent_id: str, *, tenant_id: str, limit: int, cursor: str | None
    ) -> tuple[list[VersionRecord], str | None]:
        """Newest first."""
        before = version_cursor(cursor)
        async with self.db.read() as session:
            owner = await session.scalar(
                alive(sa.select(Agent.id)).where(Agent.id == agent_id, Agent.tenant_id == tenant_id)
            )
            if owner is None:
                raise AgentNotFoundError(agent_id)
            query = sa.select(AgentConfig).where(AgentConfig.agent_id == agent_id)
            if before is not None:
                query = query.where(AgentConfig.version < before)
            rows = list(
                await session.scalars(query.order_by(AgentConfig.version.desc()).limit(limit + 1))
            )
        records = [version_record(r) for r in rows[:limit]]
        return records, (str(records[-1].version) if len(rows) > limit else None)

    async def version(self, agent_id: str, version: int, *, tenant_id: str) -> VersionRecord:
        async with self.db.read() as session:
            row = (
                await session.execute(
                    alive(
                        sa.select(AgentConfig).join(Agent, Agent.id == AgentConfig.agent_id)
                    ).where(
                        AgentConfig.agent_id == agent_id,
                        AgentConfig.version == version,
                        Agent.tenant_id == tenant_id,
                    )
                )
            ).scalar_one_or_none()
            if row is None:
                exists = await session.scalar(
                    alive(sa.select(Agent.id)).where(
                        Agent.id == agent_id, Agent.tenant_id == tenant_id
                    )
                )
                if exists is None:
                    raise AgentNotFoundError(agent_id)
                raise VersionNotFoundError(agent_id, version)
        return version_record(row)
