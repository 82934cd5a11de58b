"""Reads and writes of agents, their versions and the outbox.

Every committed change writes its event to the outbox in the same transaction, so an
edit and its announcement are never separated: `ConfigChanged` for a new version,
`RoutingChanged` for routing attributes changed in place (status, legacy share). An
edit locks the agent row (``FOR UPDATE`` on PostgreSQL; SQLite has one writer anyway)
and also checks optimistically that the version it read is still current, retrying a
few times; several agents are always locked in id order, so concurrent campaign edits
cannot deadlock.

The shape of a change (validation, key sealing) is decided by the caller, inside the
transaction, from the locked current state: see `AgentRepository.edit`.
"""

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core_voice_config_sync.crypto import Sealed
from core_voice_config_sync.db import Database
from core_voice_config_sync.errors import (
    AgentExistsError,
    AgentNotFoundError,
    BadCursorError,
    ConcurrentEditError,
    InUseError,
    InvalidConfigError,
    VersionNotFoundError,
)
from core_voice_config_sync.models import (
    Agent,
    AgentConfig,
    Base,
    CampaignAgent,
    OutboxRow,
    PhoneNumber,
    Tenant,
    TenantLegacyAgent,
    utcnow,
)
from core_voice_config_sync.records import (
    AgentRecord,
    ConfigFields,
    LinkRecord,
    RouteAgent,
    VersionRecord,
)
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentStatus, CampaignOverrides
from core_voice_contracts.events import ChangeKind, ConfigChanged, ConfigStreamEvent, RoutingChanged
from core_voice_contracts.runtime_config import ProviderSpec

EDIT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox row not yet acknowledged by JetStream."""

    id: int
    subject: str
    payload: bytes
    msg_id: str


@dataclass(frozen=True, slots=True)
class KeysState:
    """An agent version's keys as stored: sealed bytes and provider → last 4 hints."""

    sealed: Sealed | None = None
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """What an edit does, decided from the locked current state.

    ``config``/``keys`` None keep the current ones; a new version is written only if the
    result differs from the current version (or ``force_version``, for campaign changes
    that alter the agent's calls without touching its own config).
    """

    config: ConfigFields | None = None
    keys: KeysState | None = None
    status: str | None = None
    legacy: tuple[str | None, int] | None = None
    note: str = ""
    kind: ChangeKind = ChangeKind.UPDATED
    campaign_id: str | None = None
    force_version: bool = False


Decide = Callable[[AgentRecord, list[LinkRecord]], Awaitable[Change]]


class VersionMovedError(Exception):
    """The agent's version changed between our read and our write."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def spec_to_json(spec: ProviderSpec) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(spec)
    return data


def spec_from_json(data: dict[str, Any]) -> ProviderSpec:
    return msgspec.convert(data, ProviderSpec)


def overrides_from_json(data: dict[str, Any]) -> CampaignOverrides:
    return msgspec.convert(data, CampaignOverrides)


def _fields(config: AgentConfig) -> ConfigFields:
    return ConfigFields(
        name=config.name,
        instructions=config.instructions,
        greeting=config.greeting,
        llm=spec_from_json(config.llm),
        stt=spec_from_json(config.stt),
        tts=spec_from_json(config.tts),
    )


def _keys_state(config: AgentConfig) -> KeysState:
    sealed = (
        Sealed(key_id=config.keys_key_id, blob=config.keys_sealed)
        if config.keys_sealed is not None and config.keys_key_id is not None
        else None
    )
    return KeysState(sealed=sealed, hints=dict(config.keys_hint or {}))


def agent_record(agent: Agent, config: AgentConfig) -> AgentRecord:
    keys = _keys_state(config)
    return AgentRecord(
        id=agent.id,
        tenant_id=agent.tenant_id,
        status=agent.status,
        version=config.version,
        config=_fields(config),
        created_at=agent.created_at,
        updated_at=agent.updated_at,
        legacy_agent_name=agent.legacy_agent_name,
        legacy_percent=agent.legacy_percent,
        key_hints=keys.hints,
        sealed=keys.sealed,
    )


def version_record(config: AgentConfig) -> VersionRecord:
    keys = _keys_state(config)
    return VersionRecord(
        agent_id=config.agent_id,
        version=config.version,
        config=_fields(config),
        created_at=config.created_at,
        author=config.author,
        note=config.note,
        key_hints=keys.hints,
        sealed=keys.sealed,
    )


def link_record(link: CampaignAgent) -> LinkRecord:
    return LinkRecord(
        campaign_id=link.campaign_id,
        agent_id=link.agent_id,
        weight=link.weight,
        overrides=overrides_from_json(link.overrides),
        created_at=link.created_at,
        updated_at=link.updated_at,
    )


def legacy_allowed() -> "sa.Exists":
    """Whether the agent row's ``legacy_agent_name`` is on its tenant's list (a column
    for routing queries: a name taken off the list stops routing at once)."""
    return sa.exists().where(
        TenantLegacyAgent.tenant_id == Agent.tenant_id,
        TenantLegacyAgent.name == Agent.legacy_agent_name,
    )


def route_agent(agent: Agent, *, legacy_ok: bool) -> RouteAgent:
    return RouteAgent(
        id=agent.id,
        tenant_id=agent.tenant_id,
        status=agent.status,
        legacy_agent_name=agent.legacy_agent_name if legacy_ok else None,
        legacy_percent=agent.legacy_percent,
    )


async def legacy_names(session: AsyncSession, tenant_id: str) -> list[str]:
    return list(
        await session.scalars(
            sa.select(TenantLegacyAgent.name)
            .where(TenantLegacyAgent.tenant_id == tenant_id)
            .order_by(TenantLegacyAgent.name)
        )
    )


async def check_legacy_name(session: AsyncSession, tenant_id: str, name: str) -> None:
    """422 unless an operator put ``name`` on the tenant's list of legacy workers: any
    LiveKit agent name could otherwise be another tenant's worker."""
    allowed = await legacy_names(session, tenant_id)
    if name not in allowed:
        shown = ", ".join(allowed) if allowed else "none"
        raise InvalidConfigError(
            "legacy_agent_name",
            f"not a legacy worker of this tenant (allowed: {shown}); an operator sets the "
            "list with PUT /api/v1/tenants/{tenant_id}/legacy-agents",
        )


