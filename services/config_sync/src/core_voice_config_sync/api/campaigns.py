"""Campaign handlers: campaigns and their agent links (weights, overrides)."""

from litestar import Controller, delete, get, patch, post, put

from core_voice_config_sync.api.auth import AuthedRequest, scope_opt
from core_voice_config_sync.api.params import Cursor, Limit
from core_voice_config_sync.auth import Scope
from core_voice_config_sync.campaigns import CampaignService
from core_voice_contracts.admin_api import (
    DEFAULT_PAGE_LIMIT,
    CampaignAgentPage,
    CampaignAgentSet,
    CampaignAgentView,
    CampaignCreate,
    CampaignPage,
    CampaignPatch,
    CampaignView,
)


class CampaignController(Controller):
    path = "/campaigns"
    tags = ["campaigns"]  # noqa: RUF012

    @post("/", status_code=201, opt=scope_opt(Scope.AGENTS_WRITE))
    async def create_campaign(
        self, data: CampaignCreate, request: AuthedRequest, campaigns: CampaignService
    ) -> CampaignView:
        return await campaigns.create(request.user, data)

    @get("/", opt=scope_opt(Scope.AGENTS_READ))
    async def list_campaigns(
        self,
        request: AuthedRequest,
        campaigns: CampaignService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> CampaignPage:
        return await campaigns.page(request.user, limit=limit, cursor=cursor)

    @get("/{campaign_id:str}", opt=scope_opt(Scope.AGENTS_READ))
    async def get_campaign(
        self, campaign_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> CampaignView:
        return await campaigns.get(request.user, campaign_id)

    @patch("/{campaign_id:str}", opt=scope_opt(Scope.AGENTS_WRITE))
    async def patch_campaign(
        self,
        campaign_id: str,
        data: CampaignPatch,
        request: AuthedRequest,
        campaigns: CampaignService,
    ) -> CampaignView:
        """Name, description, status (``paused`` stops routing through it)."""
        return await campaigns.patch(request.user, campaign_id, data)

    @delete("/{campaign_id:str}", status_code=204, opt=scope_opt(Scope.AGENTS_WRITE))
    async def delete_campaign(
        self, campaign_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> None:
        """Delete it and its links (each linked agent gets a new version)."""
        await campaigns.delete(request.user, campaign_id)

    @get("/{campaign_id:str}/agents", opt=scope_opt(Scope.AGENTS_READ))
    async def list_links(
        self,
        campaign_id: str,
        request: AuthedRequest,
        campaigns: CampaignService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> CampaignAgentPage:
        return await campaigns.links(request.user, campaign_id, limit=limit, cursor=cursor)

    @get("/{campaign_id:str}/agents/{agent_id:str}", opt=scope_opt(Scope.AGENTS_READ))
    async def get_link(
        self, campaign_id: str, agent_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> CampaignAgentView:
        return await campaigns.link(request.user, campaign_id, agent_id)

    @put("/{campaign_id:str}/agents/{agent_id:str}", opt=scope_opt(Scope.AGENTS_WRITE))
    async def set_link(
        self,
        campaign_id: str,
        agent_id: str,
        data: CampaignAgentSet,
        request: AuthedRequest,
        campaigns: CampaignService,
    ) -> CampaignAgentView:
        """Link (or re-link) an agent with a weight and overrides; the merged config is
        validated now. New overrides give the agent a new version."""
        return await campaigns.set_link(request.user, campaign_id, agent_id, data)

    @delete(
        "/{campaign_id:str}/agents/{agent_id:str}",
        status_code=204,
        opt=scope_opt(Scope.AGENTS_WRITE),
    )
    async def delete_link(
        self, campaign_id: str, agent_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> None:
        await campaigns.delete_link(request.user, campaign_id, agent_id)
