"""Campaign, link and SIP-number operations as the API sees them.

A link is validated as the merge the worker will receive: the agent's current config
with the campaign's overrides, checked against the catalogue and the agent's keys.
Every write here may change routing, so each commit is followed by ``on_commit``
(routing answers cleared, outbox relay woken) before the caller gets its answer.
"""

from collections.abc import Callable

from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.auth import Principal
from core_voice_config_sync.cache import RuntimeConfigCache
from core_voice_config_sync.campaign_repository import CampaignFields, CampaignRepository
from core_voice_config_sync.errors import (
    AgentNotFoundError,
    CampaignNotFoundError,
    EmptyPatchError,
    InvalidConfigError,
    LinkNotFoundError,
)
from core_voice_config_sync.number_repository import NumberRepository
from core_voice_config_sync.persistence import new_id
from core_voice_config_sync.records import AgentRecord
from core_voice_contracts.admin_api import (
    CampaignAgentPage,
    CampaignAgentSet,
    CampaignAgentView,
    CampaignCreate,
    CampaignOverrides,
    CampaignPage,
    CampaignPatch,
    CampaignView,
    NumberPage,
    NumberSet,
    NumberView,
)
from core_voice_contracts.ids import is_valid_id


class CampaignService:
    def __init__(
        self,
        repository: CampaignRepository,
        agents: AgentService,
        cache: RuntimeConfigCache,
        *,
        numbers: NumberRepository,
        on_commit: Callable[[], None],
    ) -> None:
        self._repo = repository
        self._numbers = numbers
        self._agents = agents
        self._cache = cache
        self._on_commit = on_commit

    def _committed(self, bumped: list[AgentRecord]) -> None:
        """After a commit: drop the entries of agents whose runtime config changed
        (reloaded on next read), then ``on_commit``."""
        for record in bumped:
            self._cache.evict_older(record.id, record.version)
        self._on_commit()

    async def create(self, principal: Principal, data: CampaignCreate) -> CampaignView:
        tenant_id = AgentService.tenant_of(principal)
        fields = CampaignFields(name=data.name, description=data.description, status=data.status)
        record = await self._repo.create(tenant_id, data.id or new_id("campaign"), fields)
        self._committed([])
        return record.view()

    async def get(self, principal: Principal, campaign_id: str) -> CampaignView:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        record = await self._repo.get(campaign_id, tenant_id=AgentService.tenant_of(principal))
        return record.view()

    async def page(self, principal: Principal, *, limit: int, cursor: str | None) -> CampaignPage:
        records, next_cursor = await self._repo.page(
            AgentService.tenant_of(principal), limit=limit, cursor=cursor
        )
        return CampaignPage(items=[r.view() for r in records], next_cursor=next_cursor)

    async def patch(
        self, principal: Principal, campaign_id: str, data: CampaignPatch
    ) -> CampaignView:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        if data == CampaignPatch():
            raise EmptyPatchError
        record = await self._repo.patch(
            campaign_id,
            tenant_id=AgentService.tenant_of(principal),
            name=data.name,
            description=data.description,
            status=data.status,
        )
        self._committed([])
        return record.view()

    async def delete(self, principal: Principal, campaign_id: str) -> None:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        bumped = await self._repo.delete(
            campaign_id, tenant_id=AgentService.tenant_of(principal), author=principal.name
        )
        self._committed(bumped)

    # --- links -----------------------------------------------------------------------------

    async def links(
        self, principal: Principal, campaign_id: str, *, limit: int, cursor: str | None
    ) -> CampaignAgentPage:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        records, next_cursor = await self._repo.links(
            campaign_id, tenant_id=AgentService.tenant_of(principal), limit=limit, cursor=cursor
        )
        return CampaignAgentPage(items=[r.view() for r in records], next_cursor=next_cursor)

    async def link(
        self, principal: Principal, campaign_id: str, agent_id: str
    ) -> CampaignAgentView:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        if not is_valid_id(agent_id):
            raise LinkNotFoundError(campaign_id, agent_id)
        record = await self._repo.link(
            campaign_id, agent_id, tenant_id=AgentService.tenant_of(principal)
        )
        return record.view()

    async def set_link(
        self, principal: Principal, campaign_id: str, agent_id: str, data: CampaignAgentSet
    ) -> CampaignAgentView:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        validator = self._agents.validator
        overrides = data.overrides
        await validator.check_urls(
            {"llm": overrides.llm, "stt": overrides.stt, "tts": overrides.tts},
            prefix="overrides.",
        )

        async def check(agent: AgentRecord, overrides: CampaignOverrides) -> None:
            problems = validator.merged_problems(
                agent.config, agent.key_hints.keys(), overrides, prefix="overrides."
            )
            if problems:
                raise InvalidConfigError.of(problems)

        link, bumped = await self._repo.set_link(
            campaign_id,
            agent_id,
            tenant_id=AgentService.tenant_of(principal),
            weight=data.weight,
            overrides=data.overrides,
            check=check,
            author=principal.name,
        )
        self._committed([bumped] if bumped else [])
        return link.view()

    async def delete_link(self, principal: Principal, campaign_id: str, agent_id: str) -> None:
        if not is_valid_id(campaign_id):
            raise CampaignNotFoundError(campaign_id)
        if not is_valid_id(agent_id):
            raise LinkNotFoundError(campaign_id, agent_id)
        bumped = await self._repo.delete_link(
            campaign_id,
            agent_id,
            tenant_id=AgentService.tenant_of(principal),
            author=principal.name,
        )
        self._committed([bumped] if bumped else [])

    # --- SIP numbers -----------------------------------------------------------------------

    async def set_number(
        self, principal: Principal, trunk_id: str, number: str, data: NumberSet
    ) -> NumberView:
        if (data.campaign_id is None) == (data.agent_id is None):
            raise InvalidConfigError("body", "give exactly one of campaign_id and agent_id")
        record = await self._numbers.set_number(
            trunk_id,
            number,
            tenant_id=AgentService.tenant_of(principal),
            campaign_id=data.campaign_id,
            agent_id=data.agent_id,
        )
        self._committed([])
        return record.view()

    async def number(self, principal: Principal, trunk_id: str, number: str) -> NumberView:
        record = await self._numbers.number(
            trunk_id, number, tenant_id=AgentService.tenant_of(principal)
        )
        return record.view()

    async def numbers(
        self, principal: Principal, trunk_id: str, *, limit: int, cursor: str | None
    ) -> NumberPage:
        records, next_cursor = await self._numbers.numbers(
            trunk_id, tenant_id=AgentService.tenant_of(principal), limit=limit, cursor=cursor
        )
        return NumberPage(items=[r.view() for r in records], next_cursor=next_cursor)

    async def delete_number(self, principal: Principal, trunk_id: str, number: str) -> None:
        await self._numbers.delete_number(
            trunk_id, number, tenant_id=AgentService.tenant_of(principal)
        )
        self._committed([])