def outbox_row(
    agent_id: str,
    tenant_id: str,
    version: int,
    kind: ChangeKind,
    campaign_id: str | None = None,
) -> OutboxRow:
    """The event row; its ``msg_id`` is the JetStream de-duplication id for good.

    It is a random id minted with the row rather than the row's integer key, so that a
    fresh database (or a second deployment on the same NATS) can never reuse the id of a
    recently published event and have its own event dropped as a duplicate.
    """
    event = ConfigChanged(
        agent_id=agent_id, tenant_id=tenant_id, version=version, kind=kind, campaign_id=campaign_id
    )
    return _outbox(subjects.config_changed(agent_id), event)


def routing_outbox_row(
    tenant_id: str,
    *,
    agent_id: str | None = None,
    campaign_id: str | None = None,
    number: str | None = None,
    trunk_id: str | None = None,
) -> OutboxRow:
    """The event of a routing change that gives no agent a new version (a version's
    `ConfigChanged` already tells every replica to drop its routing answers)."""
    event = RoutingChanged(
        tenant_id=tenant_id,
        agent_id=agent_id,
        campaign_id=campaign_id,
        number=number,
        trunk_id=trunk_id,
    )
    return _outbox(subjects.routing_changed(tenant_id), event)


def _outbox(subject: str, event: ConfigStreamEvent) -> OutboxRow:
    return OutboxRow(
        subject=subject, payload=codec.encode(event), msg_id=f"outbox-{uuid.uuid4().hex}"
    )


def _config_row(
    agent_id: str,
    version: int,
    fields: ConfigFields,
    keys: KeysState,
    *,
    author: str,
    note: str,
    at: dt.datetime,
) -> AgentConfig:
    return AgentConfig(
        agent_id=agent_id,
        version=version,
        name=fields.name,
        instructions=fields.instructions,
        greeting=fields.greeting,
        llm=spec_to_json(fields.llm),
        stt=spec_to_json(fields.stt),
        tts=spec_to_json(fields.tts),
        created_at=at,
        author=author,
        note=note,
        keys_sealed=keys.sealed.blob if keys.sealed else None,
        keys_key_id=keys.sealed.key_id if keys.sealed else None,
        keys_hint=dict(keys.hints),
    )


def page_after(cursor: str | None) -> str | None:
    if cursor is not None and not (0 < len(cursor) <= 64):
        raise BadCursorError
    return cursor


def version_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 9:
        raise BadCursorError
    return int(cursor)


def _alive(query: Any) -> Any:
    return query.where(Agent.deleted_at.is_(None))


async def links_of(session: AsyncSession, agent_id: str) -> list[LinkRecord]:
    rows = await session.scalars(
        sa.select(CampaignAgent)
        .where(CampaignAgent.agent_id == agent_id)
        .order_by(CampaignAgent.campaign_id)
    )
    return [link_record(r) for r in rows]


