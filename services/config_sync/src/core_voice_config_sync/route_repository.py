"""What routing reads: agents, campaigns and number mappings as `routing` needs them.

No config and no keys, from any tenant (the caller is the dispatcher's route request).
A legacy worker name counts only while it is on its tenant's operator-set list, so a
name taken off the list stops routing at once.
"""

import sqlalchemy as sa

from core_voice_config_sync.db import Database
from core_voice_config_sync.models import (
    Agent,
    Campaign,
    CampaignAgent,
    PhoneNumber,
    SipTrunk,
    TenantLegacyAgent,
)
from core_voice_config_sync.persistence import alive, record_of
from core_voice_config_sync.records import NumberRecord, RouteAgent, RouteCampaign


def _legacy_allowed() -> "sa.Exists":
    """Whether the agent row's ``legacy_agent_name`` is on its tenant's list."""
    return sa.exists().where(
        TenantLegacyAgent.tenant_id == Agent.tenant_id,
        TenantLegacyAgent.name == Agent.legacy_agent_name,
    )


def _route_agent(agent: Agent, *, legacy_ok: bool) -> RouteAgent:
    return RouteAgent(
        id=agent.id,
        tenant_id=agent.tenant_id,
        status=agent.status,
        legacy_agent_name=agent.legacy_agent_name if legacy_ok else None,
        legacy_percent=agent.legacy_percent,
    )


class RouteRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def agent(self, agent_id: str) -> RouteAgent | None:
        query = alive(sa.select(Agent, _legacy_allowed())).where(Agent.id == agent_id)
        async with self.db.read() as session:
            row = (await session.execute(query)).first()
        return None if row is None else _route_agent(row[0], legacy_ok=bool(row[1]))

    async def campaign(self, campaign_id: str) -> RouteCampaign | None:
        """The campaign and its live linked agents with their weights."""
        async with self.db.read() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                return None
            rows = (
                await session.execute(
                    alive(sa.select(Agent, CampaignAgent.weight, _legacy_allowed()))
                    .join(CampaignAgent, CampaignAgent.agent_id == Agent.id)
                    .where(CampaignAgent.campaign_id == campaign_id)
                    .order_by(Agent.id)
                )
            ).all()
        agents = [(_route_agent(a, legacy_ok=bool(ok)), int(w)) for a, w, ok in rows]
        return RouteCampaign(
            id=campaign.id, tenant_id=campaign.tenant_id, status=campaign.status, agents=agents
        )

    async def number(self, trunk_id: str, number: str) -> NumberRecord | None:
        """The mapping of ``number`` on ``trunk_id``, while the trunk is still its tenant's."""
        query = (
            sa.select(PhoneNumber)
            .join(SipTrunk, SipTrunk.id == PhoneNumber.trunk_id)
            .where(
                PhoneNumber.trunk_id == trunk_id,
                PhoneNumber.number == number,
                SipTrunk.tenant_id == PhoneNumber.tenant_id,
            )
        )
        async with self.db.read() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        return None if row is None else record_of(row, NumberRecord)
