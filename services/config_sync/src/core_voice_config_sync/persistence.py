"""What every repository shares: rows to records, keyset paging, locking, legacy checks.

Records are detached values (`records`); a row becomes one through `record_of` (msgspec
reads the attributes that the record names) unless the two differ in shape, as an agent
(two rows, sealed keys) does. Lists page on their sort key (``?cursor=`` is the last key
of the previous page), the one paging of every list except versions (newest first).
"""

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from core_voice_config_sync.crypto import Sealed
from core_voice_config_sync.errors import BadCursorError, InvalidConfigError
from core_voice_config_sync.models import Agent, AgentConfig, Base, CampaignAgent, TenantLegacyAgent
from core_voice_config_sync.records import (
    AgentRecord,
    ConfigFields,
    KeysState,
    LinkRecord,
    VersionRecord,
)
from core_voice_contracts.runtime_config import ProviderSpec

EDIT_ATTEMPTS = 3
"""Tries of a write that lost a race for an agent's version to another writer."""

MAX_CURSOR_CHARS = 64

R = TypeVar("R")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def record_of(row: object, kind: type[R]) -> R:
    """The record ``kind`` read off ``row``'s attributes (JSON columns become Structs)."""
    return msgspec.convert(row, kind, from_attributes=True)


def spec_to_json(spec: ProviderSpec) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(spec)
    return data


def _fields(config: AgentConfig) -> ConfigFields:
    return ConfigFields(
        name=config.name,
        instructions=config.instructions,
        greeting=config.greeting,
        llm=msgspec.convert(config.llm, ProviderSpec),
        stt=msgspec.convert(config.stt, ProviderSpec),
        tts=msgspec.convert(config.tts, ProviderSpec),
    )


def keys_state(config: AgentConfig) -> KeysState:
    sealed = (
        Sealed(key_id=config.keys_key_id, blob=config.keys_sealed)
        if config.keys_sealed is not None and config.keys_key_id is not None
        else None
    )
    return KeysState(sealed=sealed, hints=dict(config.keys_hint or {}))


def agent_record(agent: Agent, config: AgentConfig) -> AgentRecord:
    keys = keys_state(config)
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
    keys = keys_state(config)
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
    return record_of(link, LinkRecord)


def config_row(
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


def insert_values(row: Base) -> dict[str, Any]:
    """A new ORM row as column values for a Core INSERT (the edit path skips the ORM's
    unit of work: it is most of an edit's cost on SQLite)."""
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if getattr(row, column.key) is not None
    }


# --- legacy workers ------------------------------------------------------------


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


# --- paging ----------------------------------------------------------------------------------


async def keyset_page(
    session: AsyncSession,
    query: "sa.Select[Any]",
    key: InstrumentedAttribute[str],
    record: Callable[..., R],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[R], str | None]:
    """Up to ``limit`` records after ``cursor`` in ``key`` order, and the next cursor.

    ``record`` is called with the entities of each row of ``query``.
    """
    if cursor is not None:
        if not 0 < len(cursor) <= MAX_CURSOR_CHARS:
            raise BadCursorError
        query = query.where(key > cursor)
    rows = (await session.execute(query.add_columns(key).order_by(key).limit(limit + 1))).all()
    records = [record(*row[:-1]) for row in rows[:limit]]
    return records, (str(rows[limit - 1][-1]) if len(rows) > limit else None)


def version_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 9:
        raise BadCursorError
    return int(cursor)


# --- agents ----------------------------------------------------------------------------------


def alive(query: Any) -> Any:
    return query.where(Agent.deleted_at.is_(None))


async def lock_agents(
    session: AsyncSession, agent_ids: Iterable[str], *, tenant_id: str | None
) -> dict[str, Agent]:
    """Lock live agents in id order (the one lock order everywhere: no deadlocks)."""
    out: dict[str, Agent] = {}
    for agent_id in sorted(set(agent_ids)):
        query = (
            alive(sa.select(Agent).where(Agent.id == agent_id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if tenant_id is not None:
            query = query.where(Agent.tenant_id == tenant_id)
        agent = (await session.execute(query)).scalar_one_or_none()
        if agent is not None:
            out[agent_id] = agent
    return out