async def lock_agents(
    session: AsyncSession, agent_ids: Iterable[str], *, tenant_id: str | None
) -> dict[str, Agent]:
    """Lock live agents in id order (the one lock order everywhere: no deadlocks)."""
    out: dict[str, Agent] = {}
    for agent_id in sorted(set(agent_ids)):
        query = (
            _alive(sa.select(Agent).where(Agent.id == agent_id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if tenant_id is not None:
            query = query.where(Agent.tenant_id == tenant_id)
        agent = (await session.execute(query)).scalar_one_or_none()
        if agent is not None:
            out[agent_id] = agent
    return out


def _values(row: Base) -> dict[str, Any]:
    """A new ORM row as column values for a Core INSERT (the edit path skips the ORM's
    unit of work: it is most of an edit's cost on SQLite)."""
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if getattr(row, column.key) is not None
    }


async def apply_change(
    session: AsyncSession,
    agent: Agent,
    change: Change,
    *,
    author: str,
    current: AgentConfig | None = None,
) -> tuple[AgentRecord, bool]:
    """Write ``change`` for a locked ``agent``: a new version (+ `ConfigChanged`) if the
    config or keys differ (or it is forced), else routing fields in place
    (+ `RoutingChanged`)."""
    if current is None:
        current = await session.get(AgentConfig, (agent.id, agent.current_version))
        if current is None:  # the FK and the version bump make this impossible
            raise AgentNotFoundError(agent.id)
    now = utcnow()
    record = agent_record(agent, current)
    status = change.status if change.status is not None else agent.status
    legacy = change.legacy or (agent.legacy_agent_name, agent.legacy_percent)
    routing_changed = (status, legacy) != (
        agent.status,
        (agent.legacy_agent_name, agent.legacy_percent),
    )
    routing = {
        "status": status,
        "legacy_agent_name": legacy[0],
        "legacy_percent": legacy[1],
        "updated_at": now,
    }
    if legacy[0] is not None and legacy != (agent.legacy_agent_name, agent.legacy_percent):
        await check_legacy_name(session, agent.tenant_id, legacy[0])
    old_fields, old_keys = record.config, KeysState(record.sealed, record.key_hints)
    fields = change.config or old_fields
    keys = change.keys or old_keys
    if fields == old_fields and keys == old_keys and not change.force_version:
        if not routing_changed:
            return record, False
        await session.execute(
            sa.update(Agent)
            .where(Agent.id == agent.id)
            .values(**routing)
            .execution_options(synchronize_session=False)
        )
        event = routing_outbox_row(agent.tenant_id, agent_id=agent.id)
        await session.execute(sa.insert(OutboxRow).values(**_values(event)))
        return replace(
            record,
            status=status,
            legacy_agent_name=legacy[0],
            legacy_percent=legacy[1],
            updated_at=now,
        ), True

    old_version = agent.current_version
    new_version = old_version + 1
    moved = await session.execute(
        sa.update(Agent)
        .where(Agent.id == agent.id, Agent.current_version == old_version)
        .values(current_version=new_version, name=fields.name, **routing)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        raise VersionMovedError
    config = _config_row(
        agent.id, new_version, fields, keys, author=author, note=change.note, at=now
    )
    event = outbox_row(agent.id, agent.tenant_id, new_version, change.kind, change.campaign_id)
    await session.execute(sa.insert(AgentConfig).values(**_values(config)))
    await session.execute(sa.insert(OutboxRow).values(**_values(event)))
    return replace(
        record,
        version=new_version,
        config=fields,
        status=status,
        legacy_agent_name=legacy[0],
        legacy_percent=legacy[1],
        updated_at=now,
        key_hints=dict(keys.hints),
        sealed=keys.sealed,
    ), True


class AgentRepository:
    """Agents, their config versions and the outbox."""

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
        config = _config_row(agent_id, 1, fields, keys, author=author, note="", at=now)
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
        return _alive(
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
        if (after := page_after(cursor)) is not None:
            query = query.where(Agent.id > after)
        query = query.order_by(Agent.id).limit(limit + 1)
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        records = [agent_record(a, c) for a, c in rows[:limit]]
        return records, (records[-1].id if len(rows) > limit else None)

    async def edit(
        self, agent_id: str, decide: Decide, *, tenant_id: str | None, author: str
    ) -> tuple[AgentRecord, bool]:
        """Lock the agent, let ``decide`` turn its current state into a `Change`, write it.

        Returns the record and whether anything changed. ``decide`` may raise to refuse
        (nothing is written). Retried if another writer moved the version meanwhile.
        """
        for _ in range(EDIT_ATTEMPTS):
            try:
                async with self.db.write() as session:
                    agent, current, links = await self._locked_state(session, agent_id, tenant_id)
                    change = await decide(agent_record(agent, current), links)
                    return await apply_change(
                        session, agent, change, author=author, current=current
                    )
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
                _alive(sa.select(Agent.id)).where(
                    Agent.id == agent_id, Agent.tenant_id == tenant_id
                )
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
                    _alive(
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
                    _alive(sa.select(Agent.id)).where(
                        Agent.id == agent_id, Agent.tenant_id == tenant_id
                    )
                )
                if exists is None:
                    raise AgentNotFoundError(agent_id)
                raise VersionNotFoundError(agent_id, version)
        return version_record(row)

    async def route_agent(self, agent_id: str) -> RouteAgent | None:
        query = _alive(sa.select(Agent, legacy_allowed())).where(Agent.id == agent_id)
        async with self.db.read() as session:
            row = (await session.execute(query)).first()
        return None if row is None else route_agent(row[0], legacy_ok=bool(row[1]))

    # --- provider keys at rest ------------------------------------------------------------

    async def sealed_not_under(
        self, key_id: str, limit: int, *, after: tuple[str, int] | None = None
    ) -> list[tuple[str, int, Sealed]]:
        """Versions whose keys are sealed under another master key than ``key_id``, in
        (agent, version) order, from just past ``after``: a caller pages on past rows it
        could not re-seal instead of reading them again."""
        query = (
            sa.select(
                AgentConfig.agent_id,
                AgentConfig.version,
                AgentConfig.keys_key_id,
                AgentConfig.keys_sealed,
            )
            .where(AgentConfig.keys_sealed.is_not(None), AgentConfig.keys_key_id != key_id)
            .order_by(AgentConfig.agent_id, AgentConfig.version)
            .limit(limit)
        )
        if after is not None:
            agent_id, version = after
            query = query.where(
                sa.or_(
                    AgentConfig.agent_id > agent_id,
                    sa.and_(AgentConfig.agent_id == agent_id, AgentConfig.version > version),
                )
            )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return [(a, v, Sealed(key_id=str(k), blob=b or b"")) for a, v, k, b in rows]

    async def replace_sealed(self, agent_id: str, version: int, old: Sealed, new: Sealed) -> bool:
        """Swap the sealed bytes of one version, only if they are still ``old``.

        The keys inside are unchanged, so this is not a new version and announces nothing.
        """
        async with self.db.write() as session:
            result = await session.execute(
                sa.update(AgentConfig)
                .where(
                    AgentConfig.agent_id == agent_id,
                    AgentConfig.version == version,
                    AgentConfig.keys_key_id == old.key_id,
                )
                .values(keys_sealed=new.blob, keys_key_id=new.key_id)
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def sealed_key_ids(self) -> dict[str, int]:
        """Master key id → how many versions it seals (for startup checks and `reencrypt`)."""
        query = (
            sa.select(AgentConfig.keys_key_id, sa.func.count())
            .where(AgentConfig.keys_sealed.is_not(None))
            .group_by(AgentConfig.keys_key_id)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return {str(k): int(n) for k, n in rows}

    # --- outbox ----------------------------------------------------------------------------

    async def pending_events(self, limit: int = 100) -> list[PendingEvent]:
        """Unpublished events, oldest first (the relay must keep this order)."""
        query = (
            sa.select(OutboxRow.id, OutboxRow.subject, OutboxRow.payload, OutboxRow.msg_id)
            .where(OutboxRow.published_at.is_(None))
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return [PendingEvent(id=r[0], subject=r[1], payload=r[2], msg_id=r[3]) for r in rows]

    async def mark_published(self, ids: Sequence[int], at: dt.datetime | None = None) -> None:
        if not ids:
            return
        async with self.db.write() as session:
            await session.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(published_at=at or utcnow())
                .execution_options(synchronize_session=False)
            )

    async def mark_unpublished(self, ids: Sequence[int]) -> None:
        """Put events back in the queue (re-announce them; JetStream drops duplicates)."""
        async with self.db.write() as session:
            await session.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(published_at=None)
                .execution_options(synchronize_session=False)
            )

    async def prune_published(self, older_than: dt.datetime) -> int:
        async with self.db.write() as session:
            result = await session.execute(
                sa.delete(OutboxRow).where(OutboxRow.published_at < older_than)
            )
        return int(getattr(result, "rowcount", 0) or 0)
