"""Trunk handlers: SIP trunks, the numbers mapped on them, and the per-tenant lists an
operator keeps (legacy workers)."""

import re

from litestar import Controller, delete, get, put

from core_voice_config_sync.api.auth import AuthedRequest, scope_opt
from core_voice_config_sync.api.params import Cursor, Limit
from core_voice_config_sync.auth import Scope
from core_voice_config_sync.campaigns import CampaignService
from core_voice_config_sync.errors import (
    InvalidConfigError,
    NumberNotFoundError,
    TrunkNotFoundError,
)
from core_voice_config_sync.operators import OperatorService
from core_voice_contracts.admin_api import (
    DEFAULT_PAGE_LIMIT,
    E164_PATTERN,
    LegacyAgentsSet,
    LegacyAgentsView,
    NumberPage,
    NumberSet,
    NumberView,
    TrunkPage,
    TrunkSet,
    TrunkView,
)
from core_voice_contracts.ids import is_valid_id

_E164 = re.compile(E164_PATTERN)


def _number(number: str, *, for_write: bool) -> str:
    if _E164.fullmatch(number) is None:
        if for_write:
            raise InvalidConfigError("number", "must be E.164, e.g. +15551230000")
        raise NumberNotFoundError(number)
    return number


def _trunk(trunk_id: str) -> str:
    if not is_valid_id(trunk_id):
        raise TrunkNotFoundError(trunk_id)
    return trunk_id


class TrunkController(Controller):
    """SIP trunks (LiveKit ``sip.trunkID``) and the numbers mapped on them.

    An operator assigns a trunk to a tenant; the tenant then maps numbers on it. Calls
    route on trunk and number together, so a tenant can never claim calls to a number on
    another tenant's trunk. Another tenant's trunk is a 404, like one that does not exist.
    """

    path = "/trunks"
    tags = ["trunks"]  # noqa: RUF012

    @get("/", opt=scope_opt(Scope.AGENTS_READ))
    async def list_trunks(
        self,
        request: AuthedRequest,
        operators: OperatorService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> TrunkPage:
        """The tenant's trunks (an operator's token: every tenant's)."""
        return await operators.trunks(request.user, limit=limit, cursor=cursor)

    @get("/{trunk_id:str}", opt=scope_opt(Scope.AGENTS_READ))
    async def get_trunk(
        self, trunk_id: str, request: AuthedRequest, operators: OperatorService
    ) -> TrunkView:
        return await operators.trunk(request.user, trunk_id)

    @put("/{trunk_id:str}", opt=scope_opt(Scope.OPERATOR))
    async def set_trunk(
        self, trunk_id: str, data: TrunkSet, operators: OperatorService
    ) -> TrunkView:
        """Operators only: the tenant whose numbers this trunk carries."""
        return await operators.set_trunk(trunk_id, data.tenant_id)

    @delete("/{trunk_id:str}", status_code=204, opt=scope_opt(Scope.OPERATOR))
    async def delete_trunk(self, trunk_id: str, operators: OperatorService) -> None:
        """Operators only: unassign the trunk and remove every number mapped on it."""
        await operators.delete_trunk(trunk_id)

    @get("/{trunk_id:str}/numbers", opt=scope_opt(Scope.AGENTS_READ))
    async def list_numbers(
        self,
        trunk_id: str,
        request: AuthedRequest,
        campaigns: CampaignService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> NumberPage:
        return await campaigns.numbers(request.user, _trunk(trunk_id), limit=limit, cursor=cursor)

    @get("/{trunk_id:str}/numbers/{number:str}", opt=scope_opt(Scope.AGENTS_READ))
    async def get_number(
        self, trunk_id: str, number: str, request: AuthedRequest, campaigns: CampaignService
    ) -> NumberView:
        return await campaigns.number(
            request.user, _trunk(trunk_id), _number(number, for_write=False)
        )

    @put("/{trunk_id:str}/numbers/{number:str}", opt=scope_opt(Scope.AGENTS_WRITE))
    async def set_number(
        self,
        trunk_id: str,
        number: str,
        data: NumberSet,
        request: AuthedRequest,
        campaigns: CampaignService,
    ) -> NumberView:
        """Route calls to this dialed number (E.164) on this trunk to a campaign or an
        agent. The trunk must be assigned to the caller's tenant (404 otherwise)."""
        return await campaigns.set_number(
            request.user, _trunk(trunk_id), _number(number, for_write=True), data
        )

    @delete(
        "/{trunk_id:str}/numbers/{number:str}", status_code=204, opt=scope_opt(Scope.AGENTS_WRITE)
    )
    async def delete_number(
        self, trunk_id: str, number: str, request: AuthedRequest, campaigns: CampaignService
    ) -> None:
        await campaigns.delete_number(
            request.user, _trunk(trunk_id), _number(number, for_write=False)
        )


class TenantController(Controller):
    """Operators only: per-tenant settings that span tenants."""

    path = "/tenants"
    tags = ["tenants"]  # noqa: RUF012

    @get("/{tenant_id:str}/legacy-agents", opt=scope_opt(Scope.OPERATOR))
    async def get_legacy_agents(
        self, tenant_id: str, operators: OperatorService
    ) -> LegacyAgentsView:
        """The LiveKit agent names this tenant's agents may use as ``legacy_agent_name``."""
        return await operators.legacy_names(tenant_id)

    @put("/{tenant_id:str}/legacy-agents", opt=scope_opt(Scope.OPERATOR))
    async def set_legacy_agents(
        self, tenant_id: str, data: LegacyAgentsSet, operators: OperatorService
    ) -> LegacyAgentsView:
        """Replace the list. A name taken off stops routing to that worker at once (the
        agent's rooms go to the pool); agents cannot be given a name not on it (422)."""
        return await operators.set_legacy_names(tenant_id, data)
