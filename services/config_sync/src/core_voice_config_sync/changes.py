"""How one change of a locked agent is written: a new version, or routing in place.

An edit and a campaign link change both end here, inside their own transaction, with
the agent row already locked (`persistence.lock_agents`). The version is also checked
optimistically (`VersionMovedError` makes the caller retry), so a writer that read an
older version never overwrites a newer one.
"""

from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core_voice_config_sync.errors import AgentNotFoundError
from core_voice_config_sync.models import Agent, AgentConfig, OutboxRow, utcnow
from core_voice_config_sync.outbox import outbox_row, routing_outbox_row
from core_voice_config_sync.persistence import (
    agent_record,
    check_legacy_name,
    config_row,
    insert_values,
)
from core_voice_config_sync.records import AgentRecord, ConfigFields, KeysState
from core_voice_contracts.events import ChangeKind


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


def campaign_change(campaign_id: str) -> Change:
    """A link of the agent to ``campaign_id`` changed: its calls there change."""
    return Change(
        note=f"campaign {campaign_id}",
        kind=ChangeKind.CAMPAIGN,
        campaign_id=campaign_id,
        force_version=True,
    )


class VersionMovedError(Exception):
    """The agent's version changed between our read and our write."""


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
        await session.execute(sa.insert(OutboxRow).values(**insert_values(event)))
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
    config = config_row(
        agent.id, new_version, fields, keys, author=author, note=change.note, at=now
    )
    event = outbox_row(agent.id, agent.tenant_id, new_version, change.kind, change.campaign_id)
    await session.execute(sa.insert(AgentConfig).values(**insert_values(config)))
    await session.execute(sa.insert(OutboxRow).values(**insert_values(event)))
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
