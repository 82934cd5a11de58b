"""The admin and runtime-config HTTP API (Litestar); OpenAPI at ``/schema/openapi.json``.

Every error body is an `ErrorBody`. Status codes: 400 malformed JSON or a bad cursor,
401 no/unknown token, 403 a valid token without the needed scope (operator-only
endpoints and token scopes included), 404 unknown (or another tenant's) agent, campaign,
link, trunk, number, version or token, 409 id not available (the same body whichever
tenant holds it) / still in use / concurrent edit, 413 body over the limit, 422 a body that
parses but is invalid (the detail names every failing field), 503 database unavailable
(writes; reads fall back to the cache). A PATCH naming no field is 422 ``empty_patch``;
a PATCH whose values equal the current ones is a 200 no-op that keeps the version.
"""

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Litestar, Request, Response, Router, delete, get, patch, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    SerializationException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import Parameter

from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.auth import Authenticator, Principal, Scope
from core_voice_config_sync.campaigns import CampaignService
from core_voice_config_sync.errors import (
    AgentNotFoundError,
    ConfigSyncError,
    DatabaseUnavailableError,
    InvalidConfigError,
    NumberNotFoundError,
    TokenNotFoundError,
    TrunkNotFoundError,
    VersionNotFoundError,
)
from core_voice_config_sync.metrics import ConfigSyncMetrics, ErrorType
from core_voice_config_sync.operators import OperatorService
from core_voice_config_sync.tokens import TokenService
from core_voice_contracts.admin_api import (
    DEFAULT_PAGE_LIMIT,
    E164_PATTERN,
    MAX_PAGE_LIMIT,
    AgentCreate,
    AgentPage,
    AgentPatch,
    AgentRollback,
    AgentVersionPage,
    AgentVersionView,
    AgentView,
    CampaignAgentPage,
    CampaignAgentSet,
    CampaignAgentView,
    CampaignCreate,
    CampaignPage,
    CampaignPatch,
    CampaignView,
    ErrorBody,
    HealthView,
    LegacyAgentsSet,
    LegacyAgentsView,
    NumberPage,
    NumberSet,
    NumberView,
    TokenCreate,
    TokenCreated,
    TokenPage,
    TrunkPage,
    TrunkSet,
    TrunkView,
    WhoAmI,
)
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.provider_catalog import CATALOG, ProviderCatalog
from core_voice_contracts.runtime_config import ProviderKeys, RuntimeConfig

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
SCOPE_OPT = "scope"
AUTHENTICATOR_STATE = "authenticator"
METRICS_STATE = "metrics"
RETRY_AFTER_S = "1"
MAX_VERSION = 2**31 - 1
_E164 = re.compile(E164_PATTERN)

HealthCheck = Callable[[], Awaitable[HealthView]]
AuthedRequest = Request[Principal, None, Any]
Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE_LIMIT, description="page size", required=False)]
Cursor = Annotated[
    str | None,
    Parameter(
        max_length=64,
        pattern=r"^[A-Za-z0-9+][A-Za-z0-9_+-]*$",
        description="next_cursor of the previous page",
        required=False,
    ),
]
CampaignFilter = Annotated[
    str | None,
    Parameter(
        max_length=64,
        description="merge this campaign's overrides (if the agent is in it)",
        required=False,
    ),
]

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


# --- authentication and authorisation -----------------------------------------------


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer <token>`` to a `Principal` (401 if it cannot).

    The authenticator comes from the app state, not the middleware's arguments: Litestar
    deep-copies routers (and so middleware arguments), and the authenticator holds the
    database engine.
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("a bearer token is required")
        authenticator: Authenticator = connection.app.state[AUTHENTICATOR_STATE]
        principal = await authenticator.authenticate(token.strip())
        if principal is None:
            raise NotAuthorizedException("the bearer token is not valid")
        return AuthenticationResult(user=principal, auth=None)


