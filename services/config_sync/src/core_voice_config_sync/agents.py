"""Agent operations as the API and the NATS read path see them.

Sits between the transports and the repository: applies the caller's tenant, checks
provider choices, and after each commit refreshes the cache and wakes the outbox relay
(so the change is on the bus within milliseconds).
"""

from collections.abc import Callable

from core_voice_config_sync.auth import Principal
from core_voice_config_sync.cache import RuntimeConfigCache
from core_voice_config_sync.errors import AgentNotFoundError, EmptyPatchError, ForbiddenError
from core_voice_config_sync.repository import AgentRepository
from core_voice_config_sync.validation import check_provider
from core_voice_contracts.admin_api import AgentCreate, AgentPatch, AgentView
from core_voice_contracts.events import (
    ConfigFound,
    ConfigGetError,
    ConfigGetReply,
    ConfigGetRequest,
    ConfigNotFound,
)
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.runtime_config import RuntimeConfig


class AgentService:
    def __init__(
        self,
        repository: AgentRepository,
        cache: RuntimeConfigCache,
        *,
        on_commit: Callable[[], None],
    ) -> None:
        self._repo = repository
        self._cache = cache
        self._on_commit = on_commit

    async def create(self, principal: Principal, data: AgentCreate) -> AgentView:
        tenant_id = principal.tenant_id
        if tenant_id is None:
            raise ForbiddenError("a token without a tenant cannot create agents")
        for kind, spec in (("llm", data.llm), ("stt", data.stt), ("tts", data.tts)):
            check_provider(kind, spec.spec())
        record = await self._repo.create(tenant_id, data, author=principal.name)
        self._cache.put(record.runtime())
        self._on_commit()
        return record.view()

    async def get(self, principal: Principal, agent_id: str) -> AgentView:
        record = (
            await self._repo.get(agent_id, tenant_id=principal.tenant_id)
            if is_valid_id(agent_id)
            else None
        )
        if record is None:
            raise AgentNotFoundError(agent_id)
        return record.view()

    async def patch(self, principal: Principal, agent_id: str, data: AgentPatch) -> AgentView:
        """A new config version from ``data``; see `AgentRepository.patch` for no-ops."""
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        given = {
            kind: spec
            for kind, spec in (("llm", data.llm), ("stt", data.stt), ("tts", data.tts))
            if spec is not None
        }
        if not given and all(
            value is None for value in (data.name, data.instructions, data.greeting)
        ):
            raise EmptyPatchError
        for kind, spec in given.items():
            check_provider(kind, spec.spec())
        record, changed = await self._repo.patch(
            agent_id, data, tenant_id=principal.tenant_id, author=principal.name
        )
        if changed:
            self._cache.put(record.runtime())
            self._on_commit()
        return record.view()

    async def runtime_config(
        self, agent_id: str, *, tenant_id: str | None = None, min_version: int = 0
    ) -> RuntimeConfig | None:
        """The agent's current runtime config, or None if unknown (to this tenant)."""
        if not is_valid_id(agent_id):
            return None
        config = await self._cache.get(agent_id, min_version=min_version)
        if config is None or (tenant_id is not None and config.tenant_id != tenant_id):
            return None
        return config

    async def resolve(self, request: ConfigGetRequest) -> ConfigGetReply:
        """Answer a ``voice.config.get`` request.

        Campaigns are not modelled yet, so ``campaign_id`` is ignored and the agent's
        own config is returned (``campaign_id`` in it stays None to say so).
        """
        config = await self.runtime_config(request.agent_id, min_version=request.min_version)
        if config is None:
            return ConfigNotFound(agent_id=request.agent_id)
        if config.version < request.min_version:
            return ConfigGetError(error="version_unavailable", retryable=True)
        return ConfigFound(config=config)
