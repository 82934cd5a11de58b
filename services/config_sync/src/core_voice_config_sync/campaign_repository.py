"""Reads and writes of campaigns and campaign ↔ agent links.

A link change (added, removed, new overrides) changes what the agent's calls in that
campaign run, so it gives the agent a new version (note ``campaign <id>``, event kind
``campaign``) in the same transaction: versions stay the one thing workers compare, and
they only ever increase. A weight change only moves future routing: no new version.

Every write that changes routing announces it in its transaction: the new versions'
`ConfigChanged`, or else one `RoutingChanged` (campaign created, status changed or
deleted without links; weight changed).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core_voice_config_sync.changes import VersionMovedError, apply_change, campaign_change
from core_voice_config_sync.db import Database
from core_voice_config_sync.errors import (
    AgentNotFoundError,
    CampaignExistsError,
    CampaignNotFoundError,
    ConcurrentEditError,
    InUseError,
    LinkNotFoundError,
)
from core_voice_config_sync.models import (
    AgentConfig,
    Campaign,
    CampaignAgent,
    PhoneNumber,
    utcnow,
)
from core_voice_config_sync.outbox import routing_outbox_row
from core_voice_config_sync.persistence import (
    EDIT_ATTEMPTS,
    agent_record,
    keyset_page,
    link_record,
    lock_agents,
    record_of,
)
from core_voice_config_sync.records import (
    AgentRecord,
    CampaignRecord,
    LinkRecord,
)
from core_voice_contracts.admin_api import CampaignOverrides, CampaignStatus

CheckLink = Callable[[AgentRecord, CampaignOverrides], Awaitable[None]]
"""Validates an agent's runtime config merged with a campaign's overrides (raises 422)."""


def campaign_record(campaign: Campaign) -> CampaignRecord:
    return record_of(campaign, CampaignRecord)


def _overrides_json(overrides: CampaignOverrides) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(overrides)
    return data


@dataclass(frozen=True, slots=True)
class CampaignFields:
    name: str
    description: str
    status: CampaignStatus


class CampaignRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- campaigns -------------------------------------------------------------------------

    async def _campaign(
        self, session: AsyncSession, campaign_id: str, tenant_id: str, *, lock: bool = False
    ) -> Campaign:
        query = sa.select(Campaign).where(
            Campaign.id == campaign_id, Campaign.tenant_id == tenant_id
        )
        if lock:
            query = query.with_for_update()
        campaign = (await session.execute(query)).scalar_one_or_none()
        if campaign is None:
            raise CampaignNotFoundError(campaign_id)
        return campaign

    async def create(
        self, tenant_id: str, campaign_id: str, fields: CampaignFields
    ) -> CampaignRecord:
        now = utcnow()
        campaign = Campaign(
            id=campaign_id,
            tenant_id=tenant_id,
            name=fields.name,
            description=fields.description,
            status=fields.status.value,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self.db.write() as session:
                if await session.get(Campaign, campaign_id) is not None:
                    raise CampaignExistsError(campaign_id)
                session.add(campaign)
                session.add(routing_outbox_row(tenant_id, campaign_id=campaign_id))
        except IntegrityError:
            raise CampaignExistsError(campaign_id) from None
        return campaign_record(campaign)

    async def get(self, campaign_id: str, *, tenant_id: str) -> CampaignRecord:
        async with self.db.read() as session:
            return campaign_record(await self._campaign(session, campaign_id, tenant_id))

    async def page(
        self, tenant_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[CampaignRecord], str | None]:
        query = sa.select(Campaign).where(Campaign.tenant_id == tenant_id)
        async with self.db.read() as session:
            return await keyset_page(
                session, query, Campaign.id, campaign_record, limit=limit, cursor=cursor
            )

    async def patch(
        self,
        campaign_id: str,
        *,
        tenant_id: str,
        name: str | None,
        description: str | None,
        status: CampaignStatus | None,
    ) -> CampaignRecord:
        """Name, description and status are not part of any agent's runtime config; the
        status is routing."""
        async with self.db.write() as session:
            campaign = await self._campaign(session, campaign_id, tenant_id, lock=True)
            values = {"name": name, "description": description, "status": status}
            changed = False
            for key, value in values.items():
                if value is not None and getattr(campaign, key) != value:
                    setattr(campaign, key, str(value))
                    changed = True
                    if key == "status":
                        session.add(routing_outbox_row(tenant_id, campaign_id=campaign_id))
            if changed:
                campaign.updated_at = utcnow()
            return campaign_record(campaign)

    async def delete(self, campaign_id: str, *, tenant_id: str, author: str) -> list[AgentRecord]:
        """Delete the campaign and its links; each linked agent gets a new version.

        Refused while a number routes to the campaign.
        """
        for _ in range(EDIT_ATTEMPTS):
            try:
                async with self.db.write() as session:
                    await self._campaign(session, campaign_id, tenant_id, lock=True)
                    numbers = list(
                        await session.scalars(
                            sa.select(PhoneNumber.number)
                            .where(PhoneNumber.campaign_id == campaign_id)
                            .order_by(PhoneNumber.number)
                        )
                    )
                    if numbers:
                        raise InUseError(
                            f"campaign {campaign_id!r} is still routed to by number(s): "
                            + ", ".join(numbers)
                        )
                    agent_ids = list(
                        await session.scalars(
                            sa.select(CampaignAgent.agent_id).where(
                                CampaignAgent.campaign_id == campaign_id
                            )
                        )
                    )
                    agents = await lock_agents(session, agent_ids, tenant_id=tenant_id)
                    await session.execute(
                        sa.delete(CampaignAgent).where(CampaignAgent.campaign_id == campaign_id)
                    )
                    await session.execute(sa.delete(Campaign).where(Campaign.id == campaign_id))
                    bumped = []
                    for agent in agents.values():
                        record, _ = await apply_change(
                            session, agent, campaign_change(campaign_id), author=author
                        )
                        bumped.append(record)
                    if not bumped:
                        session.add(routing_outbox_row(tenant_id, campaign_id=campaign_id))
                    return bumped
            except VersionMovedError:
                continue
        raise ConcurrentEditError(campaign_id)

    # --- links -----------------------------------------------------------------------------

    async def links(
        self, campaign_id: str, *, tenant_id: str, limit: int, cursor: str | None
    ) -> tuple[list[LinkRecord], str | None]:
        async with self.db.read() as session:
            await self._campaign(session, campaign_id, tenant_id)
            query = sa.select(CampaignAgent).where(CampaignAgent.campaign_id == campaign_id)
            return await keyset_page(
                session, query, CampaignAgent.agent_id, link_record, limit=limit, cursor=cursor
            )

    async def link(self, campaign_id: str, agent_id: str, *, tenant_id: str) -> LinkRecord:
        async with self.db.read() as session:
            await self._campaign(session, campaign_id, tenant_id)
            row = await session.get(CampaignAgent, (campaign_id, agent_id))
        if row is None:
            raise LinkNotFoundError(campaign_id, agent_id)
        return link_record(row)

    async def set_link(
        self,
        campaign_id: str,
        agent_id: str,
        *,
        tenant_id: str,
        weight: int,
        overrides: CampaignOverrides,
        check: CheckLink,
        author: str,
    ) -> tuple[LinkRecord, AgentRecord | None]:
        """Create or replace a link; return it and the agent's new version if it got one.

        ``check`` sees the locked agent, so the merged config it validates is the one that
        will be served.
        """
        for _ in range(EDIT_ATTEMPTS):
            try:
                async with self.db.write() as session:
                    await self._campaign(session, campaign_id, tenant_id, lock=True)
                    agent = (await lock_agents(session, [agent_id], tenant_id=tenant_id)).get(
                        agent_id
                    )
                    if agent is None:
                        raise AgentNotFoundError(agent_id)
                    current = await session.get(AgentConfig, (agent_id, agent.current_version))
                    assert current is not None
                    await check(agent_record(agent, current), overrides)
                    now = utcnow()
                    data = _overrides_json(overrides)
                    link = await session.get(CampaignAgent, (campaign_id, agent_id))
                    runtime_changed = link is None or link.overrides != data
                    weight_changed = link is not None and link.weight != weight
                    if link is None:
                        link = CampaignAgent(
                            campaign_id=campaign_id,
                            agent_id=agent_id,
                            weight=weight,
                            overrides=data,
                            created_at=now,
                            updated_at=now,
                        )
                        session.add(link)
                    elif link.weight != weight or runtime_changed:
                        link.weight, link.overrides, link.updated_at = weight, data, now
                    await session.flush()
                    bumped = None
                    if runtime_changed:
                        bumped, _ = await apply_change(
                            session, agent, campaign_change(campaign_id), author=author
                        )
                    elif weight_changed:
                        session.add(
                            routing_outbox_row(
                                tenant_id, agent_id=agent_id, campaign_id=campaign_id
                            )
                        )
                    return link_record(link), bumped
            except VersionMovedError:
                continue
        raise ConcurrentEditError(agent_id)

    async def delete_link(
        self, campaign_id: str, agent_id: str, *, tenant_id: str, author: str
    ) -> AgentRecord | None:
        for _ in range(EDIT_ATTEMPTS):
            try:
                async with self.db.write() as session:
                    await self._campaign(session, campaign_id, tenant_id, lock=True)
                    agents = await lock_agents(session, [agent_id], tenant_id=tenant_id)
                    link = await session.get(CampaignAgent, (campaign_id, agent_id))
                    if link is None:
                        raise LinkNotFoundError(campaign_id, agent_id)
                    await session.delete(link)
                    await session.flush()
                    agent = agents.get(agent_id)
                    if agent is None:
                        session.add(
                            routing_outbox_row(
                                tenant_id, agent_id=agent_id, campaign_id=campaign_id
                            )
                        )
                        return None
                    record, _ = await apply_change(
                        session, agent, campaign_change(campaign_id), author=author
                    )
                    return record
            except VersionMovedError:
                continue
        raise ConcurrentEditError(agent_id)
