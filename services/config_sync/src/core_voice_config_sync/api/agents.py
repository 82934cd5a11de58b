"""Agent handlers: CRUD, versions and rollback, the runtime config read over HTTP, and
the provider catalogue that edits are checked against."""

import time

import msgspec
from litestar import Controller, Response, delete, get, patch, post

from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.api.auth import AuthedRequest, scope_opt
from core_voice_config_sync.api.params import (
    MAX_VERSION,
    METRICS_STATE,
    CampaignFilter,
    Cursor,
    Limit,
)
from core_voice_config_sync.auth import Scope
from core_voice_config_sync.errors import (
    AgentNotFoundError,
    VersionNotFoundError,
)
from core_voice_config_sync.metrics import ConfigSyncMetrics
from core_voice_contracts.admin_api import (
    DEFAULT_PAGE_LIMIT,
    AgentCreate,
    AgentPage,
    AgentPatch,
    AgentRollback,
    AgentVersionPage,
    AgentVersionView,
    AgentView,
)
from core_voice_contracts.provider_catalog import CATALOG, ProviderCatalog
from core_voice_contracts.runtime_config import ProviderKeys, RuntimeConfig


class AgentController(Controller):
    path = "/agents"
    tags = ["agents"]  # noqa: RUF012 - Litestar reads class attributes

    @post("/", status_code=201, opt=scope_opt(Scope.AGENTS_WRITE))
    async def create_agent(
        self, data: AgentCreate, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """Create an agent at config version 1 (provider choices checked, keys sealed)."""
        return await agents.create(request.user, data)

    @get("/", opt=scope_opt(Scope.AGENTS_READ))
    async def list_agents(
        self,
        request: AuthedRequest,
        agents: AgentService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> AgentPage:
        """The tenant's agents by id, a page at a time."""
        return await agents.page(request.user, limit=limit, cursor=cursor)

    @get("/{agent_id:str}", opt=scope_opt(Scope.AGENTS_READ))
    async def get_agent(
        self, agent_id: str, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """The agent and its current config version (keys shown as last 4 only)."""
        return await agents.get(request.user, agent_id)

    @patch("/{agent_id:str}", opt=scope_opt(Scope.AGENTS_WRITE))
    async def patch_agent(
        self, agent_id: str, data: AgentPatch, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """Commit the given fields: config changes make a new immutable version."""
        return await agents.patch(request.user, agent_id, data)

    @delete("/{agent_id:str}", status_code=204, opt=scope_opt(Scope.AGENTS_WRITE))
    async def delete_agent(
        self, agent_id: str, request: AuthedRequest, agents: AgentService
    ) -> None:
        """Delete an agent no campaign or number routes to (its id is never reused)."""
        await agents.delete(request.user, agent_id)

    @get("/{agent_id:str}/versions", opt=scope_opt(Scope.AGENTS_READ))
    async def list_versions(
        self,
        agent_id: str,
        request: AuthedRequest,
        agents: AgentService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> AgentVersionPage:
        """The agent's config versions, newest first."""
        return await agents.versions(request.user, agent_id, limit=limit, cursor=cursor)

    @get("/{agent_id:str}/versions/{version:int}", opt=scope_opt(Scope.AGENTS_READ))
    async def get_version(
        self, agent_id: str, version: int, request: AuthedRequest, agents: AgentService
    ) -> AgentVersionView:
        """One config version."""
        if not 1 <= version <= MAX_VERSION:
            raise VersionNotFoundError(agent_id, version)
        return await agents.version(request.user, agent_id, version)

    @post("/{agent_id:str}/rollback", status_code=200, opt=scope_opt(Scope.AGENTS_WRITE))
    async def rollback_agent(
        self, agent_id: str, data: AgentRollback, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """A new version equal to an old one (keys kept unless ``restore_keys``)."""
        return await agents.rollback(request.user, agent_id, data)

    @get("/{agent_id:str}/runtime-config", opt=scope_opt(Scope.RUNTIME_READ))
    async def runtime_config(
        self,
        agent_id: str,
        request: AuthedRequest,
        agents: AgentService,
        campaign_id: CampaignFilter = None,
    ) -> Response[RuntimeConfig]:
        """What a voice worker runs for this agent (⊕ the campaign's overrides, defaults
        filled). Provider keys are included for ``runtime`` tokens only; never cached."""
        principal = request.user
        metrics: ConfigSyncMetrics = request.app.state[METRICS_STATE]
        started = time.perf_counter()
        outcome = "error"
        try:
            config = await agents.runtime_config(
                agent_id, campaign_id=campaign_id, tenant_id=principal.tenant_id
            )
            outcome = "found" if config is not None else "not_found"
        finally:
            metrics.config_get_seconds.labels(outcome).observe(time.perf_counter() - started)
        if config is None:
            raise AgentNotFoundError(agent_id)
        if not principal.can(Scope.RUNTIME_KEYS) and config.keys.values:
            config = _without_keys(config)
        return Response(config, headers={"Cache-Control": "no-store"})


def _without_keys(config: RuntimeConfig) -> RuntimeConfig:
    return msgspec.structs.replace(config, keys=ProviderKeys())


@get("/providers", opt=scope_opt(Scope.RUNTIME_READ), tags=["providers"])
async def providers() -> ProviderCatalog:
    """The provider catalogue edits are validated against: providers, models, voices,
    options and which need an API key."""
    return CATALOG