def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: the handler's ``opt["scope"]`` must be among the caller's permissions."""
    needed = handler.opt.get(SCOPE_OPT)
    principal = connection.user
    if not isinstance(principal, Principal) or not isinstance(needed, Scope):
        raise PermissionDeniedException("forbidden")
    if not principal.can(needed):
        raise PermissionDeniedException(f"the token lacks the {needed.value!r} permission")


def _opt(scope: Scope) -> dict[str, Any]:
    return {SCOPE_OPT: scope}


# --- handlers -------------------------------------------------------------------------


class AgentController(Controller):
    path = "/agents"
    tags = ["agents"]  # noqa: RUF012 - Litestar reads class attributes

    @post("/", status_code=201, opt=_opt(Scope.AGENTS_WRITE))
    async def create_agent(
        self, data: AgentCreate, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """Create an agent at config version 1 (provider choices checked, keys sealed)."""
        return await agents.create(request.user, data)

    @get("/", opt=_opt(Scope.AGENTS_READ))
    async def list_agents(
        self,
        request: AuthedRequest,
        agents: AgentService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> AgentPage:
        """The tenant's agents by id, a page at a time."""
        return await agents.page(request.user, limit=limit, cursor=cursor)

    @get("/{agent_id:str}", opt=_opt(Scope.AGENTS_READ))
    async def get_agent(
        self, agent_id: str, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """The agent and its current config version (keys shown as last 4 only)."""
        return await agents.get(request.user, agent_id)

    @patch("/{agent_id:str}", opt=_opt(Scope.AGENTS_WRITE))
    async def patch_agent(
        self, agent_id: str, data: AgentPatch, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """Commit the given fields: config changes make a new immutable version."""
        return await agents.patch(request.user, agent_id, data)

    @delete("/{agent_id:str}", status_code=204, opt=_opt(Scope.AGENTS_WRITE))
    async def delete_agent(
        self, agent_id: str, request: AuthedRequest, agents: AgentService
    ) -> None:
        """Delete an agent no campaign or number routes to (its id is never reused)."""
        await agents.delete(request.user, agent_id)

    @get("/{agent_id:str}/versions", opt=_opt(Scope.AGENTS_READ))
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

    @get("/{agent_id:str}/versions/{version:int}", opt=_opt(Scope.AGENTS_READ))
    async def get_version(
        self, agent_id: str, version: int, request: AuthedRequest, agents: AgentService
    ) -> AgentVersionView:
        """One config version."""
        if not 1 <= version <= MAX_VERSION:
            raise VersionNotFoundError(agent_id, version)
        return await agents.version(request.user, agent_id, version)

    @post("/{agent_id:str}/rollback", status_code=200, opt=_opt(Scope.AGENTS_WRITE))
    async def rollback_agent(
        self, agent_id: str, data: AgentRollback, request: AuthedRequest, agents: AgentService
    ) -> AgentView:
        """A new version equal to an old one (keys kept unless ``restore_keys``)."""
        return await agents.rollback(request.user, agent_id, data)

    @get("/{agent_id:str}/runtime-config", opt=_opt(Scope.RUNTIME_READ))
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


class CampaignController(Controller):
    path = "/campaigns"
    tags = ["campaigns"]  # noqa: RUF012

    @post("/", status_code=201, opt=_opt(Scope.AGENTS_WRITE))
    async def create_campaign(
        self, data: CampaignCreate, request: AuthedRequest, campaigns: CampaignService
    ) -> CampaignView:
        return await campaigns.create(request.user, data)

    @get("/", opt=_opt(Scope.AGENTS_READ))
    async def list_campaigns(
        self,
        request: AuthedRequest,
        campaigns: CampaignService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> CampaignPage:
        return await campaigns.page(request.user, limit=limit, cursor=cursor)

    @get("/{campaign_id:str}", opt=_opt(Scope.AGENTS_READ))
    async def get_campaign(
        self, campaign_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> CampaignView:
        return await campaigns.get(request.user, campaign_id)

    @patch("/{campaign_id:str}", opt=_opt(Scope.AGENTS_WRITE))
    async def patch_campaign(
        self,
        campaign_id: str,
        data: CampaignPatch,
        request: AuthedRequest,
        campaigns: CampaignService,
    ) -> CampaignView:
        """Name, description, status (``paused`` stops routing through it)."""
        return await campaigns.patch(request.user, campaign_id, data)

    @delete("/{campaign_id:str}", status_code=204, opt=_opt(Scope.AGENTS_WRITE))
    async def delete_campaign(
        self, campaign_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> None:
        """Delete it and its links (each linked agent gets a new version)."""
        await campaigns.delete(request.user, campaign_id)

    @get("/{campaign_id:str}/agents", opt=_opt(Scope.AGENTS_READ))
    async def list_links(
        self,
        campaign_id: str,
        request: AuthedRequest,
        campaigns: CampaignService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> CampaignAgentPage:
        return await campaigns.links(request.user, campaign_id, limit=limit, cursor=cursor)

    @get("/{campaign_id:str}/agents/{agent_id:str}", opt=_opt(Scope.AGENTS_READ))
    async def get_link(
        self, campaign_id: str, agent_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> CampaignAgentView:
        return await campaigns.link(request.user, campaign_id, agent_id)

    @put("/{campaign_id:str}/agents/{agent_id:str}", opt=_opt(Scope.AGENTS_WRITE))
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
        "/{campaign_id:str}/agents/{agent_id:str}", status_code=204, opt=_opt(Scope.AGENTS_WRITE)
    )
    async def delete_link(
        self, campaign_id: str, agent_id: str, request: AuthedRequest, campaigns: CampaignService
    ) -> None:
        await campaigns.delete_link(request.user, campaign_id, agent_id)


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

    @get("/", opt=_opt(Scope.AGENTS_READ))
    async def list_trunks(
        self,
        request: AuthedRequest,
        operators: OperatorService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> TrunkPage:
        """The tenant's trunks (an operator's token: every tenant's)."""
        return await operators.trunks(request.user, limit=limit, cursor=cursor)

    @get("/{trunk_id:str}", opt=_opt(Scope.AGENTS_READ))
    async def get_trunk(
        self, trunk_id: str, request: AuthedRequest, operators: OperatorService
    ) -> TrunkView:
        return await operators.trunk(request.user, trunk_id)

    @put("/{trunk_id:str}", opt=_opt(Scope.OPERATOR))
    async def set_trunk(
        self, trunk_id: str, data: TrunkSet, operators: OperatorService
    ) -> TrunkView:
        """Operators only: the tenant whose numbers this trunk carries."""
        return await operators.set_trunk(trunk_id, data.tenant_id)

    @delete("/{trunk_id:str}", status_code=204, opt=_opt(Scope.OPERATOR))
    async def delete_trunk(self, trunk_id: str, operators: OperatorService) -> None:
        """Operators only: unassign the trunk and remove every number mapped on it."""
        await operators.delete_trunk(trunk_id)

    @get("/{trunk_id:str}/numbers", opt=_opt(Scope.AGENTS_READ))
    async def list_numbers(
        self,
        trunk_id: str,
        request: AuthedRequest,
        campaigns: CampaignService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> NumberPage:
        return await campaigns.numbers(request.user, _trunk(trunk_id), limit=limit, cursor=cursor)

    @get("/{trunk_id:str}/numbers/{number:str}", opt=_opt(Scope.AGENTS_READ))
    async def get_number(
        self, trunk_id: str, number: str, request: AuthedRequest, campaigns: CampaignService
    ) -> NumberView:
        return await campaigns.number(
            request.user, _trunk(trunk_id), _number(number, for_write=False)
        )

    @put("/{trunk_id:str}/numbers/{number:str}", opt=_opt(Scope.AGENTS_WRITE))
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

    @delete("/{trunk_id:str}/numbers/{number:str}", status_code=204, opt=_opt(Scope.AGENTS_WRITE))
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

    @get("/{tenant_id:str}/legacy-agents", opt=_opt(Scope.OPERATOR))
    async def get_legacy_agents(
        self, tenant_id: str, operators: OperatorService
    ) -> LegacyAgentsView:
        """The LiveKit agent names this tenant's agents may use as ``legacy_agent_name``."""
        return await operators.legacy_names(tenant_id)

    @put("/{tenant_id:str}/legacy-agents", opt=_opt(Scope.OPERATOR))
    async def set_legacy_agents(
        self, tenant_id: str, data: LegacyAgentsSet, operators: OperatorService
    ) -> LegacyAgentsView:
        """Replace the list. A name taken off stops routing to that worker at once (the
        agent's rooms go to the pool); agents cannot be given a name not on it (422)."""
        return await operators.set_legacy_names(tenant_id, data)


class TokenController(Controller):
    path = "/tokens"
    tags = ["tokens"]  # noqa: RUF012

    @post("/", status_code=201, opt=_opt(Scope.TOKENS))
    async def create_token(
        self, data: TokenCreate, request: AuthedRequest, tokens: TokenService
    ) -> Response[TokenCreated]:
        """A new token in the caller's tenant. Shown once: store it now. Scopes
        ``runtime`` and ``operator`` need an operator (403 otherwise)."""
        tenant_id = AgentService.tenant_of(request.user)
        token, record = await tokens.create(
            request.user, tenant_id=tenant_id, name=data.name, scope=data.scope
        )
        return Response(
            TokenCreated(token=token, info=record.view()),
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    @get("/", opt=_opt(Scope.TOKENS))
    async def list_tokens(
        self,
        request: AuthedRequest,
        tokens: TokenService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> TokenPage:
        """The tenant's live tokens (never their values)."""
        records, next_cursor = await tokens.repository.page(
            AgentService.tenant_of(request.user), limit=limit, cursor=cursor
        )
        return TokenPage(items=[r.view() for r in records], next_cursor=next_cursor)

    @delete("/{token_id:str}", status_code=204, opt=_opt(Scope.TOKENS))
    async def revoke_token(
        self, token_id: str, request: AuthedRequest, tokens: TokenService
    ) -> None:
        if not is_valid_id(token_id):
            raise TokenNotFoundError(token_id)
        await tokens.revoke(token_id, tenant_id=AgentService.tenant_of(request.user))


@get("/providers", opt=_opt(Scope.RUNTIME_READ), tags=["providers"])
async def providers() -> ProviderCatalog:
    """The provider catalogue edits are validated against: providers, models, voices,
    options and which need an API key."""
    return CATALOG


@get("/whoami", opt=_opt(Scope.RUNTIME_READ), tags=["tokens"])
async def whoami(request: AuthedRequest) -> WhoAmI:
    """The caller's token: name, scope and tenant."""
    principal = request.user
    return WhoAmI(name=principal.name, scope=principal.scope.value, tenant_id=principal.tenant_id)


# --- errors ---------------------------------------------------------------------------


def _error(status: int, code: str, detail: str = "", **headers: str) -> Response[ErrorBody]:
    return Response(
        ErrorBody(error=code, detail=detail), status_code=status, headers=headers or None
    )


def _on_service_error(request: Request[Any, Any, Any], exc: ConfigSyncError) -> Response[ErrorBody]:
    if exc.status >= 500:  # config_sync's own failure, not the caller's
        _count_error(request, exc.code)
    if isinstance(exc, DatabaseUnavailableError):
        log.warning("request refused: database unavailable")
        return _error(exc.status, exc.code, exc.detail, **{"Retry-After": RETRY_AFTER_S})
    return _error(exc.status, exc.code, exc.detail)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    """422 (not Litestar's 400) with every failing field named: ``key: message``."""
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key", ""))
        message = str(item.get("message", "invalid"))
        if key == "data":  # the body as a whole (unknown field, wrong type, missing)
            key = "body"
            if message == "'data'":
                message = "a JSON body is required"
        problems.append(f"{key}: {message}" if key else message)
    return _error(422, "validation_error", "; ".join(problems) or "invalid request")


def _on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    if status >= 500:
        _count_error(request, ErrorType.INTERNAL)
        log.error("http error", extra={"status": status})
        return _error(status, "internal_error")
    if isinstance(exc.__cause__, SerializationException):
        return _error(400, "malformed_json", "the body is not valid JSON")
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthorizedException) else {}
    return _error(status, _STATUS_CODES.get(status, "client_error"), exc.detail, **headers)


def _on_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorBody]:
    """A body nested too deep to parse: msgspec raises `RecursionError`, not a decode
    error, so without this it would be a 500. Nothing else here recurses on input."""
    log.warning("request refused: body nested too deep")
    return _error(400, "malformed_json", "the body is nested too deeply")


def _count_error(request: Request[Any, Any, Any], type_: str) -> None:
    metrics = request.app.state.get(METRICS_STATE)
    if isinstance(metrics, ConfigSyncMetrics):
        metrics.error(type_)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    _count_error(request, ErrorType.INTERNAL)
    log.error("unhandled error", extra={"error": type(exc).__name__}, exc_info=exc)
    return _error(500, "internal_error")


# --- application ----------------------------------------------------------------------


def create_app(
    *,
    agents: AgentService,
    campaigns: CampaignService,
    operators: OperatorService,
    tokens: TokenService,
    authenticator: Authenticator,
    health: HealthCheck,
    max_body_bytes: int,
    version: str = "0.1.0",
    metrics: ConfigSyncMetrics | None = None,
) -> Litestar:
    """The ASGI app. OpenAPI is served at ``/schema`` (e.g. ``/schema/openapi.json``);
    ``/metrics`` is served by `metrics.MetricsMiddleware` around it."""

    @get("/healthz", tags=["health"])
    async def healthz() -> Response[HealthView]:
        """200 when the database and NATS both answer, 503 otherwise."""
        result = await health()
        return Response(result, status_code=200 if result.status == "ok" else 503)

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            AgentController,
            CampaignController,
            TrunkController,
            TenantController,
            TokenController,
            providers,
            whoami,
        ],
        middleware=[DefineMiddleware(BearerAuthMiddleware)],
        guards=[require_scope],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[api, healthz],
        dependencies={
            "agents": Provide(lambda: agents, sync_to_thread=False),
            "campaigns": Provide(lambda: campaigns, sync_to_thread=False),
            "operators": Provide(lambda: operators, sync_to_thread=False),
            "tokens": Provide(lambda: tokens, sync_to_thread=False),
        },
        exception_handlers={
            ConfigSyncError: _on_service_error,
            ValidationException: _on_validation,
            HTTPException: _on_http_error,
            RecursionError: _on_too_deep,
            Exception: _on_unexpected,
        },
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Core Voice config_sync",
            version=version,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        state=State(
            {
                AUTHENTICATOR_STATE: authenticator,
                METRICS_STATE: metrics if metrics is not None else ConfigSyncMetrics(),
            }
        ),
        debug=False,
        logging_config=None,
    )
