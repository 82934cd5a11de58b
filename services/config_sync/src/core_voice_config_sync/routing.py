"""``voice.routing.resolve``: which agent serves a room, and pool or legacy worker.

The dispatcher names an agent, a campaign or (SIP) the dialed number. A campaign picks
one of its active agents by weight with `routing.pick_weighted`, deterministically per
room; a gradual migration then sends `legacy_percent` % of the agent's rooms to its old
worker (`routing.goes_to_legacy`). Routing reads the database each time, so a disable
or a weight change applies to the very next room on every replica; while the database
is unreachable it answers from the last data it read. Replies never carry keys.
"""

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from core_voice_config_sync.campaign_repository import CampaignRepository
from core_voice_config_sync.errors import DatabaseUnavailableError
from core_voice_config_sync.records import NumberRecord, RouteAgent, RouteCampaign
from core_voice_config_sync.repository import AgentRepository
from core_voice_contracts.admin_api import AgentStatus, CampaignStatus
from core_voice_contracts.events import RejectReason
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.routing import (
    RouteError,
    RouteRejected,
    RouteReply,
    RouteRequest,
    RouteResolved,
    Target,
    goes_to_legacy,
    pick_weighted,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
FALLBACK_SIZE = 10_000


class _LastKnown(OrderedDict[str, object]):
    """Bounded memory of the last answer per look-up key, for database outages."""

    def remember(self, key: str, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > FALLBACK_SIZE:
            self.popitem(last=False)


class RoutingService:
    def __init__(self, agents: AgentRepository, campaigns: CampaignRepository) -> None:
        self._agents = agents
        self._campaigns = campaigns
        self._last = _LastKnown()

    async def _read(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await read()
        except DatabaseUnavailableError:
            if key in self._last:
                log.info("routing from last known data", extra={"key": key})
                return cast(T, self._last[key])
            raise
        self._last.remember(key, value)
        return value

    async def resolve(self, request: RouteRequest) -> RouteReply:
        try:
            return await self._resolve(request)
        except DatabaseUnavailableError:
            return RouteError(error="database_unavailable", retryable=True)

    async def _resolve(self, request: RouteRequest) -> RouteReply:
        if request.agent_id is not None:
            return await self._by_agent(request, request.agent_id, request.campaign_id, "agent")
        if request.campaign_id is not None:
            return await self._by_campaign(request, request.campaign_id, "campaign")
        if request.dialed_number is not None:
            number = request.dialed_number
            mapping: NumberRecord | None = await self._read(
                f"number:{number}", lambda: self._campaigns.route_number(number)
            )
            if mapping is None:
                return RouteRejected(reason=RejectReason.NO_ROUTE, detail="number not mapped")
            if mapping.agent_id is not None:
                return await self._by_agent(request, mapping.agent_id, None, "dialed_number")
            assert mapping.campaign_id is not None
            return await self._by_campaign(request, mapping.campaign_id, "dialed_number")
        return RouteRejected(reason=RejectReason.NO_AGENT, detail="no agent, campaign or number")

    async def _by_agent(
        self, request: RouteRequest, agent_id: str, campaign_id: str | None, via: str
    ) -> RouteReply:
        agent: RouteAgent | None = None
        if is_valid_id(agent_id):
            agent = await self._read(
                f"agent:{agent_id}", lambda: self._agents.route_agent(agent_id)
            )
        if agent is None:
            return RouteRejected(reason=RejectReason.UNKNOWN_AGENT)
        if agent.status != AgentStatus.ACTIVE:
            return RouteRejected(reason=RejectReason.DISABLED_AGENT)
        return _resolved(request, agent, campaign_id, via)

    async def _by_campaign(self, request: RouteRequest, campaign_id: str, via: str) -> RouteReply:
        campaign: RouteCampaign | None = None
        if is_valid_id(campaign_id):
            campaign = await self._read(
                f"campaign:{campaign_id}", lambda: self._campaigns.route_campaign(campaign_id)
            )
        if campaign is None:
            return RouteRejected(reason=RejectReason.NO_ROUTE, detail="unknown campaign")
        if campaign.status != CampaignStatus.ACTIVE:
            return RouteRejected(reason=RejectReason.NO_ROUTE, detail="campaign paused")
        active = {a.id: a for a, _ in campaign.agents if a.status == AgentStatus.ACTIVE}
        choices = [(a.id, weight) for a, weight in campaign.agents if a.id in active]
        picked = pick_weighted(request.room_key, choices)
        if picked is None:
            return RouteRejected(reason=RejectReason.NO_ROUTE, detail="no active agent")
        return _resolved(request, active[picked], campaign.id, via)


def _resolved(
    request: RouteRequest, agent: RouteAgent, campaign_id: str | None, via: str
) -> RouteResolved:
    legacy = bool(agent.legacy_agent_name) and goes_to_legacy(
        request.room_key, agent.id, agent.legacy_percent
    )
    return RouteResolved(
        agent_id=agent.id,
        tenant_id=agent.tenant_id,
        campaign_id=campaign_id,
        target=Target.LEGACY if legacy else Target.POOL,
        legacy_agent_name=agent.legacy_agent_name if legacy else None,
        via=via,
    )
