"""``voice.routing.resolve``: which agent serves a room, and pool or legacy worker.

The dispatcher names an agent, a campaign or (SIP) the trunk and the dialed number: a
number routes only on the trunk it is mapped on, and trunks are assigned to tenants by an
operator, so one tenant cannot take calls to another's number. A campaign picks
one of its active agents by weight with `routing.pick_weighted`, deterministically per
room; a gradual migration then sends `legacy_percent` % of the agent's rooms to its old
worker (`routing.goes_to_legacy`). Replies never carry keys.

Answers come from memory (`RoutingCache`): agent, campaign and number look-ups are kept
until something that could change routing happens, which clears them all: on the
replica that commits an edit, right after the commit and before its API answers; on
every replica, on the edit's outbox event (`ConfigChanged` or `RoutingChanged`), a few
ms later; and on a NATS disconnect and reconnect, since events may be missed meanwhile.
Unknown ids are never kept, so something created a moment ago elsewhere is found at
once. While the database is unreachable, a miss is answered from the last data read.
"""

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from core_voice_config_sync.errors import DatabaseUnavailableError
from core_voice_config_sync.metrics import ConfigSyncMetrics, ErrorType
from core_voice_config_sync.records import NumberRecord, RouteAgent, RouteCampaign
from core_voice_config_sync.route_repository import RouteRepository
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
CACHE_SIZE = 10_000
_ROUTE_OUTCOMES: dict[type, str] = {RouteResolved: "resolved", RouteRejected: "rejected"}


def _remember(items: OrderedDict[str, object], key: str, value: object, size: int) -> None:
    items[key] = value
    items.move_to_end(key)
    while len(items) > size:
        items.popitem(last=False)


class RoutingCache:
    """Routing look-ups by key (``agent:<id>``, ``campaign:<id>``, ``number:<trunk>:<n>``),
    LRU.

    `invalidate` forgets every answer at once: routing edits are rare, and a refill is
    one read per key. A read that was in flight during an invalidation may have seen the
    old data, so it is handed to its caller but stored nowhere (the generation check).
    Apart from the answers, the last value read per key (None included) is kept through
    invalidations, only to answer while the database is unreachable.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.generation = 0
        self._fresh: OrderedDict[str, object] = OrderedDict()
        self._last: OrderedDict[str, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fresh)

    def invalidate(self) -> None:
        self._fresh.clear()
        self.generation += 1

    async def read(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """The cached answer for ``key``, or ``load()``'s (kept unless None or stale)."""
        cached = self._fresh.get(key)
        if cached is not None:
            self._fresh.move_to_end(key)
            return cast(T, cached)
        generation = self.generation
        try:
            value = await load()
        except DatabaseUnavailableError:
            if key in self._last:
                log.info("routing from last known data", extra={"key": key})
                return cast(T, self._last[key])
            raise
        if generation == self.generation:
            _remember(self._last, key, value, self.size)
            if value is not None:
                _remember(self._fresh, key, value, self.size)
        return value


class RoutingService:
    def __init__(
        self,
        routes: RouteRepository,
        metrics: ConfigSyncMetrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else ConfigSyncMetrics()
        self._routes = routes
        self._cache = RoutingCache()

    def invalidate(self) -> None:
        """Forget every routing answer: called after each local commit that may change
        routing, on every config event from any replica, and on NATS disconnects."""
        self._cache.invalidate()
        log.debug("routing cache cleared", extra={"generation": self._cache.generation})

    async def resolve(self, request: RouteRequest) -> RouteReply:
        started = time.perf_counter()
        try:
            reply = await self._resolve(request)
        except DatabaseUnavailableError:
            self._metrics.error(ErrorType.DATABASE_UNAVAILABLE)
            reply = RouteError(error="database_unavailable", retryable=True)
        outcome = _ROUTE_OUTCOMES.get(type(reply), "error")
        self._metrics.routing_resolve_seconds.labels(outcome).observe(time.perf_counter() - started)
        return reply

    async def _resolve(self, request: RouteRequest) -> RouteReply:
        if request.agent_id is not None:
            return await self._by_agent(request, request.agent_id, request.campaign_id, "agent")
        if request.campaign_id is not None:
            return await self._by_campaign(request, request.campaign_id, "campaign")
        if request.dialed_number is not None:
            number, trunk_id = request.dialed_number, request.trunk_id
            if trunk_id is None or not is_valid_id(trunk_id):
                # A number routes only with its trunk: the trunk says whose number it is.
                return RouteRejected(reason=RejectReason.NO_ROUTE, detail="no SIP trunk")
            mapping: NumberRecord | None = await self._cache.read(
                f"number:{trunk_id}:{number}",
                lambda: self._routes.number(trunk_id, number),
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
            agent = await self._cache.read(
                f"agent:{agent_id}", lambda: self._routes.agent(agent_id)
            )
        if agent is None:
            return RouteRejected(reason=RejectReason.UNKNOWN_AGENT)
        if agent.status != AgentStatus.ACTIVE:
            return RouteRejected(reason=RejectReason.DISABLED_AGENT)
        return _resolved(request, agent, campaign_id, via)

    async def _by_campaign(self, request: RouteRequest, campaign_id: str, via: str) -> RouteReply:
        campaign: RouteCampaign | None = None
        if is_valid_id(campaign_id):
            campaign = await self._cache.read(
                f"campaign:{campaign_id}", lambda: self._routes.campaign(campaign_id)
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
